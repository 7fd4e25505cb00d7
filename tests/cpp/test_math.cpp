// Unit tests of the per-pixel maths headers (csrc/include/ripu/*_math.h, common.h), torch-free.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "ripu/bilinear_math.h"
#include "ripu/common.h"
#include "ripu/entropy_math.h"
#include "ripu/loss_math.h"
#include "ripu/window_math.h"

using namespace ripu;

static void test_storage_types() {
  CHECK(to_float(half_t{0x3c00}) == 1.0f);
  CHECK(to_float(half_t{0xc000}) == -2.0f);
  CHECK(to_float(half_t{0x7bff}) == 65504.0f);
  CHECK(to_float(half_t{0x0001}) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(to_float(half_t{0x03ff}) == 1023.0f * std::ldexp(1.0f, -24));
  CHECK(to_float(half_t{0x8000}) == 0.0f && std::signbit(to_float(half_t{0x8000})));
  CHECK(std::isinf(to_float(half_t{0x7c00})) && to_float(half_t{0x7c00}) > 0);
  CHECK(std::isinf(to_float(half_t{0xfc00})) && to_float(half_t{0xfc00}) < 0);
  CHECK(std::isnan(to_float(half_t{0x7e00})));
  CHECK(to_float(bfloat16_t{0x3f80}) == 1.0f);
  CHECK(to_float(bfloat16_t{0xc040}) == -3.0f);
  CHECK(std::isnan(to_float(bfloat16_t{0x7fc0})));
  const half_t h{0x3555};
  CHECK(load<float>(&h) == to_float(h));
  const double d = 0.1;
  CHECK(load<double>(&d) == 0.1);
}

static void test_exp() {
  double worst = 0.0;
  for (int i = 0; i <= 200000; ++i) {  // [-87, 1]
    const float x = -87.0f + 88.0f * static_cast<float>(i) / 200000.0f;
    const double ref = std::exp(static_cast<double>(x));
    worst = std::fmax(worst, std::fabs(rexp_fast(x) - ref) / ref);
  }
  CHECK(worst < 4e-7);
  CHECK(rexp_fast(0.0f) == 1.0f);
  CHECK(rexp_fast(-1000.0f) == 0.0f && rexp_fast(-88.0f) == 0.0f);
  CHECK(rexp_fast(-0.5) == std::exp(-0.5));  // double: libm
  worst = 0.0;
  for (int i = 0; i <= 200000; ++i) {  // [1e-3, 1e4] geometrically
    const float x = static_cast<float>(std::pow(10.0, -3.0 + 7.0 * i / 200000.0));
    const double ref = std::log(static_cast<double>(x));
    worst = std::fmax(worst, std::fabs(rlog_fast(x) - ref) / std::fmax(std::fabs(ref), 1e-3));
  }
  CHECK(worst < 4e-7);
  CHECK(rlog_fast(1.0f) == 0.0f);
}

template <typename T>
static double naive_entropy(const std::vector<T>& x, int* argmax) {
  const int C = static_cast<int>(x.size());
  double m = x[0];
  int arg = 0;
  for (int c = 1; c < C; ++c)
    if (x[c] > m) {
      m = x[c];
      arg = c;
    }
  *argmax = arg;
  if (C == 1) return 0.0;
  double s = 0;
  for (int c = 0; c < C; ++c) s += std::exp(static_cast<double>(x[c]) - m);
  double e = 0;
  for (int c = 0; c < C; ++c) {
    const double p = std::exp(static_cast<double>(x[c]) - m) / s;
    if (p > 0) e -= p * std::log(p);
  }
  return e / std::log(static_cast<double>(C));
}

template <typename T>
static void test_entropy() {
  std::mt19937 gen(7);
  std::normal_distribution<double> nd(0.0, 4.0);
  for (int C : {1, 2, 3, 19, 40}) {
    for (int rep = 0; rep < 50; ++rep) {
      std::vector<T> x(C);
      for (auto& v : x) v = static_cast<T>(nd(gen));
      int arg_ref = -1, arg = -1;
      const double ref = naive_entropy(x, &arg_ref);
      const T e = pixel_entropy_argmax<T>([&](int32_t c) { return x[c]; }, C, inverse_log_classes<T>(C), &arg);
      CHECK_NEAR(e, ref, sizeof(T) == 4 ? 2e-6 : 1e-12, 0.0);
      CHECK(arg == arg_ref);
      CHECK(e >= T(0));
    }
  }
  // uniform logits: entropy 1, ties to class 0
  std::vector<T> u(5, T(2.5));
  int arg = -1;
  T e = pixel_entropy_argmax<T>([&](int32_t c) { return u[c]; }, 5, inverse_log_classes<T>(5), &arg);
  CHECK_NEAR(e, 1.0, 1e-6, 0.0);
  CHECK(arg == 0);
  // tie between classes 1 and 3 above the rest: lowest index
  std::vector<T> t = {T(0), T(3), T(1), T(3)};
  pixel_entropy_argmax<T>([&](int32_t c) { return t[c]; }, 4, inverse_log_classes<T>(4), &arg);
  CHECK(arg == 1);
  // extreme confidence: exactly zero entropy contributions from underflowed classes
  std::vector<T> conf = {T(0), T(-1000), T(-2000)};
  e = pixel_entropy_argmax<T>([&](int32_t c) { return conf[c]; }, 3, inverse_log_classes<T>(3), &arg);
  CHECK(e == T(0));
  // non-finite logits -> NaN
  for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                -std::numeric_limits<T>::infinity()}) {
    std::vector<T> y = {T(0.5), bad, T(-1)};
    e = pixel_entropy_argmax<T>([&](int32_t c) { return y[c]; }, 3, inverse_log_classes<T>(3), &arg);
    CHECK(std::isnan(e));
    CHECK(arg >= 0 && arg < 3);
  }
  // one class: entropy 0 (NaN when not finite)
  T one = T(7);
  CHECK(pixel_entropy_argmax<T>([&](int32_t) { return one; }, 1, inverse_log_classes<T>(1), &arg) == T(0));
}

