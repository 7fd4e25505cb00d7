// Internal to csrc/cpu: gathering one row of logits (optionally bilinearly resized) into a class-major buffer,
// and the multi-versioning macro of the hot loops.
#pragma once

#include <vector>

#include "cpu/ripu_cpu.h"
#include "ripu/bilinear_math.h"

// The hot per-row loops get an AVX2 clone chosen at load time (GCC function multi-versioning, x86-64 only).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(RIPU_NO_CLONES)
#define RIPU_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RIPU_CPU_CLONES
#endif

namespace ripu {
namespace cpu {

// Geometry of a row gather: source logits, output size, column taps.
template <typename T>
struct RowSource {
  Dims4 d;
  Resize rs;
  int64_t H2, W2;
  T hscale;
  std::vector<BilinearTap<T>> wtaps;  // per output column, when resizing

  RowSource(const Dims4& dims, const Resize& resize) : d(dims), rs(resize) {
    H2 = rs.enabled ? rs.H2 : d.H;
    W2 = rs.enabled ? rs.W2 : d.W;
    hscale = T(0);
    if (rs.enabled) {
      hscale = bilinear_scale<T>(d.H, H2, rs.align_corners);
      const T wscale = bilinear_scale<T>(d.W, W2, rs.align_corners);
      wtaps.resize(static_cast<size_t>(W2));
      for (int64_t j = 0; j < W2; ++j) wtaps[j] = bilinear_tap<T>(j, d.W, W2, wscale, rs.align_corners);
    }
  }
};

// Output row i of image b as buf[c * W2 + j] in the compute type.
template <typename S, typename T>
void load_row(const S* x, const RowSource<T>& src, int64_t b, int64_t i, T* buf) {
  const Dims4& d = src.d;
  const int64_t C = d.C, W2 = src.W2;
  const S* base = x + b * d.sB;
  const bool pixel_outer = C > 1 && d.sC < d.sW;  // channels-last-like: the classes of a pixel are adjacent
  if (!src.rs.enabled) {
    const S* row = base + i * d.sH;
    if (pixel_outer) {
      for (int64_t j = 0; j < W2; ++j) {
        const S* px = row + j * d.sW;
        for (int64_t c = 0; c < C; ++c) buf[c * W2 + j] = load<T>(px + c * d.sC);
      }
    } else {
      for (int64_t c = 0; c < C; ++c) {
        const S* r = row + c * d.sC;
        T* o = buf + c * W2;
        if (d.sW == 1) {
          for (int64_t j = 0; j < W2; ++j) o[j] = load<T>(r + j);
        } else {
          for (int64_t j = 0; j < W2; ++j) o[j] = load<T>(r + j * d.sW);
        }
      }
    }
    return;
  }
  const BilinearTap<T> h = bilinear_tap<T>(i, d.H, src.H2, src.hscale, src.rs.align_corners);
  const S* r0 = base + h.i0 * d.sH;
  const S* r1 = base + h.i1 * d.sH;
  const BilinearTap<T>* wt = src.wtaps.data();
  if (pixel_outer) {
    for (int64_t j = 0; j < W2; ++j) {
      const BilinearTap<T>& w = wt[j];
      const S *p00 = r0 + w.i0 * d.sW, *p01 = r0 + w.i1 * d.sW, *p10 = r1 + w.i0 * d.sW, *p11 = r1 + w.i1 * d.sW;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t o = c * d.sC;
        buf[c * W2 + j] = bilinear_combine(load<T>(p00 + o), load<T>(p01 + o), load<T>(p10 + o), load<T>(p11 + o), h, w);
      }
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      const S* a = r0 + c * d.sC;
      const S* bb = r1 + c * d.sC;
      T* o = buf + c * W2;
      for (int64_t j = 0; j < W2; ++j) {
        const BilinearTap<T>& w = wt[j];
        o[j] = bilinear_combine(load<T>(a + w.i0 * d.sW), load<T>(a + w.i1 * d.sW), load<T>(bb + w.i0 * d.sW),
                                load<T>(bb + w.i1 * d.sW), h, w);
      }
    }
  }
}

}  // namespace cpu
}  // namespace ripu
