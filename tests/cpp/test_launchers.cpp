// Unit tests of the torch-free CPU launchers (csrc/cpu) against naive loops written straight from docs/ops.md.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "cpu/ripu_cpu.h"

using namespace ripu;
using ripu::cpu::Dims4;
using ripu::cpu::Resize;

namespace {

std::mt19937 gen(2022);

struct Logits {
  std::vector<double> x;  // values, addressed through the strides of d
  Dims4 d;
  double at(int64_t b, int64_t c, int64_t i, int64_t j) const { return x[b * d.sB + c * d.sC + i * d.sH + j * d.sW]; }
};

// Random logits in NCHW (channels_last = false) or NHWC storage.
Logits make_logits(int64_t B, int64_t C, int64_t H, int64_t W, bool channels_last, double scale = 3.0) {
  Logits L;
  L.x.resize(B * C * H * W);
  std::normal_distribution<double> nd(0.0, scale);
  for (auto& v : L.x) v = std::round(nd(gen) * 64.0) / 64.0;  // exactly representable in float
  L.d = channels_last ? Dims4{B, C, H, W, H * W * C, 1, W * C, C} : Dims4{B, C, H, W, C * H * W, H * W, W, 1};
  return L;
}

std::vector<float> as_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// naive per-pixel entropy and argmax (double)
void naive_pixel(const Logits& L, int64_t b, int64_t i, int64_t j, double& e, int& arg) {
  const int64_t C = L.d.C;
  double m = L.at(b, 0, i, j);
  arg = 0;
  bool finite = std::isfinite(m);
  for (int64_t c = 1; c < C; ++c) {
    const double v = L.at(b, c, i, j);
    finite = finite && std::isfinite(v);
    if (v > m) {
      m = v;
      arg = static_cast<int>(c);
    }
  }
  if (!finite) {
    e = NAN;
    return;
  }
  if (C == 1) {
    e = 0;
    return;
  }
  double s = 0;
  for (int64_t c = 0; c < C; ++c) s += std::exp(L.at(b, c, i, j) - m);
  e = 0;
  for (int64_t c = 0; c < C; ++c) {
    const double p = std::exp(L.at(b, c, i, j) - m) / s;
    if (p > 0) e -= p * std::log(p);
  }
  e /= std::log(static_cast<double>(C));
}

// naive region/pixel scores: O(k^2) windows
void naive_scores(const Logits& L, int64_t k, bool pixel_mode, std::vector<double>& score, std::vector<double>& imp,
                  std::vector<double>& unc) {
  const int64_t B = L.d.B, C = L.d.C, H = L.d.H, W = L.d.W;
  std::vector<double> e(B * H * W);
  std::vector<int> lab(B * H * W);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) naive_pixel(L, b, i, j, e[(b * H + i) * W + j], lab[(b * H + i) * W + j]);
  score.assign(B * H * W, 0);
  imp.assign(B * H * W, 0);
  unc.assign(B * H * W, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        std::vector<int64_t> cnt(C, 0);
        int64_t N = 0;
        double sum = 0;
        bool bad = false;
        for (int64_t y = std::max<int64_t>(0, i - k); y <= std::min(H - 1, i + k); ++y)
          for (int64_t x = std::max<int64_t>(0, j - k); x <= std::min(W - 1, j + k); ++x) {
            const int64_t q = (b * H + y) * W + x;
            ++N;
            ++cnt[lab[q]];
            if (std::isnan(e[q])) bad = true;
            else sum += e[q];
          }
        double P = 0;
        if (C > 1)
          for (int64_t c = 0; c < C; ++c)
            if (cnt[c]) P -= double(cnt[c]) / N * std::log(double(cnt[c]) / N) / std::log(double(C));
        const int64_t p = (b * H + i) * W + j;
        imp[p] = bad ? NAN : P;
        unc[p] = pixel_mode ? e[p] : (bad ? NAN : sum / N);
        score[p] = imp[p] * unc[p];
      }
}

