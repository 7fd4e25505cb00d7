// Host checks of the CUDA launch logic, torch-free and CUDA-free (CTest runs them on any machine):
// - an emulation of the window pass (csrc/cuda/scores.cu window_kernel) through the very helpers it calls
//   (csrc/cuda/window_tile.h: plan, layout, per-thread column updates, per-lane scan steps, window spans). A block of
//   kWinThreads threads runs phase by phase -- every thread's step (a), barrier, every warp's step (b) (the warp
//   scan emulated lane by lane), barrier, every thread's step (c) -- which is what the barriers guarantee on the GPU.
//   Checked against brute-force window sums: class counts, non-finite counts and entropy sums per pixel, impurity
//   bit for bit;
// - the bank arithmetic of every shared-memory access pattern of that kernel, and the plan's invariants;
// - select.cu's grid over images past the 65535 limit of gridDim.y (csrc/cuda/select_grid.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "check.h"
#include "cuda/select_grid.h"
#include "cuda/window_tile.h"
#include "ripu/window_math.h"

using namespace ripu;
using namespace ripu::gpu;

namespace {

std::mt19937 gen(1812);

struct Maps {
  int64_t B, C, H, W;
  std::vector<uint16_t> label;  // C marks a non-finite pixel
  std::vector<float> e;         // NaN exactly where label == C
};

// Random maps: labels in blobs (so windows are often pure), a few non-finite pixels, entropies in [0, 1].
Maps make_maps(int64_t B, int64_t C, int64_t H, int64_t W, double nonfinite) {
  Maps m{B, C, H, W, std::vector<uint16_t>(B * H * W), std::vector<float>(B * H * W)};
  std::uniform_int_distribution<int64_t> cls(0, C - 1), blob(1, 6);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t bh = blob(gen), bw = blob(gen);
    std::vector<uint16_t> coarse((H / bh + 1) * (W / bw + 1));
    for (auto& v : coarse) v = static_cast<uint16_t>(cls(gen));
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        const int64_t q = (b * H + i) * W + j;
        m.label[q] = u(gen) < 0.1 ? static_cast<uint16_t>(cls(gen)) : coarse[(i / bh) * (W / bw + 1) + j / bw];
        m.e[q] = static_cast<float>(u(gen));
        if (u(gen) < nonfinite) {
          m.label[q] = static_cast<uint16_t>(C);
          m.e[q] = std::numeric_limits<float>::quiet_NaN();
        }
      }
  }
  return m;
}

struct Stats {  // per output pixel: class counts (C + 1, the last = non-finite) and the entropy sum
  std::vector<uint32_t> counts;
  std::vector<double> sum;
  std::vector<double> impurity;
  std::vector<int> visits;  // how many tiles wrote the pixel (must be exactly 1)
};

Stats brute_force(const Maps& m, int64_t k) {
  const int64_t C = m.C, H = m.H, W = m.W, n = m.B * H * W;
  Stats s{std::vector<uint32_t>(n * (C + 1), 0), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0), {}};
  const double inv_log_c = C > 1 ? 1.0 / std::log(static_cast<double>(C)) : 0.0;
  for (int64_t b = 0; b < m.B; ++b)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        const int64_t o = (b * H + i) * W + j;
        for (int64_t y = window_lo(i, k); y < window_hi(i, k, H); ++y)
          for (int64_t x = window_lo(j, k); x < window_hi(j, k, W); ++x) {
            const int64_t q = (b * H + y) * W + x;
            s.counts[o * (C + 1) + m.label[q]] += 1;
            if (m.label[q] != C) s.sum[o] += m.e[q];
          }
        const int64_t N = window_len(i, k, H) * window_len(j, k, W);
        double x = 0.0;
        for (int64_t c = 0; c < C; ++c)
          if (s.counts[o * (C + 1) + c]) x += xlogx_count(s.counts[o * (C + 1) + c]);
        s.impurity[o] = impurity_from_xlogx_sum_inv(x, xlogx_count(N), 1.0 / static_cast<double>(N), inv_log_c);
      }
  return s;
}

