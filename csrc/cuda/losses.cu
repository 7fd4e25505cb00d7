// LCR and NL losses on the GPU, forward and backward (see csrc/cuda/README.md).
//
// Forward: per-pixel kernels compute the pixel's terms and reduce (sum, count) per block into a fixed number of
// partials; one single-block kernel adds the partials in a fixed order (deterministic) and writes the loss.
// LCR reads the logits only where the loss does: a boundary-flag map (1 byte per pixel, written with the per-block
// boundary counts) marks the boundary pixels; softmax statistics (max, sum of exponentials) are computed only at
// "touched" pixels -- u + o for a boundary pixel u and a neighbourhood offset o -- and the terms only at boundary
// pixels.
// Backward (LCR): the same flags and statistics, then one kernel over the pixels: an untouched pixel gets exactly 0
// (whatever its logits: a non-finite logit the loss never reads gives no NaN); a touched pixel v gathers
// [v boundary] dg/dp + (1/K) sum over the boundary pixels u within one step of v of mult(u -> v) dg/dmean(u), where
// mult counts the offsets whose replicate-clamped neighbour of u is v, and applies the softmax Jacobian. No
// C x H x W scratch: the extra memory is the flag map and the two statistics maps (1 + 2 sizeof(T) bytes per
// pixel); the gradient is written once per element (twice at touched pixels). No atomics: deterministic run to run.
// NL: one kernel, two passes over the classes. The normalisers (boundary or mask counts) come from counting passes
// on the device and the upstream gradient is read on the device: no host synchronisation anywhere.
#include <algorithm>

#include "cuda/cuda_utils.cuh"
#include "cuda/ripu_cuda.h"
#include "ripu/loss_math.h"

namespace ripu {
namespace gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPartials = 1024;

__constant__ int8_t kOff8[9][2] = {{-1, -1}, {-1, 0}, {-1, 1}, {0, -1}, {0, 0}, {0, 1}, {1, -1}, {1, 0}, {1, 1}};
__constant__ int8_t kOff4[5][2] = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}};

__device__ __forceinline__ int offset_count(int neighbors) { return neighbors == 8 ? 9 : 5; }
__device__ __forceinline__ int off_i(int neighbors, int o) { return neighbors == 8 ? kOff8[o][0] : kOff4[o][0]; }
__device__ __forceinline__ int off_j(int neighbors, int o) { return neighbors == 8 ? kOff8[o][1] : kOff4[o][1]; }
__device__ __forceinline__ int64_t clamp64(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : (x > hi ? hi : x); }

template <typename S>
struct Logits {
  const S* p;
  Dims4 d;
  template <typename T>
  __device__ __forceinline__ T at(int64_t b, int64_t c, int64_t i, int64_t j) const {
    return dload<T>(p + b * d.sB + c * d.sC + i * d.sH + j * d.sW);
  }
};

// Softmax statistics of one pixel: max and sum of exp(x - max) (NaN propagates as in torch.softmax).
template <typename T, typename S>
__device__ __forceinline__ void softmax_stats(const Logits<S>& x, int64_t b, int64_t i, int64_t j, T& m, T& s) {
  const int64_t C = x.d.C;
  m = x.template at<T>(b, 0, i, j);
  for (int64_t c = 1; c < C; ++c) {
    const T v = x.template at<T>(b, c, i, j);
    m = v > m ? v : m;
  }
  s = T(0);
  for (int64_t c = 0; c < C; ++c) s += rexp(x.template at<T>(b, c, i, j) - m);
}


__device__ __forceinline__ bool lcr_boundary(const int64_t* labels, int64_t b, int64_t i, int64_t j, int64_t H,
                                             int64_t W, int neighbors, int64_t ignore_index) {
  const int64_t* L = labels + b * H * W;
  const int no = offset_count(neighbors);
  const int64_t y = L[i * W + j];
  int64_t lap = (no - 1) * y;
  for (int o = 0; o < no; ++o) {
    const int di = off_i(neighbors, o), dj = off_j(neighbors, o);
    if (di == 0 && dj == 0) continue;
    const int64_t ii = i + di, jj = j + dj;
    if (ii >= 0 && ii < H && jj >= 0 && jj < W) lap -= L[ii * W + jj];  // zero padding outside
  }
  return lcr_is_boundary(lap, y, ignore_index);
}

