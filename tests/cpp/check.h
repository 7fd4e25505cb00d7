// A tiny assertion harness for the C++ unit tests (no external framework): CHECK / CHECK_NEAR record failures
// with file and line; main() returns report().
#pragma once

#include <cmath>
#include <cstdio>

namespace ripu_test {

inline int& failures() {
  static int n = 0;
  return n;
}

inline int& checks() {
  static int n = 0;
  return n;
}

inline int report(const char* name) {
  std::printf("%s: %d checks, %d failures\n", name, checks(), failures());
  return failures() == 0 ? 0 : 1;
}

inline bool near(double a, double b, double atol, double rtol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (a == b) return true;
  return std::fabs(a - b) <= atol + rtol * std::fabs(b);
}

}  // namespace ripu_test

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    ++ripu_test::checks();                                                                  \
    if (!(cond)) {                                                                          \
      ++ripu_test::failures();                                                              \
      std::printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                  \
    }                                                                                       \
  } while (0)

#define CHECK_NEAR(a, b, atol, rtol)                                                        \
  do {                                                                                      \
    ++ripu_test::checks();                                                                  \
    const double ripu_a_ = static_cast<double>(a), ripu_b_ = static_cast<double>(b);        \
    if (!ripu_test::near(ripu_a_, ripu_b_, atol, rtol)) {                                   \
      ++ripu_test::failures();                                                              \
      std::printf("%s:%d: CHECK_NEAR failed: %s = %.12g vs %s = %.12g\n", __FILE__, __LINE__, \
                  #a, ripu_a_, #b, ripu_b_);                                                \
    }                                                                                       \
  } while (0)
