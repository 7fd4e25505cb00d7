// Fused scores on the GPU (see csrc/cuda/README.md).
//
// Pass 1 (pixel_kernel): one thread per output pixel reads its C logits once (bilinear taps on the fly when a
//   resize is fused), and writes the normalised entropy e and the argmax label (uint16) — two B x H x W maps, never a
//   C x H x W one. Threads run along W, so NCHW reads are coalesced per class; channels-last reads hit the lines
//   the neighbouring threads of the warp load.
// Pass 2 (window_kernel): a block owns a tile of TW output columns x a band of rows. In shared memory it keeps, for
//   every column of the tile plus a halo of k columns, the class counts (and entropy sum, NaN count) of the column
//   segment [i - k, i + k]; going down one row adds one row and removes one row (O(1) per column). The horizontal
//   window sums are running sums along segments of L columns per class. The impurity uses the n log n form of
//   window_math.h in double. Cost per pixel: O(C), independent of k (up to the halo of k columns per tile).
#include <algorithm>

#include "cuda/cuda_utils.cuh"
#include "cuda/ripu_cuda.h"
#include "ripu/bilinear_math.h"
#include "ripu/entropy_math.h"
#include "ripu/window_math.h"

namespace ripu {
namespace gpu {
namespace {

constexpr int kPixThreads = 256;
constexpr int kTileW = 128;  // output columns per tile == threads per block of pass 2
constexpr int kSegL = 32;    // columns per running-sum segment in the horizontal step
constexpr int kSegs = kTileW / kSegL;

template <typename S, typename T>
struct PixelArgs {
  const S* logits;
  Dims4 d;
  int64_t H2, W2;
  bool resize, align_corners;
  T scale_h, scale_w, inv_log_c;
  T* entropy;         // (B, H2, W2)
  uint16_t* label;    // (B, H2, W2) or nullptr
};

template <typename S, typename T>
__global__ void __launch_bounds__(kPixThreads) pixel_kernel(PixelArgs<S, T> a) {
  const int64_t plane = a.H2 * a.W2;
  const int64_t total = a.d.B * plane;
  const int32_t C = static_cast<int32_t>(a.d.C);
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / plane;
    const int64_t rem = p - b * plane;
    const int64_t i = rem / a.W2;
    const int64_t j = rem - i * a.W2;
    const S* base = a.logits + b * a.d.sB;
    int32_t arg = 0;
    T e;
    if (!a.resize) {
      const S* px = base + i * a.d.sH + j * a.d.sW;
      const int64_t sc = a.d.sC;
      auto x = [px, sc](int32_t c) { return dload<T>(px + c * sc); };
      e = pixel_entropy_argmax<T>(x, C, a.inv_log_c, &arg);
    } else {
      const BilinearTap<T> th = bilinear_tap<T>(i, a.d.H, a.H2, a.scale_h, a.align_corners);
      const BilinearTap<T> tw = bilinear_tap<T>(j, a.d.W, a.W2, a.scale_w, a.align_corners);
      const S* r0 = base + th.i0 * a.d.sH;
      const S* r1 = base + th.i1 * a.d.sH;
      const int64_t c0 = tw.i0 * a.d.sW, c1 = tw.i1 * a.d.sW, sc = a.d.sC;
      auto x = [=](int32_t c) {
        const int64_t o = c * sc;
        return bilinear_combine<T>(dload<T>(r0 + o + c0), dload<T>(r0 + o + c1), dload<T>(r1 + o + c0),
                                   dload<T>(r1 + o + c1), th, tw);
      };
      e = pixel_entropy_argmax<T>(x, C, a.inv_log_c, &arg);
    }
    a.entropy[p] = e;
    if (a.label) a.label[p] = static_cast<uint16_t>(arg);  // C <= 65535 (checked by the binding)
  }
}

template <typename T>
struct WindowArgs {
  const T* entropy;        // (B, H, W); in pixel mode this is the uncertainty output itself
  const uint16_t* label;   // (B, H, W)
  int64_t B, H, W, k;
  int32_t C;
  bool pixel_mode;
  double inv_log_c;
  int64_t tiles_w, tiles_h, band;  // tiles along W, row bands along H, rows per band
  int64_t halo_w;                  // max columns of a tile with its halo: min(kTileW + 2k, W)
  unsigned char* gmem;             // per-block scratch in global memory, or nullptr to use shared memory
  size_t block_bytes;
  T* score;
  T* impurity;
  T* uncertainty;                  // written in region mode only
};

// Shared (or global fallback) scratch layout of one block, all offsets 8-byte aligned.
struct WindowLayout {
  size_t colsum, hsum, colnan, hnan, hcnt, colcnt, bytes;
};

__host__ __device__ inline size_t align8(size_t x) { return (x + 7) & ~size_t(7); }

__host__ __device__ inline WindowLayout window_layout(int64_t C, int64_t halo_w) {
  WindowLayout L;
  size_t o = 0;
  L.colsum = o; o = align8(o + sizeof(double) * halo_w);
  L.hsum = o;   o = align8(o + sizeof(double) * kTileW);
  L.colnan = o; o = align8(o + sizeof(int32_t) * halo_w);
  L.hnan = o;   o = align8(o + sizeof(int32_t) * kTileW);
  L.hcnt = o;   o = align8(o + sizeof(uint32_t) * C * kTileW);
  L.colcnt = o; o = align8(o + sizeof(uint16_t) * C * halo_w);
  L.bytes = o;
  return L;
}

// Running sums of a (2k+1)-wide window along one segment [jb, je) of output columns: dst[j] = sum of
// src[max(j-k, 0) .. min(j+k, W-1)]. src and dst are indexed by image column; A is the accumulator type.
template <typename A, typename V>
__device__ inline void slide_window_row(const V* src, A* dst, int64_t jb, int64_t je, int64_t k, int64_t W) {
  A acc = 0;
  for (int64_t x = max(jb - k, int64_t(0)), hi = min(jb + k + 1, W); x < hi; ++x) acc += src[x];
  dst[jb] = acc;
  for (int64_t j = jb + 1; j < je; ++j) {
    if (j + k < W) acc += src[j + k];
    if (j - k - 1 >= 0) acc -= src[j - k - 1];
    dst[j] = acc;
  }
}

template <typename T>
__global__ void __launch_bounds__(kTileW) window_kernel(WindowArgs<T> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* raw = a.gmem ? a.gmem + blockIdx.x * a.block_bytes : smem_raw;
  const WindowLayout L = window_layout(a.C, a.halo_w);
  double* colsum = reinterpret_cast<double*>(raw + L.colsum);
  double* hsum = reinterpret_cast<double*>(raw + L.hsum);
  int32_t* colnan = reinterpret_cast<int32_t*>(raw + L.colnan);
  int32_t* hnan = reinterpret_cast<int32_t*>(raw + L.hnan);
  uint32_t* hcnt = reinterpret_cast<uint32_t*>(raw + L.hcnt);
  uint16_t* colcnt = reinterpret_cast<uint16_t*>(raw + L.colcnt);

  const int tid = threadIdx.x;
  const int32_t C = a.C;
  const int64_t H = a.H, W = a.W, k = a.k;
  const bool region = !a.pixel_mode;
  const int extra = region ? 2 : 1;  // pseudo-classes after the C counts: NaN count, then the entropy sum
  const int64_t ntiles = a.B * a.tiles_h * a.tiles_w;

  for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    const int64_t b = tile / (a.tiles_h * a.tiles_w);
    const int64_t t2 = tile - b * a.tiles_h * a.tiles_w;
    const int64_t bi = t2 / a.tiles_w;
    const int64_t j0 = (t2 - bi * a.tiles_w) * kTileW;
    const int64_t i0 = bi * a.band;
    const int64_t i1 = min(i0 + a.band, H);
    const int64_t j1 = min(j0 + kTileW, W);
    const int64_t c_lo = max(j0 - k, int64_t(0));
    const int64_t c_hi = min(j1 + k, W);
    const int64_t wt = c_hi - c_lo;  // <= halo_w
    const T* e_img = a.entropy + b * H * W;
    const uint16_t* y_img = a.label + b * H * W;

    __syncthreads();  // the previous tile is done with every array
    for (int64_t x = tid; x < static_cast<int64_t>(C) * wt; x += blockDim.x) colcnt[x] = 0;
    for (int64_t x = tid; x < wt; x += blockDim.x) {
      colsum[x] = 0.0;
      colnan[x] = 0;
    }
    __syncthreads();

    for (int64_t i = i0; i < i1; ++i) {
      // (a) vertical column state for rows [i - k, i + k]: built at the band's first row, then slid by one row.
      const int64_t r_from = (i == i0) ? max(i - k, int64_t(0)) : i + k;
      const int64_t r_to = (i == i0) ? min(i + k, H - 1) : min(i + k, H - 1);  // inclusive
      for (int64_t x = tid; x < wt; x += blockDim.x) {
        const int64_t col = c_lo + x;
        for (int64_t r = r_from; r <= r_to; ++r) {  // at most one row after the first
          const uint16_t y = y_img[r * W + col];
          const T ev = e_img[r * W + col];
          colcnt[static_cast<int64_t>(y) * wt + x] += 1;
          if (dev_isnan(ev)) colnan[x] += 1;
          else if (region) colsum[x] += static_cast<double>(ev);
        }
        const int64_t r_rm = i - k - 1;
        if (i != i0 && r_rm >= 0) {
          const uint16_t y = y_img[r_rm * W + col];
          const T ev = e_img[r_rm * W + col];
          colcnt[static_cast<int64_t>(y) * wt + x] -= 1;
          if (dev_isnan(ev)) colnan[x] -= 1;
          else if (region) colsum[x] -= static_cast<double>(ev);
        }
      }
      __syncthreads();

      // (b) horizontal windows [j - k, j + k]: a running sum per (class, segment of kSegL output columns).
      const int nitems = (C + extra) * kSegs;
      for (int it = tid; it < nitems; it += blockDim.x) {
        const int cls = it / kSegs;
        const int seg = it - cls * kSegs;
        const int64_t jb = j0 + seg * kSegL;
        const int64_t je = min(jb + kSegL, j1);
        if (jb >= je) continue;
        if (cls < C) {  // indexed by image column on both sides
          slide_window_row<uint32_t>(colcnt + static_cast<int64_t>(cls) * wt - c_lo,
                                     hcnt + static_cast<int64_t>(cls) * kTileW - j0, jb, je, k, W);
        } else if (cls == C) {
          slide_window_row<int32_t>(colnan - c_lo, hnan - j0, jb, je, k, W);
        } else {
          slide_window_row<double>(colsum - c_lo, hsum - j0, jb, je, k, W);
        }
      }
      __syncthreads();

      // (c) one thread per output pixel of the row: impurity, uncertainty, score.
      const int64_t j = j0 + tid;
      if (j < j1) {
        const int64_t N = window_len(i, k, H) * window_len(j, k, W);
        const int64_t o = (b * H + i) * W + j;
        const T nan = quiet_nan<T>();
        if (hnan[tid] > 0) {
          a.score[o] = nan;
          a.impurity[o] = nan;
          if (region) a.uncertainty[o] = nan;
        } else {
          double s = 0.0;
          for (int32_t c = 0; c < C; ++c) {
            const uint32_t nc = hcnt[static_cast<int64_t>(c) * kTileW + tid];
            if (nc) s += xlogx_count(nc);
          }
          const T P = static_cast<T>(impurity_from_xlogx_sum(s, xlogx_count(N), N, a.inv_log_c));
          a.impurity[o] = P;
          if (region) {
            const T U = static_cast<T>(hsum[tid] / static_cast<double>(N));
            a.uncertainty[o] = U;
            a.score[o] = P * U;
          } else {
            a.score[o] = P * a.entropy[o];
          }
        }
      }
      // no barrier needed here: the next row's step (a) touches only the column arrays, and its barrier orders
      // step (c) of this row before step (b) of the next.
    }
  }
}

template <typename S, typename T>
PixelArgs<S, T> pixel_args(const S* logits, const Dims4& d, const Resize& rs, T* entropy, uint16_t* label) {
  PixelArgs<S, T> a;
  a.logits = logits;
  a.d = d;
  a.resize = rs.enabled && (rs.H2 != d.H || rs.W2 != d.W);
  a.H2 = rs.enabled ? rs.H2 : d.H;
  a.W2 = rs.enabled ? rs.W2 : d.W;
  a.align_corners = rs.align_corners;
  a.scale_h = bilinear_scale<T>(d.H, a.H2, rs.align_corners);
  a.scale_w = bilinear_scale<T>(d.W, a.W2, rs.align_corners);
  a.inv_log_c = inverse_log_classes<T>(static_cast<int32_t>(d.C));
  a.entropy = entropy;
  a.label = label;
  return a;
}

}  // namespace