template <typename T>
void check_scores_case(int64_t B, int64_t C, int64_t H, int64_t W, int64_t k, bool pixel_mode, bool channels_last,
                       bool with_nan) {
  Logits L = make_logits(B, C, H, W, channels_last);
  if (with_nan) L.x[L.d.sB * (B - 1) + L.d.sC * (C - 1) + L.d.sH * (H / 2) + L.d.sW * (W / 3)] = NAN;
  std::vector<double> rs, ri, ru;
  naive_scores(L, k, pixel_mode, rs, ri, ru);
  std::vector<T> x(L.x.begin(), L.x.end());
  std::vector<T> s(B * H * W), im(B * H * W), u(B * H * W);
  cpu::scores<T, T>(x.data(), L.d, Resize{false, H, W, false}, k, pixel_mode, s.data(), im.data(), u.data());
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-12;
  for (int64_t p = 0; p < B * H * W; ++p) {
    CHECK_NEAR(s[p], rs[p], tol, 1e-5);
    CHECK_NEAR(im[p], ri[p], tol, 1e-5);
    CHECK_NEAR(u[p], ru[p], tol, 1e-5);
  }
  std::vector<T> e(B * H * W);
  cpu::pixel_entropy<T, T>(x.data(), L.d, e.data());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        double er;
        int arg;
        naive_pixel(L, b, i, j, er, arg);
        CHECK_NEAR(e[(b * H + i) * W + j], er, tol, 1e-5);
      }
}

void test_scores() {
  for (bool pixel_mode : {false, true})
    for (bool cl : {false, true})
      for (int64_t k : {0, 1, 2, 5, 40}) {
        check_scores_case<float>(2, 4, 9, 11, k, pixel_mode, cl, false);
        check_scores_case<double>(1, 3, 7, 13, k, pixel_mode, cl, k == 1);
      }
  check_scores_case<float>(1, 1, 5, 6, 1, false, false, false);   // one class: impurity 0, entropy 0
  check_scores_case<double>(1, 25, 6, 40, 13, false, false, true);  // histogram path with NaN
  check_scores_case<float>(2, 25, 8, 21, 2, false, true, false);    // per-label path (4 (2k+1) <= C)
  check_scores_case<double>(1, 21, 8, 21, 1, true, false, true);    // per-label path with NaN
  check_scores_case<double>(1, 2, 1, 17, 3, true, true, false);     // a single row
}

// Resizing to the input's own size is a copy; align_corners=True to 2n-1 keeps every even output equal to the input.
void test_resize() {
  const int64_t B = 1, C = 3, H = 5, W = 6;
  Logits L = make_logits(B, C, H, W, false);
  std::vector<float> x = as_float(L.x);
  std::vector<float> s0(H * W), i0(H * W), u0(H * W), s1(H * W), i1(H * W), u1(H * W);
  cpu::scores<float, float>(x.data(), L.d, Resize{false, H, W, false}, 1, false, s0.data(), i0.data(), u0.data());
  for (bool ac : {false, true}) {
    cpu::scores<float, float>(x.data(), L.d, Resize{true, H, W, ac}, 1, false, s1.data(), i1.data(), u1.data());
    for (int64_t p = 0; p < H * W; ++p) CHECK(s0[p] == s1[p] && i0[p] == i1[p] && u0[p] == u1[p]);
  }
  const int64_t H2 = 2 * H - 1, W2 = 2 * W - 1;
  std::vector<float> s2(H2 * W2), i2(H2 * W2), e2(H2 * W2), e0(H * W);
  cpu::scores<float, float>(x.data(), L.d, Resize{true, H2, W2, true}, 0, true, s2.data(), i2.data(), e2.data());
  cpu::pixel_entropy<float, float>(x.data(), L.d, e0.data());
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j) CHECK_NEAR(e2[(2 * i) * W2 + 2 * j], e0[i * W + j], 1e-6, 0.0);
  // midpoints: entropy of the mean of the two neighbouring logit vectors
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j + 1 < W; ++j) {
      Logits M;
      M.d = Dims4{1, C, 1, 1, C, 1, 1, 1};
      for (int64_t c = 0; c < C; ++c) M.x.push_back(0.5 * (L.at(0, c, i, j) + L.at(0, c, i, j + 1)));
      double er;
      int arg;
      naive_pixel(M, 0, 0, 0, er, arg);
      CHECK_NEAR(e2[(2 * i) * W2 + 2 * j + 1], er, 2e-6, 0.0);
    }
}

