// LCR and NL losses on the GPU, forward and backward (see csrc/cuda/README.md).
//
// Forward: a per-pixel kernel computes the pixel's terms and reduces (sum, count) per block into a fixed number of
// partials; one single-block kernel adds the partials in a fixed order (deterministic) and writes the loss.
// Backward: the same counting pass gives the normaliser on the device (no host read), then per-pixel kernels apply
// the chain rule and the softmax Jacobian. LCR's gradient w.r.t. p at pixel v gathers, besides v's own dg/dp, the
// dg/dmean of every boundary pixel u whose (replicate-padded) neighbourhood contains v, once per offset that lands
// on v; those dg/dmean / K values are parked in a (B, C, H, W) scratch map.
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

// Per-pixel softmax statistics map, (B, H, W) each.
template <typename S, typename T>
__global__ void stats_kernel(Logits<S> x, T* m_map, T* s_map) {
  const int64_t H = x.d.H, W = x.d.W, total = x.d.B * H * W;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    T m, s;
    softmax_stats<T>(x, b, i, j, m, s);
    m_map[p] = m;
    s_map[p] = s;
  }
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

// Forward (or count-only) pass: partials[2 * block] = sum of d over boundary pixels, [2 * block + 1] = count.
template <typename S, typename T, bool kTerms>
__global__ void __launch_bounds__(kThreads)
    lcr_terms_kernel(Logits<S> x, const T* m_map, const T* s_map, const int64_t* labels, LcrKind kind, int neighbors,
                     int64_t ignore_index, double* partials) {
  __shared__ double red[32];
  const int64_t H = x.d.H, W = x.d.W, total = x.d.B * H * W, C = x.d.C;
  double sum = 0.0, cnt = 0.0;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    if (!lcr_boundary(labels, b, i, j, H, W, neighbors, ignore_index)) continue;
    cnt += 1.0;
    if (kTerms) {
      T d = T(0);
      for (int64_t c = 0; c < C; ++c) {
        const T pc = prob_at<T>(x, m_map, s_map, b, c, i, j);
        const T mean = neighbour_mean<T>(x, m_map, s_map, b, c, i, j, neighbors);
        d += lcr_term(pc, mean, kind);
      }
      sum += static_cast<double>(d);
    }
  }
  sum = block_sum(sum, red);
  if (threadIdx.x == 0) partials[2 * blockIdx.x] = sum;
  cnt = block_sum(cnt, red);
  if (threadIdx.x == 0) partials[2 * blockIdx.x + 1] = cnt;
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

// Backward step 1: dx = dg/dp at the pixel (0 off the boundary) and gm = dg/dmean / K, both unscaled.
template <typename S, typename T>
__global__ void __launch_bounds__(kThreads)
    lcr_grad_terms_kernel(Logits<S> x, const T* m_map, const T* s_map, const int64_t* labels, LcrKind kind,
                          int neighbors, int64_t ignore_index, T* dx, Dims4 dxd, T* gm) {
  const int64_t H = x.d.H, W = x.d.W, total = x.d.B * H * W, C = x.d.C;
  const T inv_k = T(1) / static_cast<T>(offset_count(neighbors));
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    const bool bnd = lcr_boundary(labels, b, i, j, H, W, neighbors, ignore_index);
    T* dxp = dx + b * dxd.sB + i * dxd.sH + j * dxd.sW;
    T* gmp = gm + b * C * H * W + i * W + j;
    for (int64_t c = 0; c < C; ++c) {
      T d_p = T(0), d_mean = T(0);
      if (bnd) {
        const T pc = prob_at<T>(x, m_map, s_map, b, c, i, j);
        const T mean = neighbour_mean<T>(x, m_map, s_map, b, c, i, j, neighbors);
        lcr_term_grad(pc, mean, kind, d_p, d_mean);
      }
      dxp[c * dxd.sC] = d_p;
      gmp[c * H * W] = d_mean * inv_k;
    }
  }
}

