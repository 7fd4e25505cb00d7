// Shared definitions for the ripu kernels: host/device qualifier, 16-bit float storage types, math wrappers.
// Torch-free and container-free: included by the CPU launchers (csrc/cpu), the CUDA kernels (csrc/cuda)
// and the C++ unit tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define RIPU_HOST_DEVICE __host__ __device__
#else
#define RIPU_HOST_DEVICE
#endif

namespace ripu {

// A (B, C, H, W) tensor viewed through element strides (NCHW, channels-last or any strided slice).
struct Dims4 {
  int64_t B, C, H, W;
  int64_t sB, sC, sH, sW;
};

// Optional fused bilinear resize to (H2, W2); when !enabled the output size is (H, W).
struct Resize {
  bool enabled;
  int64_t H2, W2;
  bool align_corners;
};

// IEEE binary16 storage (layout-compatible with at::Half / __half): read as float.
struct half_t {
  uint16_t bits;
};

// bfloat16 storage (layout-compatible with at::BFloat16 / __nv_bfloat16): read as float.
struct bfloat16_t {
  uint16_t bits;
};

RIPU_HOST_DEVICE inline float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

RIPU_HOST_DEVICE inline float to_float(bfloat16_t v) { return bits_to_float(static_cast<uint32_t>(v.bits) << 16); }

RIPU_HOST_DEVICE inline float to_float(half_t v) {
  const uint32_t h = v.bits;
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_to_float(sign);  // +-0
  // subnormal: normalise the mantissa
  uint32_t e = 113;
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  return bits_to_float(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

// widen(v): a stored element as its natural compute type (float for 16-bit storage).
RIPU_HOST_DEVICE inline float widen(float v) { return v; }
RIPU_HOST_DEVICE inline double widen(double v) { return v; }
RIPU_HOST_DEVICE inline float widen(half_t v) { return to_float(v); }
RIPU_HOST_DEVICE inline float widen(bfloat16_t v) { return to_float(v); }

// load<T>(p): read one stored element (float, double, half_t, bfloat16_t) as the compute type T.
template <typename T, typename S>
RIPU_HOST_DEVICE inline T load(const S* p) {
  return static_cast<T>(widen(*p));
}

// Overloaded maths so templates pick the float or double routine on host and device alike.
RIPU_HOST_DEVICE inline float rexp(float x) { return expf(x); }
RIPU_HOST_DEVICE inline double rexp(double x) { return exp(x); }
RIPU_HOST_DEVICE inline float rlog(float x) { return logf(x); }
RIPU_HOST_DEVICE inline double rlog(double x) { return log(x); }
RIPU_HOST_DEVICE inline float rfma(float a, float b, float c) { return fmaf(a, b, c); }
RIPU_HOST_DEVICE inline double rfma(double a, double b, double c) { return fma(a, b, c); }
RIPU_HOST_DEVICE inline float rabs(float x) { return fabsf(x); }
RIPU_HOST_DEVICE inline double rabs(double x) { return fabs(x); }

// exp for the hot loops. Host float: a branch-free Cody-Waite reduction + degree-6 polynomial (max relative error
// ~2 ulp; inputs below -87 give 0 instead of a denormal) that compilers vectorise; elsewhere the libm routine.
RIPU_HOST_DEVICE inline double rexp_fast(double x) { return exp(x); }
RIPU_HOST_DEVICE inline float rexp_fast(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  const float x_in = x;
  x = x < 88.0f ? x : 88.0f;
  x = x > -87.0f ? x : -87.0f;
  const int32_t biased = static_cast<int32_t>(x * 1.44269504088896341f + 127.5f);  // floor(x log2 e + 0.5) + 127 > 0
  const float n = static_cast<float>(biased - 127);
  float r = x - n * 0.693359375f;  // ln2 split in two (Cody-Waite)
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = biased << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x_in >= -87.0f ? p * scale : 0.0f;
#endif
}

// log for the hot loops, positive normal inputs. Host float: exponent split + Cephes-style polynomial on
// [sqrt(1/2), sqrt(2)) (about 1 ulp), branch-free so compilers vectorise it; elsewhere the libm routine.
RIPU_HOST_DEVICE inline double rlog_fast(double x) { return log(x); }
RIPU_HOST_DEVICE inline float rlog_fast(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  int32_t e = ((bits >> 23) & 0xff) - 127;
  const int32_t mbits = (bits & 0x007fffff) | 0x3f800000;  // mantissa in [1, 2)
  float m;
  std::memcpy(&m, &mbits, sizeof(m));
  const bool big = m > 1.41421356237f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float f = m - 1.0f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  const float ef = static_cast<float>(e);
  y += -2.12194440e-4f * ef;
  y += -0.5f * z;
  return f + y + 0.693359375f * ef;
#endif
}

template <typename T>
RIPU_HOST_DEVICE inline T quiet_nan() {
  return static_cast<T>(NAN);
}

// True for finite x; false for NaN and +-inf (x - x is NaN exactly then). No -ffast-math here.
template <typename T>
RIPU_HOST_DEVICE inline bool is_finite(T x) { return (x - x) == T(0); }

}  // namespace ripu