static void test_bilinear() {
  // align_corners=False, 4 -> 8: src = 0.5 (dst + 0.5) - 0.5, clamped at 0
  const float s = bilinear_scale<float>(4, 8, false);
  CHECK(s == 0.5f);
  BilinearTap<float> t = bilinear_tap<float>(0, 4, 8, s, false);
  CHECK(t.i0 == 0 && t.i1 == 1 && t.l0 == 1.0f && t.l1 == 0.0f);
  t = bilinear_tap<float>(1, 4, 8, s, false);
  CHECK(t.i0 == 0 && t.i1 == 1 && t.l1 == 0.25f && t.l0 == 0.75f);
  t = bilinear_tap<float>(7, 4, 8, s, false);  // src 3.25: last index, both taps on it
  CHECK(t.i0 == 3 && t.i1 == 3 && t.l1 == 0.25f);
  // align_corners=True, 3 -> 5: src = dst / 2
  const float sc = bilinear_scale<float>(3, 5, true);
  CHECK(sc == 0.5f);
  t = bilinear_tap<float>(3, 3, 5, sc, true);
  CHECK(t.i0 == 1 && t.i1 == 2 && t.l0 == 0.5f && t.l1 == 0.5f);
  t = bilinear_tap<float>(4, 3, 5, sc, true);
  CHECK(t.i0 == 2 && t.i1 == 2 && t.l1 == 0.0f);
  // one output: scale 0 -> source 0
  CHECK(bilinear_scale<float>(9, 1, true) == 0.0f);
  t = bilinear_tap<float>(0, 9, 1, 0.0f, true);
  CHECK(t.i0 == 0 && t.l0 == 1.0f);
  // same size: plain copy
  const BilinearTap<double> td = bilinear_tap<double>(5, 7, 7, bilinear_scale<double>(7, 7, false), false);
  CHECK(td.i0 == 5 && td.i1 == 5 && td.l0 == 1.0 && td.l1 == 0.0);
  // combine: weights, and NaN/inf propagate through zero weights as in F.interpolate
  BilinearTap<float> h{0, 1, 0.75f, 0.25f}, w{0, 1, 0.5f, 0.5f};
  CHECK(bilinear_combine(1.0f, 3.0f, 5.0f, 7.0f, h, w) == 0.75f * 2.0f + 0.25f * 6.0f);
  BilinearTap<float> h0{0, 1, 1.0f, 0.0f};
  CHECK(std::isnan(bilinear_combine(1.0f, 1.0f, NAN, 1.0f, h0, w)));
  CHECK(std::isnan(bilinear_combine(1.0f, 1.0f, INFINITY, 1.0f, h0, w)));
}

