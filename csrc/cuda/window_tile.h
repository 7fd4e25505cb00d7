// The tiling of scores.cu's window pass, written once for the kernel and for the host emulation that tests it
// (tests/cpp/test_cuda_host.cpp). Plain C++ (RIPU_HOST_DEVICE): no CUDA headers, no torch, no allocation.
//
// The window pass turns two B x H x W maps -- the argmax label (uint16; the value C marks a pixel with a
// non-finite logit) and the normalised entropy e -- into the impurity P, the mean entropy U and the score of every
// clipped (2k+1)^2 window. A block of kWinThreads threads owns a tile: `tile_w` output columns [j0, j0 + tile_w) of a
// band of rows of one image. Shared memory holds, for the tile's columns plus a halo of kw columns on each side
// (`wt` columns, [c_lo, c_lo + wt)):
//
//   cnt16[c][x]   uint16, c in [0, C]: how many pixels of column x in rows [i - kh, i + kh] have label c (c == C:
//                 non-finite pixels). Slid down one row per output row: add the entering row, remove the leaving
//                 one, O(1) per column whatever k is (the vertical running sum).
//   q32[c][x]     uint32: the exclusive prefix sum of cnt16[c] along the row, q32[c][x] = sum_{x' < x} cnt16[c][x'],
//                 rebuilt every row by one warp scan per class (the horizontal running sum). The window count of
//                 class c at output column j is then q32[c][hi] - q32[c][lo]: two reads, O(1) whatever k is.
//   colsum[x], qsum[x]  double (region scores only): the same for the entropy of the finite pixels.
//
// So the work per output pixel is O(C) with no term in k, plus the halo overhead wt / tile_w, which the plan bounds
// by choosing tile_w >= about 3 (2 kw + 1) (as shared memory allows).
//
// Bank arithmetic (32 banks of 4-byte words; a warp's access is conflict-free when no two of its lanes touch
// different words of one bank; 8- and 16-byte accesses are served per half- and quarter-warp):
//   (a) cnt16 updates: row stride s16 is a multiple of 128 halfwords, so the word of cnt16[c][x] is
//       c * s16/2 + x/2 and its bank is (x/2) mod 32 for every class c. In one update instruction lane l of warp w
//       handles column x = base + 64 w + 2 l + parity: the 32 lanes have 32 distinct x/2, hence 32 distinct banks,
//       whatever labels they hold. (Consecutive columns per lane would pair lanes 2m, 2m+1 on one word, and two
//       different labels there would be two words of one bank: a 2-way conflict.)
//   (b) the scan of class c: lane l reads cnt16[c][128 t + 4 l .. + 3] as one 8-byte load (a half-warp covers 128
//       contiguous bytes: 32 distinct banks) and writes q32[c][128 t + 4 l .. + 3] as one 16-byte store (a
//       quarter-warp covers 128 contiguous bytes). The double scan reads and writes one 8-byte value per lane,
//       consecutive (a half-warp: 128 contiguous bytes).
//   (c) the output thread of column j reads q32[c][hi(j)] and q32[c][lo(j)]: consecutive j give consecutive words
//       (or, where the window is clipped at the image edge, the same word: a broadcast), so 32 distinct banks.
// The old kernel stored hcnt[cls * 128 + seg * 32 + step] from lanes (cls, seg) with the same step: one bank for
// all 32 lanes (a 32-way conflict), and re-summed 2k + 1 columns per segment every row (cost growing with k).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ripu/common.h"
#include "ripu/window_math.h"