// The window pass of scores.cu, one block at a time, phase by phase.
Stats emulate(const Maps& m, bool region, const WindowPlan& P) {
  const int64_t C = m.C, H = m.H, W = m.W, n = m.B * H * W, s16 = P.s16;
  Stats out{std::vector<uint32_t>(n * (C + 1), 0), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0),
            std::vector<int>(n, 0)};
  std::vector<unsigned char> raw(P.smem.bytes);
  uint16_t* cnt16 = reinterpret_cast<uint16_t*>(raw.data() + P.smem.cnt16);
  uint32_t* q32 = reinterpret_cast<uint32_t*>(raw.data() + P.smem.q32);
  double* colsum = reinterpret_cast<double*>(raw.data() + P.smem.colsum);
  double* qsum = reinterpret_cast<double*>(raw.data() + P.smem.qsum);
  const double inv_log_c = C > 1 ? 1.0 / std::log(static_cast<double>(C)) : 0.0;
  const int items = static_cast<int>(C) + 1 + (region ? 1 : 0);
  for (int64_t tile = 0; tile < m.B * P.tiles_h * P.tiles_w; ++tile) {
    const int64_t b = tile / (P.tiles_h * P.tiles_w), t2 = tile % (P.tiles_h * P.tiles_w);
    const int64_t bi = t2 / P.tiles_w, j0 = (t2 % P.tiles_w) * P.tile_w;
    const int64_t i0 = bi * P.band, i1 = std::min(i0 + P.band, H), j1 = std::min(j0 + P.tile_w, W);
    const int64_t c_lo = halo_lo(j0, P.kw), wt = halo_width(j0, P.tile_w, P.kw, W);
    CHECK(wt + 1 <= s16);  // the total q32[wt] has a slot
    std::fill(raw.begin(), raw.end(), 0xAB);  // stale bytes from "another tile": the kernel must clear what it reads
    std::fill(cnt16, cnt16 + (P.smem.q32 - P.smem.cnt16) / 2, uint16_t(0));
    if (region) std::fill(colsum, colsum + s16, 0.0);
    for (int64_t i = i0; i < i1; ++i) {
      // (a)
      const int64_t r_from = (i == i0) ? std::max<int64_t>(i - P.kh, 0) : i + P.kh;
      const int64_t r_to = std::min(i + P.kh, H - 1);
      for (int tid = 0; tid < kWinThreads; ++tid) {
        for (int64_t r = r_from; r <= r_to; ++r) {
          add_row_counts(m.label.data() + (b * H + r) * W, c_lo, wt, s16, tid, +1, cnt16);
          if (region) add_row_sums(m.e.data() + (b * H + r) * W, c_lo, wt, tid, +1.0, colsum);
        }
        if (i != i0 && i - P.kh - 1 >= 0) {
          add_row_counts(m.label.data() + (b * H + i - P.kh - 1) * W, c_lo, wt, s16, tid, -1, cnt16);
          if (region) add_row_sums(m.e.data() + (b * H + i - P.kh - 1) * W, c_lo, wt, tid, -1.0, colsum);
        }
      }
      // (b) one warp per item; the warp scan emulated over its 32 lanes
      for (int item = 0; item < items; ++item) {
        if (item <= C) {
          const uint16_t* cnt = cnt16 + cnt_index(item, 0, s16);
          uint32_t* q = q32 + cnt_index(item, 0, s16);
          uint32_t carry = 0;
          for (int64_t t = 0; t * kScanChunk < s16; ++t) {
            uint32_t sums[32], e[32][4];
            for (int lane = 0; lane < 32; ++lane) {
              const int64_t x = scan_column(t, lane);
              const uint32_t v[4] = {cnt[x], cnt[x + 1], cnt[x + 2], cnt[x + 3]};
              sums[lane] = lane_prefix4(v, e[lane]);
            }
            uint32_t before = carry;
            for (int lane = 0; lane < 32; ++lane) {
              const int64_t x = scan_column(t, lane);
              for (int r = 0; r < 4; ++r) q[x + r] = before + e[lane][r];
              before += sums[lane];
            }
            carry = before;
          }
        } else {
          double carry = 0.0;
          for (int64_t x = 0; x < s16; ++x) {
            qsum[x] = carry;
            carry += colsum[x];
          }
        }
      }
      // (c)
      for (int tid = 0; tid < kWinThreads; ++tid)
        for (int64_t j = j0 + tid; j < j1; j += kWinThreads) {
          int64_t lo, hi;
          window_span(j, P.kw, W, c_lo, &lo, &hi);
          const int64_t o = (b * H + i) * W + j;
          const int64_t N = window_len(i, P.kh, H) * (hi - lo);
          out.visits[o] += 1;
          double x = 0.0;
          for (int64_t c = 0; c <= C; ++c) {
            const uint32_t nc = q32[cnt_index(c, hi, s16)] - q32[cnt_index(c, lo, s16)];
            out.counts[o * (C + 1) + c] = nc;
            if (c < C && nc) x += xlogx_count(nc);
          }
          out.impurity[o] = impurity_from_xlogx_sum_inv(x, xlogx_count(N), 1.0 / static_cast<double>(N), inv_log_c);
          if (region) out.sum[o] = qsum[hi] - qsum[lo];
        }
    }
  }
  return out;
}