template <typename S, typename T>
cudaError_t pixel_entropy(const S* logits, const Dims4& d, T* entropy, cudaStream_t stream) {
  const int64_t total = d.B * d.H * d.W;
  if (total == 0) return cudaSuccess;
  const Resize none{false, d.H, d.W, false};
  PixelArgs<S, T> a = pixel_args<S, T>(logits, d, none, entropy, nullptr);
  pixel_kernel<S, T><<<grid_for(total, kPixThreads), kPixThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <typename S, typename T>
cudaError_t scores(const S* logits, const Dims4& d, const Resize& rs, int64_t k, bool pixel_mode, T* score,
                   T* impurity, T* uncertainty, Workspace& ws, cudaStream_t stream) {
  const int64_t H = rs.enabled ? rs.H2 : d.H, W = rs.enabled ? rs.W2 : d.W;
  const int64_t total = d.B * H * W;
  if (total == 0) return cudaSuccess;
  // Pass 1. Pixel mode parks e in the uncertainty output (it is the uncertainty); region mode needs its own map
  // because pass 2 overwrites the uncertainty while neighbouring tiles still read e.
  T* e = pixel_mode ? uncertainty : static_cast<T*>(ws.get(sizeof(T) * total));
  uint16_t* label = static_cast<uint16_t*>(ws.get(sizeof(uint16_t) * total));
  PixelArgs<S, T> pa = pixel_args<S, T>(logits, d, rs, e, label);
  pixel_kernel<S, T><<<grid_for(total, kPixThreads), kPixThreads, 0, stream>>>(pa);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  // Pass 2.
  const int64_t kk = std::min<int64_t>(k, std::max(H, W));  // a window wider than the image is the whole image
  WindowArgs<T> wa;
  wa.entropy = e;
  wa.label = label;
  wa.B = d.B;
  wa.H = H;
  wa.W = W;
  wa.k = kk;
  wa.C = static_cast<int32_t>(d.C);
  wa.pixel_mode = pixel_mode;
  wa.inv_log_c = inverse_log_classes<double>(static_cast<int32_t>(d.C));
  wa.tiles_w = (W + kTileW - 1) / kTileW;
  // Rows per band: the band's first row costs 2k+1 row updates, so bands of about 2k+1 rows keep that overhead at
  // one extra read per pixel (labels and entropies, not logits) whatever k is.
  wa.band = std::min<int64_t>(std::max<int64_t>(2 * kk + 1, 32), 512);
  wa.tiles_h = (H + wa.band - 1) / wa.band;
  wa.halo_w = std::min<int64_t>(kTileW + 2 * kk, W);
  wa.score = score;
  wa.impurity = impurity;
  wa.uncertainty = uncertainty;
  const WindowLayout L = window_layout(d.C, wa.halo_w);
  const int64_t ntiles = d.B * wa.tiles_h * wa.tiles_w;

  int dev = 0, max_optin = 0, sms = 1;
  if ((err = cudaGetDevice(&dev)) != cudaSuccess) return err;
  if ((err = cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) != cudaSuccess)
    return err;
  if ((err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return err;
  size_t smem = 0;
  int64_t grid = ntiles;
  if (L.bytes <= static_cast<size_t>(max_optin)) {
    wa.gmem = nullptr;
    wa.block_bytes = 0;
    smem = L.bytes;
    if (smem > 48 * 1024) {
      err = cudaFuncSetAttribute(window_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smem));
      if (err != cudaSuccess) return err;
    }
  } else {
    // Many classes and a wide halo: the same kernel on per-block scratch in global memory (L2-resident), with a
    // persistent grid so the scratch stays bounded.
    grid = std::min<int64_t>(ntiles, 4 * static_cast<int64_t>(sms));
    wa.block_bytes = align8(L.bytes + 255) & ~size_t(255);
    wa.gmem = static_cast<unsigned char*>(ws.get(wa.block_bytes * grid));
  }
  grid = std::min<int64_t>(grid, int64_t(1) << 30);
  window_kernel<T><<<static_cast<unsigned>(grid), kTileW, smem, stream>>>(wa);
  return cudaGetLastError();
}

#define RIPU_INSTANTIATE(S, T)                                                                                  \
  template cudaError_t pixel_entropy<S, T>(const S*, const Dims4&, T*, cudaStream_t);                          \
  template cudaError_t scores<S, T>(const S*, const Dims4&, const Resize&, int64_t, bool, T*, T*, T*, Workspace&, \
                                    cudaStream_t);
RIPU_INSTANTIATE(float, float)
RIPU_INSTANTIATE(double, double)
RIPU_INSTANTIATE(half_t, float)
RIPU_INSTANTIATE(bfloat16_t, float)
#undef RIPU_INSTANTIATE

}  // namespace gpu
}  // namespace ripu