// Backward step 2: gather the neighbours' dg/dmean, scale by grad / max(count, 1), apply the softmax Jacobian.
template <typename S, typename T>
__global__ void __launch_bounds__(kThreads)
    lcr_grad_final_kernel(Logits<S> x, const T* m_map, const T* s_map, int neighbors, const T* gm, const T* grad,
                          const double* count, T* dx, Dims4 dxd) {
  const int64_t H = x.d.H, W = x.d.W, total = x.d.B * H * W, C = x.d.C;
  const double cnt = *count;
  const T scale = *grad / static_cast<T>(cnt > 1.0 ? cnt : 1.0);
  const int no = offset_count(neighbors);
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = p / (H * W), i = (p / W) % H, j = p % W;
    // pixels u (within one step of v) whose neighbourhood contains v, and how many offsets land on v
    int64_t uoff[9];
    T umul[9];
    int nu = 0;
    for (int di = -1; di <= 1; ++di) {
      for (int dj = -1; dj <= 1; ++dj) {
        const int64_t ui = i + di, uj = j + dj;
        if (ui < 0 || ui >= H || uj < 0 || uj >= W) continue;
        int mult = 0;
        for (int o = 0; o < no; ++o) {
          mult += (clamp64(ui + off_i(neighbors, o), 0, H - 1) == i && clamp64(uj + off_j(neighbors, o), 0, W - 1) == j);
        }
        if (mult) {
          uoff[nu] = ui * W + uj;
          umul[nu] = static_cast<T>(mult);
          ++nu;
        }
      }
    }
    T* dxp = dx + b * dxd.sB + i * dxd.sH + j * dxd.sW;
    const T* gmb = gm + b * C * H * W;
    const T m = m_map[p], s = s_map[p];
    T dot = T(0);
    for (int64_t c = 0; c < C; ++c) {
      T g = dxp[c * dxd.sC];
      const T* gmc = gmb + c * H * W;
      for (int q = 0; q < nu; ++q) g += umul[q] * gmc[uoff[q]];
      g *= scale;
      dxp[c * dxd.sC] = g;
      dot += softmax_prob(x.template at<T>(b, c, i, j), m, s) * g;
    }
    for (int64_t c = 0; c < C; ++c) {
      const T pc = softmax_prob(x.template at<T>(b, c, i, j), m, s);
      dxp[c * dxd.sC] = softmax_backward(pc, dxp[c * dxd.sC], dot);
    }
  }
}

// NL forward (or count-only) partials: sum of -log(1 - p + 1e-6) and count over p < threshold.
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
    T* m_map = static_cast<T*>(ws.get(sizeof(T) * total));
    T* s_map = static_cast<T*>(ws.get(sizeof(T) * total));
    stats_kernel<S, T><<<grid_for(total, kThreads, 8192), kThreads, 0, stream>>>(x, m_map, s_map);
    RIPU_TRY(cudaGetLastError());
    lcr_terms_kernel<S, T, true><<<nb, kThreads, 0, stream>>>(x, m_map, s_map, labels, kind, neighbors, ignore_index,
                                                              partials);
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
  T* m_map = static_cast<T*>(ws.get(sizeof(T) * total));
  T* s_map = static_cast<T*>(ws.get(sizeof(T) * total));
  T* gm = static_cast<T*>(ws.get(sizeof(T) * total * d.C));
  const Logits<S> x{logits, d};
  const unsigned grid = grid_for(total, kThreads, 8192);
  stats_kernel<S, T><<<grid, kThreads, 0, stream>>>(x, m_map, s_map);
  RIPU_TRY(cudaGetLastError());
  lcr_terms_kernel<S, T, false><<<nb, kThreads, 0, stream>>>(x, m_map, s_map, labels, kind, neighbors, ignore_index,
                                                             partials);
  RIPU_TRY(cudaGetLastError());
  finalize_kernel<T><<<1, kThreads, 0, stream>>>(partials, nb, nullptr, count);
  RIPU_TRY(cudaGetLastError());
  lcr_grad_terms_kernel<S, T><<<grid, kThreads, 0, stream>>>(x, m_map, s_map, labels, kind, neighbors, ignore_index,
                                                             dx, dxd, gm);
  RIPU_TRY(cudaGetLastError());
  lcr_grad_final_kernel<S, T><<<grid, kThreads, 0, stream>>>(x, m_map, s_map, neighbors, gm, grad, count, dx, dxd);
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
