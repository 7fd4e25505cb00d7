// Device-side helpers shared by the CUDA kernels (not by the CPU code): fast reads of the four stored logit types,
// error propagation (RIPU_TRY), launch-geometry helpers and a deterministic block reduction. The per-pixel maths
// stays in csrc/include/ripu/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ripu/common.h"

// Inside a launcher returning cudaError_t: return the first error of a CUDA call (or of the last launch).
#define RIPU_TRY(expr)                \
  do {                                \
    const cudaError_t e_ = (expr);    \
    if (e_ != cudaSuccess) return e_; \
  } while (0)

namespace ripu {
namespace gpu {

// Read-only loads of one stored element as the compute type T (half/bfloat16 through the hardware conversion).
template <typename T>
__device__ __forceinline__ T dload(const float* p) { return static_cast<T>(__ldg(p)); }
template <typename T>
__device__ __forceinline__ T dload(const double* p) { return static_cast<T>(__ldg(p)); }
template <typename T>
__device__ __forceinline__ T dload(const half_t* p) {
  return static_cast<T>(__half2float(__ldg(reinterpret_cast<const __half*>(p))));
}
template <typename T>
__device__ __forceinline__ T dload(const bfloat16_t* p) {
  return static_cast<T>(__bfloat162float(__ldg(reinterpret_cast<const __nv_bfloat16*>(p))));
}

template <typename T>
__device__ __forceinline__ bool dev_isnan(T x) { return x != x; }

inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t g = (n + threads - 1) / threads;
  if (g < 1) g = 1;
  return static_cast<unsigned>(g < cap ? g : cap);
}

// Sum of one double per thread over the block (blockDim.x a multiple of 32, <= 1024); the result is valid in
// thread 0. The order of additions depends only on blockDim, so the reduction is deterministic.
__device__ __forceinline__ double block_sum(double v, double* smem32) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // smem32 may still be read by a previous call
  if (lane == 0) smem32[warp] = v;
  __syncthreads();
  const int nw = (blockDim.x + 31) >> 5;
  v = (warp == 0 && lane < nw) ? smem32[lane] : 0.0;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace gpu
}  // namespace ripu