// naive greedy selection
template <typename T>
int64_t naive_select(const std::vector<T>& s, int64_t H, int64_t W, int64_t n, int64_t r, int64_t m,
                     std::vector<char>& act, std::vector<char>& sel, std::vector<int64_t>& centers) {
  int64_t got = 0;
  while (got < n) {
    int64_t best = -1;
    for (int64_t p = 0; p < H * W; ++p) {
      if (act[p] || std::isnan(s[p]) || s[p] == -std::numeric_limits<T>::infinity()) continue;
      if (best < 0 || s[p] > s[best]) best = p;
    }
    if (best < 0) break;
    const int64_t i = best / W, j = best % W;
    centers.push_back(i);
    centers.push_back(j);
    for (int64_t y = std::max<int64_t>(0, i - m); y <= std::min(H - 1, i + m); ++y)
      for (int64_t x = std::max<int64_t>(0, j - m); x <= std::min(W - 1, j + m); ++x) act[y * W + x] = 1;
    for (int64_t y = std::max<int64_t>(0, i - r); y <= std::min(H - 1, i + r); ++y)
      for (int64_t x = std::max<int64_t>(0, j - r); x <= std::min(W - 1, j + r); ++x) sel[y * W + x] = 1;
    ++got;
  }
  return got;
}

void test_select() {
  for (int rep = 0; rep < 30; ++rep) {
    const int64_t B = 3, H = 7 + rep % 5, W = 9 + rep % 7, HW = H * W;
    const int64_t r = rep % 3, m = r + rep % 2 * 2;
    std::uniform_int_distribution<int> small(0, 4);  // heavy ties
    std::vector<float> s(B * HW);
    for (auto& v : s) v = static_cast<float>(small(gen));
    s[3] = NAN;
    s[5] = -std::numeric_limits<float>::infinity();
    s[HW + 1] = std::numeric_limits<float>::infinity();
    bool act_in[1024];
    for (int64_t p = 0; p < B * HW; ++p) act_in[p] = (small(gen) == 0 && rep % 2 == 0);
    const int64_t n_max = 12;
    std::vector<int64_t> n = {n_max, 3, 0};
    std::vector<int64_t> centers(B * n_max * 2), counts(B);
    bool act_out[1024], sel[1024];
    cpu::select_regions<float>(s.data(), B, H, W, n.data(), n_max, r, m, act_in, centers.data(), counts.data(), act_out,
                               sel);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<char> a(act_in + b * HW, act_in + (b + 1) * HW), se(HW, 0);
      std::vector<int64_t> c;
      std::vector<float> sb(s.begin() + b * HW, s.begin() + (b + 1) * HW);
      const int64_t got = naive_select(sb, H, W, n[b], r, m, a, se, c);
      CHECK(counts[b] == got);
      for (int64_t q = 0; q < n_max * 2; ++q) CHECK(centers[b * n_max * 2 + q] == (q < 2 * got ? c[q] : -1));
      for (int64_t p = 0; p < HW; ++p) {
        CHECK(act_out[b * HW + p] == static_cast<bool>(a[p]));
        CHECK(sel[b * HW + p] == static_cast<bool>(se[p]));
      }
    }
  }
  // large maps: the sampled-threshold head, and a head that runs out (large suppression windows)
  for (int rep = 0; rep < 4; ++rep) {
    const int64_t H = 200 + rep * 17, W = 260, HW = H * W;
    std::vector<float> s(HW);
    std::uniform_int_distribution<int> level(0, 50);
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j)  // smooth with ties: high scores cluster
        s[i * W + j] = static_cast<float>(std::round(100.0 - std::abs(i - 90.0) * 0.7 - std::abs(j - 130.0) * 0.4) +
                                          (level(gen) == 0 ? 0.5 : 0.0));
    s[5] = NAN;
    const int64_t n = rep < 2 ? 25 : 60, r = 1, m = rep % 2 == 0 ? 2 : 30;
    std::vector<int64_t> centers(n * 2), counts(1);
    std::vector<char> act_c(HW), sel_c(HW);
    bool* act = reinterpret_cast<bool*>(act_c.data());
    bool* sel = reinterpret_cast<bool*>(sel_c.data());
    cpu::select_regions<float>(s.data(), 1, H, W, &n, n, r, m, nullptr, centers.data(), counts.data(), act, sel);
    std::vector<char> a(HW, 0), se(HW, 0);
    std::vector<int64_t> c;
    const int64_t got = naive_select(s, H, W, n, r, m, a, se, c);
    CHECK(counts[0] == got);
    bool same = true;
    for (int64_t q = 0; q < 2 * got; ++q) same = same && centers[q] == c[q];
    for (int64_t p = 0; p < HW; ++p) same = same && act[p] == static_cast<bool>(a[p]) && sel[p] == static_cast<bool>(se[p]);
    CHECK(same);
  }
  // more picks than available pixels: early stop
  std::vector<double> s(4 * 4, 1.0);
  const int64_t n = 100;
  std::vector<int64_t> centers(200), counts(1);
  bool act[16], sel[16];
  cpu::select_regions<double>(s.data(), 1, 4, 4, &n, 100, 0, 1, nullptr, centers.data(), counts.data(), act, sel);
  CHECK(counts[0] == 4);  // (0,0), (0,2), (2,0), (2,2)
  CHECK(centers[0] == 0 && centers[1] == 0 && centers[2] == 0 && centers[3] == 2 && centers[8] == -1);
}