void check_case(int64_t B, int64_t C, int64_t H, int64_t W, int64_t k, bool region, size_t smem_limit) {
  const Maps m = make_maps(B, C, H, W, 0.01);
  const WindowPlan P = plan_window(C, H, W, k, region, smem_limit);
  const Stats want = brute_force(m, k), got = emulate(m, region, P);
  int64_t bad_counts = 0, bad_sums = 0, bad_imp = 0, bad_visits = 0;
  for (int64_t o = 0; o < B * H * W; ++o) {
    bad_visits += got.visits[o] != 1;
    for (int64_t c = 0; c <= C; ++c) bad_counts += got.counts[o * (C + 1) + c] != want.counts[o * (C + 1) + c];
    const bool pure_window = want.counts[o * (C + 1) + C] == 0;
    if (pure_window) bad_imp += got.impurity[o] != want.impurity[o];  // same counts, same maths: bit for bit
    if (region) bad_sums += !ripu_test::near(got.sum[o], want.sum[o], 1e-9, 1e-12);
  }
  ++ripu_test::checks();
  if (bad_counts || bad_sums || bad_imp || bad_visits) {
    ++ripu_test::failures();
    std::printf("window emulation B=%lld C=%lld H=%lld W=%lld k=%lld region=%d smem=%zu (tile_w=%lld s16=%lld "
                "band=%lld shared=%d): %lld count, %lld sum, %lld impurity mismatches, %lld pixels not written once\n",
                (long long)B, (long long)C, (long long)H, (long long)W, (long long)k, region, smem_limit,
                (long long)P.tile_w, (long long)P.s16, (long long)P.band, P.shared, (long long)bad_counts,
                (long long)bad_sums, (long long)bad_imp, (long long)bad_visits);
  }
}

void test_emulation_matches_brute_force() {
  const size_t h100 = 227 * 1024, a100 = 163 * 1024, tiny = 8 * 1024;
  // odd shapes, k from 0 past the image, one class and many, several tiles across and down, both modes
  for (bool region : {true, false}) {
    check_case(2, 4, 13, 27, 0, region, h100);
    check_case(2, 4, 13, 27, 1, region, h100);
    check_case(1, 3, 37, 41, 2, region, h100);
    check_case(1, 5, 9, 300, 1, region, h100);    // several tiles across (tile_w = 125)
    check_case(1, 5, 70, 300, 33, region, h100);  // k = 33: wider tiles, bands of 67 rows
    check_case(1, 5, 70, 300, 40, region, tiny);  // shared memory too small for the preferred tile: narrower tiles
    check_case(1, 1, 11, 9, 2, region, h100);     // one class: impurity 0 everywhere (but non-finite windows)
    check_case(1, 150, 21, 160, 3, region, h100); // ADE20K's 150 classes
    check_case(1, 150, 21, 160, 3, region, a100);
    check_case(1, 4, 6, 5, 1000, region, h100);   // a window larger than the image
    check_case(1, 4, 1, 1, 3, region, h100);      // one pixel
    check_case(1, 4, 1, 257, 70, region, h100);   // one row
    check_case(1, 4, 300, 1, 70, region, h100);   // one column
    check_case(1, 300, 12, 400, 150, region, h100);  // 300 classes, k = 150: global scratch
  }
}

