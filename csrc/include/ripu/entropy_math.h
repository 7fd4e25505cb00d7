// Per-pixel softmax statistics: max, argmax (lowest index on ties), log-sum-exp and normalised entropy.
//
// Written as small "step" functions so that a CPU launcher can run them class-outer / pixel-inner (vectorised
// over a row) and a CUDA thread can run them over the classes of its own pixel; `pixel_entropy_argmax` is the
// one-pixel composition. Entropy uses e = log(s) - (sum_c z_c exp(z_c)) / s with z = x - max, s = sum exp(z),
// which equals -sum p log p exactly in real arithmetic and is >= 0 in floating point.
#pragma once

#include "ripu/common.h"

namespace ripu {

// Pass 1 over the classes: running max / argmax and a finiteness accumulator.
// Start with m = x_0, arg = 0, nonfinite = x_0 - x_0 and call for c = 1 .. C-1. `nonfinite` stays 0 while every
// logit is finite and becomes NaN otherwise (x - x is NaN for NaN and +-inf).
template <typename T>
RIPU_HOST_DEVICE inline void argmax_step(T x, int32_t c, T& m, int32_t& arg, T& nonfinite) {
  nonfinite += x - x;
  // strict: ties keep the lowest class index; written as a mask blend so compilers vectorise it
  const T mm = m;
  const int32_t take = -static_cast<int32_t>(x > mm);
  m = x > mm ? x : mm;
  arg = (arg & ~take) | (c & take);
}

// Pass 2 over the classes: s += exp(x - m), dot += (x - m) exp(x - m). Start with s = dot = 0.
template <typename T>
RIPU_HOST_DEVICE inline void expsum_step(T x, T m, T& s, T& dot) {
  const T z = x - m;
  const T e = rexp_fast(z);
  s += e;
  dot += z * e;
}

// Normalised entropy from the two passes; NaN when any logit was non-finite, 0 when C == 1.
// inv_log_c = 1 / log(C) (unused when C == 1).
template <typename T>
RIPU_HOST_DEVICE inline T entropy_finish(T s, T dot, T nonfinite, int32_t C, T inv_log_c) {
  if (!(nonfinite == T(0))) return quiet_nan<T>();
  if (C <= 1) return T(0);
  return (rlog_fast(s) - dot / s) * inv_log_c;
}

template <typename T>
RIPU_HOST_DEVICE inline T inverse_log_classes(int32_t C) {
  return C > 1 ? T(1) / rlog(static_cast<T>(C)) : T(0);
}

// One pixel: `x(c)` returns logit c in the compute type T. Returns the entropy and stores the argmax label.
template <typename T, typename Load>
RIPU_HOST_DEVICE inline T pixel_entropy_argmax(const Load& x, int32_t C, T inv_log_c, int32_t* argmax) {
  T m = x(0);
  int32_t arg = 0;
  T nonfinite = m - m;
  for (int32_t c = 1; c < C; ++c) argmax_step(x(c), c, m, arg, nonfinite);
  T s = T(0), dot = T(0);
  for (int32_t c = 0; c < C; ++c) expsum_step(x(c), m, s, dot);
  if (argmax) *argmax = arg;
  return entropy_finish(s, dot, nonfinite, C, inv_log_c);
}

}  // namespace ripu