// naive LCR loss (double) from docs/ops.md
double naive_lcr(const Logits& L, const std::vector<int64_t>& lab, LcrKind kind, int nb, int64_t ignore) {
  const int64_t B = L.d.B, C = L.d.C, H = L.d.H, W = L.d.W;
  auto prob = [&](int64_t b, int64_t c, int64_t i, int64_t j) {
    double m = -INFINITY;
    for (int64_t q = 0; q < C; ++q) m = std::max(m, L.at(b, q, i, j));
    double s = 0;
    for (int64_t q = 0; q < C; ++q) s += std::exp(L.at(b, q, i, j) - m);
    return std::exp(L.at(b, c, i, j) - m) / s;
  };
  std::vector<std::pair<int, int>> off;
  if (nb == 8) {
    for (int di = -1; di <= 1; ++di)
      for (int dj = -1; dj <= 1; ++dj) off.push_back({di, dj});
  } else {
    off = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}};
  }
  double total = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        auto l = [&](int64_t y, int64_t x) -> int64_t {
          return (y < 0 || y >= H || x < 0 || x >= W) ? 0 : lab[(b * H + y) * W + x];
        };
        int64_t lap = static_cast<int64_t>(off.size() - 1) * l(i, j);
        for (auto& o : off)
          if (o.first || o.second) lap -= l(i + o.first, j + o.second);
        if (lap == 0 || l(i, j) == ignore) continue;
        ++count;
        for (int64_t c = 0; c < C; ++c) {
          double mean = 0;
          for (auto& o : off)
            mean += prob(b, c, std::clamp<int64_t>(i + o.first, 0, H - 1), std::clamp<int64_t>(j + o.second, 0, W - 1));
          mean /= off.size();
          const double p = prob(b, c, i, j);
          total += kind == LcrKind::L1 ? std::fabs(p - mean) : p * std::log(p / (mean + 1e-6) + 1e-6);
        }
      }
  return count ? total / count : 0.0;
}

double naive_nl(const Logits& L, double thr) {
  const int64_t B = L.d.B, C = L.d.C, H = L.d.H, W = L.d.W;
  double total = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        double m = -INFINITY, s = 0;
        for (int64_t c = 0; c < C; ++c) m = std::max(m, L.at(b, c, i, j));
        for (int64_t c = 0; c < C; ++c) s += std::exp(L.at(b, c, i, j) - m);
        for (int64_t c = 0; c < C; ++c) {
          const double p = std::exp(L.at(b, c, i, j) - m) / s;
          if (p < thr) {
            total += -std::log(1 - p + 1e-6);
            ++count;
          }
        }
      }
  return count ? total / count : 0.0;
}