// ------------------------------------------------------------------------------------------- bank arithmetic
// True when no bank holds two different words among `words` (one access instruction of the lanes involved).
bool conflict_free(const std::vector<int64_t>& words) {
  std::vector<std::set<int64_t>> bank(32);
  for (int64_t w : words) bank[w % 32].insert(w);
  for (const auto& s : bank)
    if (s.size() > 1) return false;
  return true;
}

void check_banks(int64_t C, int64_t H, int64_t W, int64_t k, bool region, size_t smem_limit) {
  const WindowPlan P = plan_window(C, H, W, k, region, smem_limit);
  const int64_t s16 = P.s16;
  std::uniform_int_distribution<int64_t> label(0, C);
  bool ok_a = true, ok_b = true, ok_c = true;
  for (int64_t j0 = 0; j0 < W; j0 += P.tile_w) {
    const int64_t c_lo = halo_lo(j0, P.kw), wt = halo_width(j0, P.tile_w, P.kw, W);
    // (a) a 2-byte update per lane, any labels: at most one word per bank (worst case over random labels, plus all
    //     lanes on distinct classes and all on one class)
    for (int trial = 0; trial < 20; ++trial)
      for (int warp = 0; warp < kWinWarps; ++warp)
        for (int64_t base = 0; base < wt; base += kUpdateSpan)
          for (int parity = 0; parity < 2; ++parity) {
            std::vector<int64_t> words;
            for (int lane = 0; lane < 32; ++lane) {
              const int64_t x = update_column(base, warp, lane, parity);
              if (x >= wt) continue;
              const int64_t c = trial == 0 ? 0 : (trial == 1 ? lane % (C + 1) : label(gen));
              words.push_back(static_cast<int64_t>(P.smem.cnt16 / 4) + (cnt_index(c, x, s16) * 2) / 4);
            }
            ok_a = ok_a && conflict_free(words);
          }
    // (b) 8-byte loads of cnt16 per half-warp, 16-byte stores of q32 per quarter-warp, 8-byte doubles per half-warp
    for (int64_t c = 0; c <= C; ++c)
      for (int64_t t = 0; t * kScanChunk < s16; ++t) {
        for (int half = 0; half < 2; ++half) {
          std::vector<int64_t> words;
          for (int lane = 16 * half; lane < 16 * half + 16; ++lane) {
            const int64_t w = static_cast<int64_t>(P.smem.cnt16 / 4) + cnt_index(c, scan_column(t, lane), s16) / 2;
            words.push_back(w);
            words.push_back(w + 1);
          }
          ok_b = ok_b && conflict_free(words);
        }
        for (int quarter = 0; quarter < 4; ++quarter) {
          std::vector<int64_t> words;
          for (int lane = 8 * quarter; lane < 8 * quarter + 8; ++lane)
            for (int r = 0; r < 4; ++r)
              words.push_back(static_cast<int64_t>(P.smem.q32 / 4) + cnt_index(c, scan_column(t, lane), s16) + r);
          ok_b = ok_b && conflict_free(words);
        }
      }
    if (region)
      for (int64_t x0 = 0; x0 < s16; x0 += 32)
        for (int half = 0; half < 2; ++half) {
          std::vector<int64_t> words;
          for (int lane = 16 * half; lane < 16 * half + 16; ++lane) {
            const int64_t w = static_cast<int64_t>(P.smem.qsum / 4) + 2 * (x0 + lane);
            words.push_back(w);
            words.push_back(w + 1);
          }
          ok_b = ok_b && conflict_free(words);
        }
    // (c) the q32 reads at hi and at lo of each output column, per warp
    const int64_t j1 = std::min(j0 + P.tile_w, W);
    for (int64_t c = 0; c <= C; c += (C > 8 ? C / 8 : 1))
      for (int64_t jb = j0; jb < j1; jb += 32)
        for (int side = 0; side < 2; ++side) {
          std::vector<int64_t> words;
          for (int lane = 0; lane < 32 && jb + lane < j1; ++lane) {
            int64_t lo, hi;
            window_span(jb + lane, P.kw, W, c_lo, &lo, &hi);
            words.push_back(static_cast<int64_t>(P.smem.q32 / 4) + cnt_index(c, side ? hi : lo, s16));
          }
          ok_c = ok_c && conflict_free(words);
        }
  }
  ++ripu_test::checks();
  if (!(ok_a && ok_b && ok_c)) {
    ++ripu_test::failures();
    std::printf("bank conflict C=%lld H=%lld W=%lld k=%lld: step a %d, b %d, c %d\n", (long long)C, (long long)H,
                (long long)W, (long long)k, ok_a, ok_b, ok_c);
  }
}

