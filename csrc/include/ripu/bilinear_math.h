// Bilinear resampling taps, bit-for-bit as PyTorch's upsample_bilinear2d (CPU) computes them for
// F.interpolate(x, size=..., mode="bilinear", align_corners=...) with no scale factor:
//   scale  = align_corners ? (in - 1) / (out - 1) (0 when out == 1) : in / out
//   source = align_corners ? scale * dst : max(fma(scale, dst + 0.5, -0.5), 0)
// (PyTorch's kernels are compiled with FMA contraction, which fuses that multiply-add: a fused multiply-add is
// what reproduces its taps bit for bit; a separate multiply and subtract is off by an ulp of the source index)
//   i0 = min(floor(source), in - 1), lambda1 = clamp(source - i0, 0, 1), i1 = i0 + (i0 < in - 1), lambda0 = 1 - lambda1
// and out == in copies (lambda0 = 1, lambda1 = 0). The four taps are always combined as
//   h.l0 * (w.l0 * a + w.l1 * b) + h.l1 * (w.l0 * c + w.l1 * d)
// so that NaN and inf propagate as in F.interpolate (a zero weight times inf is NaN there too).
#pragma once

#include "ripu/common.h"

namespace ripu {

template <typename T>
struct BilinearTap {
  int64_t i0;  // first source index
  int64_t i1;  // second source index (== i0 at the last row/column)
  T l0;        // weight of i0
  T l1;        // weight of i1
};

template <typename T>
RIPU_HOST_DEVICE inline T bilinear_scale(int64_t in, int64_t out, bool align_corners) {
  if (align_corners) return out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0);
  return static_cast<T>(in) / static_cast<T>(out);
}

template <typename T>
RIPU_HOST_DEVICE inline BilinearTap<T> bilinear_tap(int64_t dst, int64_t in, int64_t out, T scale, bool align_corners) {
  BilinearTap<T> t;
  if (in == out) {
    t.i0 = dst;
    t.i1 = dst;
    t.l0 = T(1);
    t.l1 = T(0);
    return t;
  }
  T src;
  if (align_corners) {
    src = scale * static_cast<T>(dst);
  } else {
    src = rfma(scale, static_cast<T>(dst) + T(0.5), T(-0.5));
    if (src < T(0)) src = T(0);
  }
  // PyTorch floors through floorf even for double.
  int64_t i0 = static_cast<int64_t>(floorf(static_cast<float>(src)));
  if (i0 > in - 1) i0 = in - 1;
  T l1 = src - static_cast<T>(i0);
  if (l1 < T(0)) l1 = T(0);
  if (l1 > T(1)) l1 = T(1);
  t.i0 = i0;
  t.i1 = i0 + (i0 < in - 1 ? 1 : 0);
  t.l1 = l1;
  t.l0 = T(1) - l1;
  return t;
}

template <typename T>
RIPU_HOST_DEVICE inline T bilinear_combine(T a, T b, T c, T d, const BilinearTap<T>& h, const BilinearTap<T>& w) {
  // a = (h.i0, w.i0), b = (h.i0, w.i1), c = (h.i1, w.i0), d = (h.i1, w.i1)
  return h.l0 * (w.l0 * a + w.l1 * b) + h.l1 * (w.l0 * c + w.l1 * d);
}

}  // namespace ripu