void test_losses() {
  const int64_t B = 2, C = 3, H = 6, W = 7;
  for (bool cl : {false, true}) {
    Logits L = make_logits(B, C, H, W, cl, 1.5);
    std::vector<int64_t> lab(B * H * W);
    std::uniform_int_distribution<int> cls(0, 2);
    for (auto& v : lab) v = cls(gen) == 0 ? 1 : 0;
    lab[4] = 255;
    for (LcrKind kind : {LcrKind::L1, LcrKind::KL})
      for (int nb : {8, 4}) {
        const double ref = naive_lcr(L, lab, kind, nb, 255);
        CHECK_NEAR((cpu::lcr_forward<double, double>(L.x.data(), L.d, lab.data(), kind, nb, 255)), ref, 1e-12, 1e-10);
        std::vector<float> xf = as_float(L.x);
        CHECK_NEAR((cpu::lcr_forward<float, float>(xf.data(), L.d, lab.data(), kind, nb, 255)), ref, 1e-5, 1e-4);
        // backward vs central finite differences of the naive loss, through dx written in NCHW
        std::vector<double> dx(B * C * H * W);
        const Dims4 dd{B, C, H, W, C * H * W, H * W, W, 1};
        cpu::lcr_backward<double, double>(2.0, L.x.data(), L.d, lab.data(), kind, nb, 255, dx.data(), dd);
        for (int64_t q = 0; q < B * C * H * W; q += 5) {
          const int64_t b = q / (C * H * W), c = q / (H * W) % C, i = q / W % H, j = q % W;
          const int64_t at = b * L.d.sB + c * L.d.sC + i * L.d.sH + j * L.d.sW;
          Logits P = L, M = L;
          P.x[at] += 1e-5;
          M.x[at] -= 1e-5;
          const double fd = 2.0 * (naive_lcr(P, lab, kind, nb, 255) - naive_lcr(M, lab, kind, nb, 255)) / 2e-5;
          CHECK_NEAR(dx[q], fd, 1e-6, 1e-4);
        }
      }
    const double thr = 0.2;
    CHECK_NEAR((cpu::nl_forward<double, double>(L.x.data(), L.d, thr)), naive_nl(L, thr), 1e-12, 1e-10);
    std::vector<double> dx(B * C * H * W);
    const Dims4 dd{B, C, H, W, C * H * W, H * W, W, 1};
    cpu::nl_backward<double, double>(1.0, L.x.data(), L.d, thr, dx.data(), dd);
    for (int64_t q = 0; q < B * C * H * W; q += 3) {
      const int64_t b = q / (C * H * W), c = q / (H * W) % C, i = q / W % H, j = q % W;
      const int64_t at = b * L.d.sB + c * L.d.sC + i * L.d.sH + j * L.d.sW;
      Logits P = L, M = L;
      P.x[at] += 1e-6;
      M.x[at] -= 1e-6;
      // the mask is piecewise constant: skip points where the step flips it
      const double fp = naive_nl(P, thr), fm = naive_nl(M, thr), f0 = naive_nl(L, thr);
      if (std::fabs((fp - f0) - (f0 - fm)) > 1e-9) continue;
      CHECK_NEAR(dx[q], (fp - fm) / 2e-6, 1e-6, 1e-4);
    }
  }
  // no boundary pixels: loss 0 and zero gradient
  Logits L = make_logits(1, 2, 3, 3, false);
  std::vector<int64_t> lab(9, 255);
  CHECK((cpu::lcr_forward<double, double>(L.x.data(), L.d, lab.data(), LcrKind::L1, 8, 255)) == 0.0);
  std::vector<double> dx(18, 1.0);
  cpu::lcr_backward<double, double>(1.0, L.x.data(), L.d, lab.data(), LcrKind::L1, 8, 255, dx.data(), L.d);
  CHECK(std::all_of(dx.begin(), dx.end(), [](double v) { return v == 0.0; }));
}

}  // namespace

int main() {
  test_scores();
  test_resize();
  test_select();
  test_losses();
  return ripu_test::report("test_launchers");
}