template <typename T, typename S>
__device__ __forceinline__ T prob_at(const Logits<S>& x, const T* m_map, const T* s_map, int64_t b, int64_t c,
                                     int64_t i, int64_t j) {
  const int64_t q = (b * x.d.H + i) * x.d.W + j;
  return softmax_prob(x.template at<T>(b, c, i, j), m_map[q], s_map[q]);
}

// mean_c over the replicate-padded neighbourhood, summed in the reference's offset order, then divided by K.
template <typename T, typename S>
__device__ __forceinline__ T neighbour_mean(const Logits<S>& x, const T* m_map, const T* s_map, int64_t b, int64_t c,
                                            int64_t i, int64_t j, int neighbors) {
  const int no = offset_count(neighbors);
  T acc = T(0);
  for (int o = 0; o < no; ++o) {
    const int64_t ii = clamp64(i + off_i(neighbors, o), 0, x.d.H - 1);
    const int64_t jj = clamp64(j + off_j(neighbors, o), 0, x.d.W - 1);
    acc += prob_at<T>(x, m_map, s_map, b, c, ii, jj);
  }
  return acc / static_cast<T>(no);
}


// Is pixel (i, j) read by the loss: (i, j) + o a boundary pixel for some offset o? (The offset sets are symmetric,
// so this is "(i, j) = u + o for a boundary pixel u"; replicate clamping of u + o only ever lands on such pixels.)
__device__ __forceinline__ bool lcr_touched(const uint8_t* flags, int64_t b, int64_t i, int64_t j, int64_t H,
                                            int64_t W, int neighbors) {
  const uint8_t* F = flags + b * H * W;
  const int no = offset_count(neighbors);
  for (int o = 0; o < no; ++o) {
    const int64_t ii = i + off_i(neighbors, o), jj = j + off_j(neighbors, o);
    if (ii >= 0 && ii < H && jj >= 0 && jj < W && F[ii * W + jj]) return true;
  }
  return false;
}

// Boundary flags (B, H, W), and the per-block boundary counts into partials[2 * block + 1].
__global__ void __launch_bounds__(kThreads)
    lcr_flags_kernel(const int64_t* labels, int64_t B, int64_t H, int64_t W, int neighbors, int64_t ignore_index,
                     uint8_t* flags, double* partials) {
  __shared__ double red[32];
  const int64_t total = B * H * W;
  double cnt = 0.0;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    const bool f = lcr_boundary(labels, b, i, j, H, W, neighbors, ignore_index);
    flags[p] = f ? 1 : 0;
    cnt += f ? 1.0 : 0.0;
  }
  cnt = block_sum(cnt, red);
  if (threadIdx.x == 0) partials[2 * blockIdx.x + 1] = cnt;
}

// Softmax statistics at the pixels the loss reads (elsewhere the maps are left unwritten and never read).
template <typename S, typename T>
__global__ void __launch_bounds__(kThreads)
    lcr_stats_kernel(Logits<S> x, const uint8_t* flags, int neighbors, T* m_map, T* s_map) {
  const int64_t H = x.d.H, W = x.d.W, total = x.d.B * H * W;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    if (!lcr_touched(flags, b, i, j, H, W, neighbors)) continue;
    T m, s;
    softmax_stats<T>(x, b, i, j, m, s);
    m_map[p] = m;
    s_map[p] = s;
  }
}

// Forward terms: partials[2 * block] = sum of d over the boundary pixels (the counts come from lcr_flags_kernel).
template <typename S, typename T>
__global__ void __launch_bounds__(kThreads)
    lcr_terms_kernel(Logits<S> x, const T* m_map, const T* s_map, const uint8_t* flags, LcrKind kind, int neighbors,
                     double* partials) {
  __shared__ double red[32];
  const int64_t H = x.d.H, W = x.d.W, total = x.d.B * H * W, C = x.d.C;
  double sum = 0.0;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!flags[p]) continue;
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    T d = T(0);
    for (int64_t c = 0; c < C; ++c) {
      const T pc = prob_at<T>(x, m_map, s_map, b, c, i, j);
      const T mean = neighbour_mean<T>(x, m_map, s_map, b, c, i, j, neighbors);
      d += lcr_term(pc, mean, kind);
    }
    sum += static_cast<double>(d);
  }
  sum = block_sum(sum, red);
  if (threadIdx.x == 0) partials[2 * blockIdx.x] = sum;
}