void test_shared_memory_accesses_are_conflict_free() {
  for (int64_t C : {1, 4, 19, 150})
    for (int64_t k : {0, 1, 3, 16, 32, 64})
      for (bool region : {true, false}) check_banks(C, 1024, 2048, k, region, 227 * 1024);
  check_banks(19, 37, 41, 2, true, 227 * 1024);
  check_banks(19, 100, 333, 1000, true, 227 * 1024);
}

// ------------------------------------------------------------------------------------------- the plan
void test_plan_invariants() {
  for (int64_t C : {1, 2, 19, 150, 300})
    for (int64_t W : {1, 2, 127, 128, 129, 300, 2048})
      for (int64_t k : {0, 1, 2, 15, 16, 32, 63, 64, 150, 1000})
        for (size_t limit : {size_t(48) << 10, size_t(163) << 10, size_t(227) << 10}) {
          const int64_t H = 1024;
          const WindowPlan P = plan_window(C, H, W, k, true, limit);
          CHECK(P.kw == std::min(k, W - 1) && P.kh == std::min(k, H - 1));
          CHECK(P.tile_w >= 1 && P.tile_w <= W);
          CHECK(P.s16 % kScanChunk == 0);
          CHECK(P.tiles_w * P.tile_w >= W && (P.tiles_w - 1) * P.tile_w < W);
          CHECK(P.tiles_h * P.band >= H && (P.tiles_h - 1) * P.band < H);
          CHECK(P.smem.bytes == window_smem(C, P.s16, true).bytes);
          CHECK(!P.shared || P.smem.bytes <= limit);
          for (int64_t j0 = 0; j0 < W; j0 += P.tile_w) CHECK(halo_width(j0, P.tile_w, P.kw, W) + 1 <= P.s16);
          // Cost: when shared memory does not bind, the halo is at most about a quarter of the scanned columns.
          const WindowPlan roomy = plan_window(C, H, W, k, true, size_t(1) << 40);
          if (roomy.tile_w < W) CHECK(4 * (2 * roomy.kw + 1) <= roomy.s16);
        }
  // The paper's maps: 19 classes, 2048 columns. k = 1 and k = 32 both fit in shared memory on an A100 and an H100.
  const WindowPlan k1 = plan_window(19, 1024, 2048, 1, true, 163 << 10);
  const WindowPlan k32 = plan_window(19, 1024, 2048, 32, true, 163 << 10);
  CHECK(k1.shared && k32.shared);
  CHECK(k1.tile_w == 125 && k1.s16 == 128);
  CHECK(k32.tile_w == 3 * 128 - 1 - 64);
}

// select.cu's histogram grid: images along y past the 65535 limit are covered exactly once by the blocks' loop.
void test_select_grid_covers_every_image() {
  for (int64_t B : {int64_t(1), int64_t(7), int64_t(65535), int64_t(65536), int64_t(70000), int64_t(200001)}) {
    const SelectGrid g = hist_grid(B, 1024 * 2048, 256);
    CHECK(g.y >= 1 && g.y <= 65535 && g.x >= 1 && g.x <= 1024);
    std::vector<int> seen(B, 0);
    for (unsigned by = 0; by < g.y; ++by)
      for (int64_t b = by; b < B; b += g.y) seen[b] += 1;  // the kernel's loop over images
    CHECK(std::all_of(seen.begin(), seen.end(), [](int v) { return v == 1; }));
    CHECK(per_image_blocks(B) == static_cast<unsigned>(B));
  }
  CHECK(hist_grid(3, 1, 256).x == 1 && hist_grid(3, int64_t(1) << 30, 256).x == 1024);
}

}  // namespace

int main() {
  test_select_grid_covers_every_image();
  test_plan_invariants();
  test_shared_memory_accesses_are_conflict_free();
  test_emulation_matches_brute_force();
  return ripu_test::report("test_cuda_host");
}