namespace ripu {
namespace gpu {

constexpr int kWinThreads = 128;           // threads per block of the window pass
constexpr int kWinWarps = kWinThreads / 32;
constexpr int64_t kScanChunk = 128;        // columns per warp-scan step: 4 per lane
constexpr int64_t kUpdateSpan = 64 * kWinWarps;  // columns the block updates per step (a) iteration: 2 per thread

RIPU_HOST_DEVICE inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
RIPU_HOST_DEVICE inline size_t align16(size_t x) { return (x + 15) & ~size_t(15); }

// Byte offsets of the shared (or per-block global) arrays of one tile; every array starts 16-byte aligned.
struct WindowSmem {
  size_t cnt16, q32, colsum, qsum, bytes;
};

RIPU_HOST_DEVICE inline WindowSmem window_smem(int64_t C, int64_t s16, bool region) {
  WindowSmem L;
  size_t o = 0;
  L.cnt16 = o;
  o = align16(o + sizeof(uint16_t) * static_cast<size_t>((C + 1) * s16));
  L.q32 = o;
  o = align16(o + sizeof(uint32_t) * static_cast<size_t>((C + 1) * s16));
  L.colsum = o;
  o = align16(o + (region ? sizeof(double) * static_cast<size_t>(s16) : 0));
  L.qsum = o;
  o = align16(o + (region ? sizeof(double) * static_cast<size_t>(s16) : 0));
  L.bytes = o;
  return L;
}

// The launch geometry of the window pass for (C classes, an H x W map, window radius k).
struct WindowPlan {
  int64_t kh, kw;      // k clipped to the map: a window wider than the map is the whole map
  int64_t tile_w;      // output columns per tile
  int64_t s16;         // row stride of cnt16 / q32: a multiple of kScanChunk, > the halo width
  int64_t band;        // output rows per tile
  int64_t tiles_w, tiles_h;
  WindowSmem smem;     // layout (and bytes) of one tile's arrays
  bool shared;         // the arrays fit in shared memory; else per-block scratch in global memory
};

// Columns of the tile starting at j0 including its halo: [c_lo, c_lo + wt).
RIPU_HOST_DEVICE inline int64_t halo_lo(int64_t j0, int64_t kw) { return j0 - kw > 0 ? j0 - kw : 0; }
RIPU_HOST_DEVICE inline int64_t halo_width(int64_t j0, int64_t tile_w, int64_t kw, int64_t W) {
  const int64_t hi = j0 + tile_w + kw < W ? j0 + tile_w + kw : W;
  return hi - halo_lo(j0, kw);
}

RIPU_HOST_DEVICE inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// smem_limit: the bytes a block may use (the device's opt-in maximum). Host only. The tile spans `chunks` scan
// chunks: tile_w = 128 chunks - 1 - 2 kw output columns (their halo included, plus the total in q32), or the whole
// row when one tile covers it (its halo then lies outside the image).
inline WindowPlan plan_window(int64_t C, int64_t H, int64_t W, int64_t k, bool region, size_t smem_limit) {
  WindowPlan p;
  p.kh = k < H - 1 ? k : (H > 0 ? H - 1 : 0);
  p.kw = k < W - 1 ? k : (W > 0 ? W - 1 : 0);
  const int64_t halo = 2 * p.kw;
  const int64_t whole = ceil_div(W + 1, kScanChunk);  // chunks of a tile that spans the row
  auto set = [&](int64_t chunks) {
    p.tile_w = chunks >= whole ? W : chunks * kScanChunk - 1 - halo;
    const int64_t wt = p.tile_w + halo < W ? p.tile_w + halo : W;
    p.s16 = round_up(wt + 1, kScanChunk);
    p.smem = window_smem(C, p.s16, region);
  };
  // fewest chunks that leave tile_w >= 1; preferred: the halo at most about a quarter of the scanned columns
  const int64_t least = ceil_div(halo + 2, kScanChunk) < whole ? ceil_div(halo + 2, kScanChunk) : whole;
  int64_t preferred = ceil_div(4 * (halo + 1), kScanChunk);
  preferred = preferred < least ? least : (preferred > whole ? whole : preferred);
  int64_t chunks = preferred;
  set(chunks);
  while (p.smem.bytes > smem_limit && chunks > least) set(--chunks);
  p.shared = p.smem.bytes <= smem_limit;
  if (!p.shared) set(preferred);  // per-block scratch in global memory: the preferred tile
  p.tiles_w = W > 0 ? ceil_div(W, p.tile_w) : 0;
  // Rows per band: the band's first row reads 2 kh + 1 rows, so bands of about 2 kh + 1 rows keep that at about one
  // extra read of the two small maps per pixel, whatever k is.
  p.band = 2 * p.kh + 1 > 32 ? 2 * p.kh + 1 : 32;
  if (p.band > 512) p.band = 512;
  p.tiles_h = H > 0 ? ceil_div(H, p.band) : 0;
  return p;
}

// ------------------------------------------------------------------------------------------- step (a): columns
// Index of cnt16[c][x].
RIPU_HOST_DEVICE inline int64_t cnt_index(int64_t c, int64_t x, int64_t s16) { return c * s16 + x; }

// The halo column (tile-local) that lane `lane` of warp `warp` updates in iteration `base` (a multiple of
// kUpdateSpan), half `parity` (0 or 1): 64 columns per warp, lanes two columns apart (see the bank arithmetic).
RIPU_HOST_DEVICE inline int64_t update_column(int64_t base, int warp, int lane, int parity) {
  return base + 64 * warp + 2 * lane + parity;
}

// One thread's share of adding (sign = +1) or removing (-1) image row `row` (labels, C marking non-finite pixels)
// to/from the column counts of the tile: the columns update_column(.., warp, lane, ..) < wt.
RIPU_HOST_DEVICE inline void add_row_counts(const uint16_t* row, int64_t c_lo, int64_t wt, int64_t s16, int tid,
                                            int sign, uint16_t* cnt16) {
  const int warp = tid >> 5, lane = tid & 31;
  for (int64_t base = 0; base < wt; base += kUpdateSpan)
    for (int parity = 0; parity < 2; ++parity) {
      const int64_t x = update_column(base, warp, lane, parity);
      if (x < wt) {
        uint16_t& v = cnt16[cnt_index(row[c_lo + x], x, s16)];
        v = static_cast<uint16_t>(v + sign);
      }
    }
}

// The same for the entropy sums (region scores): consecutive columns per lane (8-byte values: a half-warp covers
// 128 contiguous bytes); non-finite pixels (NaN entropy) are counted in cnt16[C] instead.
template <typename T>
RIPU_HOST_DEVICE inline void add_row_sums(const T* row, int64_t c_lo, int64_t wt, int tid, double sign,
                                          double* colsum) {
  for (int64_t x = tid; x < wt; x += kWinThreads) {
    const T e = row[c_lo + x];
    if (e == e) colsum[x] += sign * static_cast<double>(e);
  }
}

// ------------------------------------------------------------------------------------------- step (b): scans
// Lane part of one scan step: v = the lane's 4 consecutive counts; out = their exclusive prefix within the lane;
// returns their sum. The warp adds the exclusive scan of the sums over lanes (plus the running carry) to out.
RIPU_HOST_DEVICE inline uint32_t lane_prefix4(const uint32_t v[4], uint32_t out[4]) {
  out[0] = 0;
  out[1] = v[0];
  out[2] = v[0] + v[1];
  out[3] = out[2] + v[2];
  return out[3] + v[3];
}

// First column of the 4 that lane `lane` scans in chunk `t`.
RIPU_HOST_DEVICE inline int64_t scan_column(int64_t t, int lane) { return t * kScanChunk + 4 * lane; }

// ------------------------------------------------------------------------------------------- step (c): outputs
// Prefix-sum positions of the clipped window of output column j: the window's columns are [lo, hi) (tile-local).
RIPU_HOST_DEVICE inline void window_span(int64_t j, int64_t kw, int64_t W, int64_t c_lo, int64_t* lo, int64_t* hi) {
  *lo = window_lo(j, kw) - c_lo;
  *hi = window_hi(j, kw, W) - c_lo;
}

}  // namespace gpu
}  // namespace ripu