// Adds the partials in a fixed order: out_loss (optional) = sum / max(count, 1), out_count = count.
template <typename T>
__global__ void __launch_bounds__(kThreads) finalize_kernel(const double* partials, int nparts, T* out_loss,
                                                            double* out_count) {
  __shared__ double red[32];
  double s = 0.0, c = 0.0;
  for (int q = threadIdx.x; q < nparts; q += blockDim.x) {
    s += partials[2 * q];
    c += partials[2 * q + 1];
  }
  s = block_sum(s, red);
  c = block_sum(c, red);
  if (threadIdx.x == 0) {
    if (out_loss) *out_loss = static_cast<T>(s / (c > 1.0 ? c : 1.0));
    if (out_count) *out_count = c;
  }
}

// Backward: dx of every pixel; exactly 0 where the loss reads nothing.
template <typename S, typename T>
__global__ void __launch_bounds__(kThreads)
    lcr_grad_kernel(Logits<S> x, const T* m_map, const T* s_map, const uint8_t* flags, LcrKind kind, int neighbors,
                    const T* grad, const double* count, T* dx, Dims4 dxd) {
  const int64_t H = x.d.H, W = x.d.W, total = x.d.B * H * W, C = x.d.C;
  const double cnt = *count;
  const T scale = *grad / static_cast<T>(cnt > 1.0 ? cnt : 1.0);
  const int no = offset_count(neighbors);
  const T inv_k = T(1) / static_cast<T>(no);
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    T* dxp = dx + b * dxd.sB + i * dxd.sH + j * dxd.sW;
    if (!lcr_touched(flags, b, i, j, H, W, neighbors)) {
      for (int64_t c = 0; c < C; ++c) dxp[c * dxd.sC] = T(0);
      continue;
    }
    // Boundary pixels u = v + (di, dj) within one step of v = (i, j), and how many of u's offsets land on v after
    // replicate clamping: 4 bits per position q = 3 (di + 1) + (dj + 1) (a mask, not an array, so that the unrolled
    // loops below index registers rather than local memory).
    const uint8_t* F = flags + b * H * W;
    uint64_t mults = 0;
#pragma unroll
    for (int q = 0; q < 9; ++q) {
      const int64_t a = i + q / 3 - 1, c2 = j + q % 3 - 1;
      if (a < 0 || a >= H || c2 < 0 || c2 >= W || !F[a * W + c2]) continue;
      uint64_t mult = 0;
      for (int o = 0; o < no; ++o)
        mult += (clamp64(a + off_i(neighbors, o), 0, H - 1) == i && clamp64(c2 + off_j(neighbors, o), 0, W - 1) == j);
      mults |= mult << (4 * q);
    }
    const bool v_boundary = F[i * W + j] != 0;
    const T m = m_map[p], s = s_map[p];
    // pass 1: g_c = d loss / d p_c (unscaled), parked in dx; dot = sum_c p_c g_c
    T dot = T(0);
    for (int64_t c = 0; c < C; ++c) {
      const T pv = softmax_prob(x.template at<T>(b, c, i, j), m, s);
      T g = T(0), d_p, d_mean;
      if (v_boundary) {
        lcr_term_grad(pv, neighbour_mean<T>(x, m_map, s_map, b, c, i, j, neighbors), kind, d_p, d_mean);
        g += d_p;
      }
#pragma unroll
      for (int q = 0; q < 9; ++q) {
        const uint64_t mult = (mults >> (4 * q)) & 15u;
        if (!mult) continue;
        const int64_t a = i + q / 3 - 1, c2 = j + q % 3 - 1;
        const T pu = prob_at<T>(x, m_map, s_map, b, c, a, c2);
        lcr_term_grad(pu, neighbour_mean<T>(x, m_map, s_map, b, c, a, c2, neighbors), kind, d_p, d_mean);
        g += static_cast<T>(mult) * inv_k * d_mean;
      }
      dxp[c * dxd.sC] = g;
      dot += pv * g;
    }
    // pass 2: the softmax Jacobian, scaled by grad / count
    for (int64_t c = 0; c < C; ++c) {
      const T pv = softmax_prob(x.template at<T>(b, c, i, j), m, s);
      dxp[c * dxd.sC] = softmax_backward(pv, dxp[c * dxd.sC] * scale, dot * scale);
    }
  }
}

