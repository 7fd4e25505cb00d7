// Clipped square windows and region impurity from class counts.
//
// Window W_k(i) along one axis of length n: [max(i - k, 0), min(i + k + 1, n)). N = product of the two lengths.
// Impurity P = -sum_c (n_c/N) log(n_c/N) / log C is evaluated as (N log N - sum_c n_c log n_c) / (N log C), with
// the n log n terms in double, so a window holding a single class gives exactly 0.
#pragma once

#include "ripu/common.h"

namespace ripu {

RIPU_HOST_DEVICE inline int64_t window_lo(int64_t i, int64_t k) { return i - k > 0 ? i - k : 0; }
RIPU_HOST_DEVICE inline int64_t window_hi(int64_t i, int64_t k, int64_t n) { return i + k + 1 < n ? i + k + 1 : n; }
RIPU_HOST_DEVICE inline int64_t window_len(int64_t i, int64_t k, int64_t n) { return window_hi(i, k, n) - window_lo(i, k); }

// n log n (0 for n == 0), in double.
RIPU_HOST_DEVICE inline double xlogx_count(int64_t n) {
  return n > 0 ? static_cast<double>(n) * log(static_cast<double>(n)) : 0.0;
}

// Impurity from S = sum_c n_c log n_c over a window of N pixels; inv_log_c = 1 / log C (0 when C == 1 gives 0).
RIPU_HOST_DEVICE inline double impurity_from_xlogx_sum(double sum_xlogx, double n_xlogx, int64_t N, double inv_log_c) {
  if (N <= 0) return 0.0;
  const double p = (n_xlogx - sum_xlogx) / static_cast<double>(N) * inv_log_c;
  return p > 0.0 ? p : 0.0;
}

// The same with 1/N precomputed (a multiply instead of a divide in the hot loop).
RIPU_HOST_DEVICE inline double impurity_from_xlogx_sum_inv(double sum_xlogx, double n_xlogx, double inv_n,
                                                           double inv_log_c) {
  const double p = (n_xlogx - sum_xlogx) * inv_n * inv_log_c;
  return p > 0.0 ? p : 0.0;
}

// Impurity straight from C class counts (for callers that hold the counts).
RIPU_HOST_DEVICE inline double impurity_from_counts(const int32_t* counts, int32_t C, int64_t N, double inv_log_c) {
  double s = 0.0;
  for (int32_t c = 0; c < C; ++c) s += xlogx_count(counts[c]);
  return impurity_from_xlogx_sum(s, xlogx_count(N), N, inv_log_c);
}

}  // namespace ripu
