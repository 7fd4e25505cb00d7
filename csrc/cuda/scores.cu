// Fused scores on the GPU (see csrc/cuda/README.md).
//
// Pass 1 (pixel_kernel): one thread per output pixel reads its C logits once (bilinear taps on the fly when a
//   resize is fused), and writes the normalised entropy e and the argmax label (uint16; C for a pixel with a
//   non-finite logit) -- two B x H x W maps, never a C x H x W one. Threads run along W, so NCHW reads are coalesced
//   per class; channels-last reads hit the lines the neighbouring threads of the warp load.
// Pass 2 (window_kernel): a block owns a tile of output columns x a band of rows (window_tile.h has the layout,
//   the plan and the bank arithmetic). Running sums in both directions: per column of the tile and its halo, the
//   class counts (and entropy sum) of the column segment [i - k, i + k] slide down one row per output row (O(1)
//   per column); along the row, a warp scan per class turns them into prefix sums, so a window's class count is a
//   difference of two prefix sums. The impurity uses the n log n form of window_math.h in double. Cost per pixel:
//   O(C), with no term in k (the halo is bounded to about a quarter of the tile).
#include <algorithm>

#include "cuda/cuda_utils.cuh"
#include "cuda/ripu_cuda.h"
#include "cuda/window_tile.h"
#include "ripu/bilinear_math.h"
#include "ripu/entropy_math.h"
#include "ripu/window_math.h"

namespace ripu {
namespace gpu {
namespace {

constexpr int kPixThreads = 256;

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
    // C (<= 65535, checked by the binding) marks a non-finite pixel: pass 2 counts it like a class of its own.
    if (a.label) a.label[p] = static_cast<uint16_t>(dev_isnan(e) ? C : arg);
  }
}

template <typename T>
struct WindowArgs {
  const T* entropy;        // (B, H, W); in pixel mode this is the uncertainty output itself
  const uint16_t* label;   // (B, H, W); C marks a pixel with a non-finite logit
  int64_t B, H, W;
  int32_t C;
  bool pixel_mode;
  double inv_log_c;
  WindowPlan plan;
  unsigned char* gmem;     // per-block scratch in global memory, or nullptr to use shared memory
  size_t block_bytes;
  T* score;
  T* impurity;
  T* uncertainty;          // written in region mode only
};

// Exclusive scan of one value per lane over the warp; *total = the sum over all 32 lanes.
template <typename V>
__device__ __forceinline__ V warp_exclusive_scan(V v, V* total) {
  const int lane = threadIdx.x & 31;
  V inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const V n = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += n;
  }
  *total = __shfl_sync(0xffffffffu, inc, 31);
  const V before = __shfl_up_sync(0xffffffffu, inc, 1);  // the previous lane's inclusive sum (exact for doubles too)
  return lane == 0 ? V(0) : before;
}

// Step (b) for one class row: q[x] = sum_{x' < x} cnt[x'] for x in [0, s16), by one warp. Lane l takes 4 columns of
// each 128-column chunk through one 8-byte load and one 16-byte store (window_tile.h: bank arithmetic).
__device__ __forceinline__ void scan_counts(const uint16_t* cnt, uint32_t* q, int64_t s16) {
  const int lane = threadIdx.x & 31;
  uint32_t carry = 0;
  for (int64_t t = 0; t * kScanChunk < s16; ++t) {
    const int64_t x = scan_column(t, lane);
    const uint2 raw = *reinterpret_cast<const uint2*>(cnt + x);  // 4 halfwords
    const uint32_t v[4] = {raw.x & 0xffffu, raw.x >> 16, raw.y & 0xffffu, raw.y >> 16};
    uint32_t e[4];
    const uint32_t sum = lane_prefix4(v, e);
    uint32_t chunk_total;
    const uint32_t before = warp_exclusive_scan(sum, &chunk_total) + carry;
    *reinterpret_cast<uint4*>(q + x) = make_uint4(before + e[0], before + e[1], before + e[2], before + e[3]);
    carry += chunk_total;
  }
}