// NL forward (or count-only) partials: sum of -log(1 - p + 1e-6) and count over p < threshold or NaN (nl_masked).
template <typename S, typename T, bool kTerms>
__global__ void __launch_bounds__(kThreads) nl_terms_kernel(Logits<S> x, T threshold, double* partials) {
  __shared__ double red[32];
  const int64_t H = x.d.H, W = x.d.W, total = x.d.B * H * W, C = x.d.C;
  double sum = 0.0, cnt = 0.0;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    T m, s;
    softmax_stats<T>(x, b, i, j, m, s);
    T local = T(0);
    int64_t n = 0;
    for (int64_t c = 0; c < C; ++c) {
      const T pc = softmax_prob(x.template at<T>(b, c, i, j), m, s);
      if (nl_masked(pc, threshold)) {
        ++n;
        if (kTerms) local += nl_term(pc);
      }
    }
    sum += static_cast<double>(local);
    cnt += static_cast<double>(n);
  }
  sum = block_sum(sum, red);
  if (threadIdx.x == 0) partials[2 * blockIdx.x] = sum;
  cnt = block_sum(cnt, red);
  if (threadIdx.x == 0) partials[2 * blockIdx.x + 1] = cnt;
}

template <typename S, typename T>
__global__ void __launch_bounds__(kThreads)
    nl_grad_kernel(Logits<S> x, T threshold, const T* grad, const double* count, T* dx, Dims4 dxd) {
  const int64_t H = x.d.H, W = x.d.W, total = x.d.B * H * W, C = x.d.C;
  const double cnt = *count;
  const T scale = *grad / static_cast<T>(cnt > 1.0 ? cnt : 1.0);
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    T m, s;
    softmax_stats<T>(x, b, i, j, m, s);
    T dot = T(0);
    for (int64_t c = 0; c < C; ++c) {
      const T pc = softmax_prob(x.template at<T>(b, c, i, j), m, s);
      const T g = nl_masked(pc, threshold) ? nl_term_grad(pc) * scale : T(0);
      dot += pc * g;
    }
    T* dxp = dx + b * dxd.sB + i * dxd.sH + j * dxd.sW;
    for (int64_t c = 0; c < C; ++c) {
      const T pc = softmax_prob(x.template at<T>(b, c, i, j), m, s);
      const T g = nl_masked(pc, threshold) ? nl_term_grad(pc) * scale : T(0);
      dxp[c * dxd.sC] = softmax_backward(pc, g, dot);
    }
  }
}

int partial_blocks(int64_t total) {
  const int64_t g = (total + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(g, kMaxPartials)));
}

}  // namespace

template <typename S, typename T>
cudaError_t lcr_forward(const S* logits, const Dims4& d, const int64_t* labels, LcrKind kind, int neighbors,
                        int64_t ignore_index, T* loss, Workspace& ws, cudaStream_t stream) {
  const int64_t total = d.B * d.H * d.W;
  const int nb = partial_blocks(total);
  double* partials = static_cast<double*>(ws.get(sizeof(double) * 2 * nb));
  const Logits<S> x{logits, d};
  if (total > 0) {
    uint8_t* flags = static_cast<uint8_t*>(ws.get(sizeof(uint8_t) * total));
    T* m_map = static_cast<T*>(ws.get(sizeof(T) * total));
    T* s_map = static_cast<T*>(ws.get(sizeof(T) * total));
    lcr_flags_kernel<<<nb, kThreads, 0, stream>>>(labels, d.B, d.H, d.W, neighbors, ignore_index, flags, partials);
    RIPU_TRY(cudaGetLastError());
    lcr_stats_kernel<S, T><<<grid_for(total, kThreads, 8192), kThreads, 0, stream>>>(x, flags, neighbors, m_map,
                                                                                        s_map);
    RIPU_TRY(cudaGetLastError());
    lcr_terms_kernel<S, T><<<nb, kThreads, 0, stream>>>(x, m_map, s_map, flags, kind, neighbors, partials);
    RIPU_TRY(cudaGetLastError());
  } else {
    RIPU_TRY(cudaMemsetAsync(partials, 0, sizeof(double) * 2 * nb, stream));
  }
  finalize_kernel<T><<<1, kThreads, 0, stream>>>(partials, nb, loss, nullptr);
  return cudaGetLastError();
}