static void test_window() {
  CHECK(window_lo(0, 2) == 0 && window_hi(0, 2, 10) == 3 && window_len(0, 2, 10) == 3);
  CHECK(window_lo(5, 2) == 3 && window_hi(5, 2, 10) == 8 && window_len(5, 2, 10) == 5);
  CHECK(window_hi(9, 2, 10) == 10 && window_len(9, 2, 10) == 3);
  CHECK(window_len(3, 100, 7) == 7);
  CHECK(window_len(4, 0, 7) == 1);
  CHECK(xlogx_count(0) == 0.0 && xlogx_count(1) == 0.0);
  const double il2 = 1.0 / std::log(2.0), il3 = 1.0 / std::log(3.0);
  int32_t half_half[2] = {2, 2};
  CHECK_NEAR(impurity_from_counts(half_half, 2, 4, il2), 1.0, 1e-14, 0.0);
  int32_t pure[3] = {0, 9, 0};
  CHECK(impurity_from_counts(pure, 3, 9, il3) == 0.0);
  int32_t thirds[3] = {1, 1, 1};
  CHECK_NEAR(impurity_from_counts(thirds, 3, 3, il3), 1.0, 1e-14, 0.0);
  int32_t mixed[3] = {5, 3, 1};
  double ref = 0;
  for (int c = 0; c < 3; ++c) ref -= mixed[c] / 9.0 * std::log(mixed[c] / 9.0);
  CHECK_NEAR(impurity_from_counts(mixed, 3, 9, il3), ref * il3, 1e-14, 0.0);
}

static void test_loss_pieces() {
  const double h = 1e-6;
  for (LcrKind kind : {LcrKind::L1, LcrKind::KL}) {
    for (double p : {0.05, 0.3, 0.8}) {
      for (double mean : {0.1, 0.45, 0.7}) {
        double dp, dm;
        lcr_term_grad(p, mean, kind, dp, dm);
        const double fd_p = (lcr_term(p + h, mean, kind) - lcr_term(p - h, mean, kind)) / (2 * h);
        const double fd_m = (lcr_term(p, mean + h, kind) - lcr_term(p, mean - h, kind)) / (2 * h);
        CHECK_NEAR(dp, fd_p, 1e-6, 1e-6);
        CHECK_NEAR(dm, fd_m, 1e-6, 1e-6);
      }
    }
  }
  double dp, dm;
  lcr_term_grad(0.25, 0.25, LcrKind::L1, dp, dm);
  CHECK(dp == 0.0 && dm == 0.0);  // d|u|/du at 0 is 0
  CHECK_NEAR(lcr_term(0.2, 0.5, LcrKind::KL), 0.2 * std::log(0.2 / (0.5 + 1e-6) + 1e-6), 1e-15, 0.0);
  for (double p : {0.0, 0.01, 0.04}) {
    const double fd = (nl_term(p + h) - nl_term(p - h)) / (2 * h);
    CHECK_NEAR(nl_term_grad(p), fd, 1e-6, 1e-6);
  }
  CHECK(nl_masked(0.01f, 0.05f) && !nl_masked(0.05f, 0.05f));
  // A NaN probability (non-finite logits) is masked and its term is NaN: the loss is NaN, as cross-entropy's.
  CHECK(nl_masked(std::numeric_limits<float>::quiet_NaN(), 0.05f));
  CHECK(std::isnan(nl_term(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(nl_term(std::numeric_limits<double>::quiet_NaN())));
  CHECK(std::isnan(nl_term_grad(std::numeric_limits<float>::quiet_NaN())));
  CHECK(lcr_is_boundary(3, 1, 255) && !lcr_is_boundary(0, 1, 255) && !lcr_is_boundary(3, 255, 255));
  CHECK_NEAR(softmax_prob(1.0, 2.0, 1.5), std::exp(-1.0) / 1.5, 1e-15, 0.0);
  CHECK(softmax_backward(0.5, 2.0, 1.0) == 0.5);
}

int main() {
  test_storage_types();
  test_exp();
  test_entropy<float>();
  test_entropy<double>();
  test_bilinear();
  test_window();
  test_loss_pieces();
  return ripu_test::report("test_math");
}