// Step (b) for the entropy sums: q[x] = sum_{x' < x} col[x'], one double per lane per 32-column step.
__device__ __forceinline__ void scan_sums(const double* col, double* q, int64_t s16) {
  const int lane = threadIdx.x & 31;
  double carry = 0.0;
  for (int64_t x0 = 0; x0 < s16; x0 += 32) {
    const double v = col[x0 + lane];
    double total;
    q[x0 + lane] = carry + warp_exclusive_scan(v, &total);
    carry += total;
  }
}

template <typename T>
__global__ void __launch_bounds__(kWinThreads) window_kernel(WindowArgs<T> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* raw = a.gmem ? a.gmem + blockIdx.x * a.block_bytes : smem_raw;
  const int64_t s16 = a.plan.s16;
  uint16_t* cnt16 = reinterpret_cast<uint16_t*>(raw + a.plan.smem.cnt16);
  uint32_t* q32 = reinterpret_cast<uint32_t*>(raw + a.plan.smem.q32);
  double* colsum = reinterpret_cast<double*>(raw + a.plan.smem.colsum);
  double* qsum = reinterpret_cast<double*>(raw + a.plan.smem.qsum);

  const int tid = threadIdx.x, warp = tid >> 5;
  const int32_t C = a.C;
  const int64_t H = a.H, W = a.W, kh = a.plan.kh, kw = a.plan.kw;
  const int64_t tile_w = a.plan.tile_w, band = a.plan.band, tiles_w = a.plan.tiles_w, tiles_h = a.plan.tiles_h;
  const bool region = !a.pixel_mode;
  const int items = C + 1 + (region ? 1 : 0);  // scans per row: C classes, the non-finite count, the entropy sum
  const int64_t ntiles = a.B * tiles_h * tiles_w;
  const int64_t zero_words = static_cast<int64_t>((a.plan.smem.q32 - a.plan.smem.cnt16) / 16);  // cnt16 + padding

  for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    const int64_t b = tile / (tiles_h * tiles_w);
    const int64_t t2 = tile - b * tiles_h * tiles_w;
    const int64_t bi = t2 / tiles_w;
    const int64_t j0 = (t2 - bi * tiles_w) * tile_w;
    const int64_t i0 = bi * band;
    const int64_t i1 = min(i0 + band, H);
    const int64_t j1 = min(j0 + tile_w, W);
    const int64_t c_lo = halo_lo(j0, kw);
    const int64_t wt = halo_width(j0, tile_w, kw, W);
    const T* e_img = a.entropy + b * H * W;
    const uint16_t* y_img = a.label + b * H * W;

    __syncthreads();  // the previous tile is done with every array
    for (int64_t x = tid; x < zero_words; x += kWinThreads)
      reinterpret_cast<uint4*>(cnt16)[x] = make_uint4(0u, 0u, 0u, 0u);
    if (region)
      for (int64_t x = tid; x < s16; x += kWinThreads) colsum[x] = 0.0;
    __syncthreads();

    for (int64_t i = i0; i < i1; ++i) {
      // (a) column state of rows [i - kh, i + kh]: built at the band's first row, then slid down by one row.
      const int64_t r_from = (i == i0) ? max(i - kh, int64_t(0)) : i + kh;
      const int64_t r_to = min(i + kh, H - 1);  // inclusive; at most one row after the first
      for (int64_t r = r_from; r <= r_to; ++r) {
        add_row_counts(y_img + r * W, c_lo, wt, s16, tid, +1, cnt16);
        if (region) add_row_sums(e_img + r * W, c_lo, wt, tid, +1.0, colsum);
      }
      if (i != i0 && i - kh - 1 >= 0) {
        add_row_counts(y_img + (i - kh - 1) * W, c_lo, wt, s16, tid, -1, cnt16);
        if (region) add_row_sums(e_img + (i - kh - 1) * W, c_lo, wt, tid, -1.0, colsum);
      }
      __syncthreads();

      // (b) prefix sums along the row: one warp per class row (then the non-finite count, then the entropy sum).
      for (int item = warp; item < items; item += kWinWarps) {
        if (item <= C) scan_counts(cnt16 + cnt_index(item, 0, s16), q32 + cnt_index(item, 0, s16), s16);
        else scan_sums(colsum, qsum, s16);
      }
      __syncthreads();

      // (c) one thread per output column: window counts as differences of prefix sums.
      for (int64_t j = j0 + tid; j < j1; j += kWinThreads) {
        int64_t lo, hi;
        window_span(j, kw, W, c_lo, &lo, &hi);
        const int64_t N = window_len(i, kh, H) * (hi - lo);
        const int64_t o = (b * H + i) * W + j;
        const uint32_t* qn = q32 + cnt_index(C, 0, s16);
        if (qn[hi] - qn[lo] > 0u) {  // the window touches a non-finite pixel
          const T nan = quiet_nan<T>();
          a.score[o] = nan;
          a.impurity[o] = nan;
          if (region) a.uncertainty[o] = nan;
          continue;
        }
        double s = 0.0;
        for (int32_t c = 0; c < C; ++c) {
          const uint32_t* qc = q32 + cnt_index(c, 0, s16);
          const uint32_t nc = qc[hi] - qc[lo];
          if (nc) s += xlogx_count(nc);
        }
        const double inv_n = 1.0 / static_cast<double>(N);
        const T imp = static_cast<T>(impurity_from_xlogx_sum_inv(s, xlogx_count(N), inv_n, a.inv_log_c));
        a.impurity[o] = imp;
        if (region) {
          const T U = static_cast<T>((qsum[hi] - qsum[lo]) * inv_n);
          a.uncertainty[o] = U;
          a.score[o] = imp * U;
        } else {
          a.score[o] = imp * a.entropy[o];
        }
      }
      // No barrier here: the next row's step (a) touches only cnt16 / colsum, and its barrier orders this step (c)
      // before the next step (b) rewrites q32 / qsum.
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
  int dev = 0, max_optin = 0, sms = 1;
  if ((err = cudaGetDevice(&dev)) != cudaSuccess) return err;
  if ((err = cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) != cudaSuccess)
    return err;
  if ((err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return err;
  WindowArgs<T> wa;
  wa.entropy = e;
  wa.label = label;
  wa.B = d.B;
  wa.H = H;
  wa.W = W;
  wa.C = static_cast<int32_t>(d.C);
  wa.pixel_mode = pixel_mode;
  wa.inv_log_c = inverse_log_classes<double>(static_cast<int32_t>(d.C));
  wa.plan = plan_window(d.C, H, W, k, !pixel_mode, static_cast<size_t>(max_optin));
  wa.score = score;
  wa.impurity = impurity;
  wa.uncertainty = uncertainty;
  const int64_t ntiles = d.B * wa.plan.tiles_h * wa.plan.tiles_w;
  size_t smem = 0;
  int64_t grid = ntiles;
  if (wa.plan.shared) {
    wa.gmem = nullptr;
    wa.block_bytes = 0;
    smem = wa.plan.smem.bytes;
    if (smem > 48 * 1024) {
      err = cudaFuncSetAttribute(window_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smem));
      if (err != cudaSuccess) return err;
    }
  } else {
    // Many classes and a wide halo: the same kernel on per-block scratch in global memory (L2-resident), with a
    // persistent grid so the scratch stays bounded.
    grid = std::min<int64_t>(ntiles, 4 * static_cast<int64_t>(sms));
    wa.block_bytes = (wa.plan.smem.bytes + 255) & ~size_t(255);
    wa.gmem = static_cast<unsigned char*>(ws.get(wa.block_bytes * grid));
  }
  grid = std::min<int64_t>(grid, (int64_t(1) << 31) - 1);
  window_kernel<T><<<static_cast<unsigned>(grid), kWinThreads, smem, stream>>>(wa);
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