template <typename S, typename T>
cudaError_t lcr_backward(const T* grad, const S* logits, const Dims4& d, const int64_t* labels, LcrKind kind,
                         int neighbors, int64_t ignore_index, T* dx, const Dims4& dxd, Workspace& ws,
                         cudaStream_t stream) {
  const int64_t total = d.B * d.H * d.W;
  if (total == 0 || d.C == 0) return cudaSuccess;
  const int nb = partial_blocks(total);
  double* partials = static_cast<double*>(ws.get(sizeof(double) * 2 * nb));
  double* count = static_cast<double*>(ws.get(sizeof(double)));
  uint8_t* flags = static_cast<uint8_t*>(ws.get(sizeof(uint8_t) * total));
  T* m_map = static_cast<T*>(ws.get(sizeof(T) * total));
  T* s_map = static_cast<T*>(ws.get(sizeof(T) * total));
  const Logits<S> x{logits, d};
  const unsigned grid = grid_for(total, kThreads, 8192);
  RIPU_TRY(cudaMemsetAsync(partials, 0, sizeof(double) * 2 * nb, stream));  // the sums stay 0: counts only
  lcr_flags_kernel<<<nb, kThreads, 0, stream>>>(labels, d.B, d.H, d.W, neighbors, ignore_index, flags, partials);
  RIPU_TRY(cudaGetLastError());
  finalize_kernel<T><<<1, kThreads, 0, stream>>>(partials, nb, nullptr, count);
  RIPU_TRY(cudaGetLastError());
  lcr_stats_kernel<S, T><<<grid, kThreads, 0, stream>>>(x, flags, neighbors, m_map, s_map);
  RIPU_TRY(cudaGetLastError());
  lcr_grad_kernel<S, T><<<grid, kThreads, 0, stream>>>(x, m_map, s_map, flags, kind, neighbors, grad, count, dx,
                                                        dxd);
  return cudaGetLastError();
}

template <typename S, typename T>
cudaError_t nl_forward(const S* logits, const Dims4& d, T threshold, T* loss, Workspace& ws, cudaStream_t stream) {
  const int64_t total = d.B * d.H * d.W;
  const int nb = partial_blocks(total);
  double* partials = static_cast<double*>(ws.get(sizeof(double) * 2 * nb));
  if (total > 0) {
    nl_terms_kernel<S, T, true><<<nb, kThreads, 0, stream>>>(Logits<S>{logits, d}, threshold, partials);
    RIPU_TRY(cudaGetLastError());
  } else {
    RIPU_TRY(cudaMemsetAsync(partials, 0, sizeof(double) * 2 * nb, stream));
  }
  finalize_kernel<T><<<1, kThreads, 0, stream>>>(partials, nb, loss, nullptr);
  return cudaGetLastError();
}

template <typename S, typename T>
cudaError_t nl_backward(const T* grad, const S* logits, const Dims4& d, T threshold, T* dx, const Dims4& dxd,
                        Workspace& ws, cudaStream_t stream) {
  const int64_t total = d.B * d.H * d.W;
  if (total == 0) return cudaSuccess;
  const int nb = partial_blocks(total);
  double* partials = static_cast<double*>(ws.get(sizeof(double) * 2 * nb));
  double* count = static_cast<double*>(ws.get(sizeof(double)));
  const Logits<S> x{logits, d};
  nl_terms_kernel<S, T, false><<<nb, kThreads, 0, stream>>>(x, threshold, partials);
  RIPU_TRY(cudaGetLastError());
  finalize_kernel<T><<<1, kThreads, 0, stream>>>(partials, nb, nullptr, count);
  RIPU_TRY(cudaGetLastError());
  nl_grad_kernel<S, T><<<grid_for(total, kThreads, 8192), kThreads, 0, stream>>>(x, threshold, grad, count, dx, dxd);
  return cudaGetLastError();
}

#define RIPU_INSTANTIATE(S, T)                                                                                     \
  template cudaError_t lcr_forward<S, T>(const S*, const Dims4&, const int64_t*, LcrKind, int, int64_t, T*,         \
                                         Workspace&, cudaStream_t);                                               \
  template cudaError_t lcr_backward<S, T>(const T*, const S*, const Dims4&, const int64_t*, LcrKind, int, int64_t, \
                                          T*, const Dims4&, Workspace&, cudaStream_t);                            \
  template cudaError_t nl_forward<S, T>(const S*, const Dims4&, T, T*, Workspace&, cudaStream_t);                  \
  template cudaError_t nl_backward<S, T>(const T*, const S*, const Dims4&, T, T*, const Dims4&, Workspace&,        \
                                         cudaStream_t);
RIPU_INSTANTIATE(float, float)
RIPU_INSTANTIATE(double, double)
RIPU_INSTANTIATE(half_t, float)
RIPU_INSTANTIATE(bfloat16_t, float)
#undef RIPU_INSTANTIATE

}  // namespace gpu
}  // namespace ripu
