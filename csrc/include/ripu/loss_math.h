// Per-pixel pieces of the two losses (docs/ops.md, the two losses), forward and backward.
//
// LCR: d = sum_c g(p_c, mean_c) with g = |p - mean| (l1) or p * log(p / (mean + 1e-6) + 1e-6) (kl); the kernels
// need g and its two partial derivatives. NL: term = -log(1 - p + 1e-6) where p < threshold. The softmax
// Jacobian-vector product is dx_c = p_c (g_c - sum_c' p_c' g_c').
#pragma once

#include "ripu/common.h"

namespace ripu {

enum class LcrKind : int32_t { L1 = 0, KL = 1 };

template <typename T>
RIPU_HOST_DEVICE inline T lcr_term(T p, T mean, LcrKind kind) {
  if (kind == LcrKind::L1) return rabs(p - mean);
  return p * rlog(p / (mean + T(1e-6)) + T(1e-6));
}

// Partial derivatives of g(p, mean): d_p = dg/dp, d_mean = dg/dmean. d|u|/du at 0 is 0.
template <typename T>
RIPU_HOST_DEVICE inline void lcr_term_grad(T p, T mean, LcrKind kind, T& d_p, T& d_mean) {
  if (kind == LcrKind::L1) {
    const T u = p - mean;
    const T s = u > T(0) ? T(1) : (u < T(0) ? T(-1) : T(0));
    d_p = s;
    d_mean = -s;
    return;
  }
  const T den = mean + T(1e-6);
  const T r = p / den;
  const T inner = r + T(1e-6);
  d_p = rlog(inner) + p / (inner * den);
  d_mean = -(p * r) / (inner * den);
}

// Boundary test: the integer Laplacian of the label map (zero padding) is non-zero and the label is kept.
RIPU_HOST_DEVICE inline bool lcr_is_boundary(int64_t laplacian, int64_t label, int64_t ignore_index) {
  return laplacian != 0 && label != ignore_index;
}

// NL mask: p < threshold, and NaN (a pixel with a non-finite logit has NaN probabilities): its NaN terms make the
// loss NaN, as cross-entropy and LCR are on such logits (docs/ops.md, "negative_learning_loss").
template <typename T>
RIPU_HOST_DEVICE inline bool nl_masked(T p, T threshold) { return !(p >= threshold); }

// For p in [0, 1] the argument lies in [1e-6, 1 + 1e-6], inside the domain of rlog_fast (positive normal); a NaN p
// stays NaN (rlog_fast itself is only defined on positive normal numbers).
template <typename T>
RIPU_HOST_DEVICE inline T nl_term(T p) {
  const T a = T(1) - p + T(1e-6);
  return a != a ? a : -rlog_fast(a);
}

// d(-log(1 - p + 1e-6)) / dp
template <typename T>
RIPU_HOST_DEVICE inline T nl_term_grad(T p) { return T(1) / (T(1) - p + T(1e-6)); }

// softmax probability of one class from the pixel's max m and s = sum_c exp(x_c - m), as torch.softmax
template <typename T>
RIPU_HOST_DEVICE inline T softmax_prob(T x, T m, T s) { return rexp(x - m) / s; }

// softmax backward: dx_c = p_c * (g_c - dot) with dot = sum_c p_c g_c
template <typename T>
RIPU_HOST_DEVICE inline T softmax_backward(T p, T g, T dot) { return p * (g - dot); }

}  // namespace ripu
