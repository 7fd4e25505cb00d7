// CPU launchers for pixel_entropy, region_scores and pixel_scores (torch-free).
//
// Fused algorithm, per call (B images, output H x W after the optional resize):
//  pass 1  every output row in parallel: gather the C x W logits of the row into a per-thread buffer (bilinear taps
//          computed on the fly when resizing), then class-outer / pixel-inner: max + argmax + finiteness, exp-sums,
//          entropy. Entropy is parked in the `uncertainty` map, the argmax label (as a number) in `impurity`.
//  pass 2  row bands in parallel: impurity over the clipped (2k+1)^2 window from running class counts slid along the
//          row (per-pixel label updates when 4 (2k+1) <= C, running column histograms otherwise), so the cost per pixel
//          is O(min(2k+1, C)), independent of k beyond that. Written to the `score` map.
//  pass 3  (region scores) row bands in parallel: window mean of the entropy with running column sums in double,
//          written to the `impurity` map (the labels are dead by then).
//  pass 4  element-wise: put the three maps in their places and form score = P * U (or P * e).
// Extra memory: O(C x W) per thread. Windows that touch a pixel with NaN entropy give NaN.
// FP exceptions are never inspected here; without this GCC refuses to if-convert (and so to vectorise) the
// comparisons in the per-pixel loops.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/ripu_cpu.h"
#include "cpu/rows.h"
#include "ripu/bilinear_math.h"
#include "ripu/entropy_math.h"
#include "ripu/window_math.h"

namespace ripu {
namespace cpu {

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

namespace {

// Per-thread scratch of pass 1.
template <typename T>
struct RowScratch {
  std::vector<T> buf, m, nonfinite, s, dot;
  std::vector<int32_t> arg;
  RowScratch(int64_t C, int64_t W)
      : buf(static_cast<size_t>(C * W)), m(W), nonfinite(W), s(W), dot(W), arg(static_cast<size_t>(W)) {}
};

// Entropy (and argmax label, if `label` is not null) of one row whose class c starts at buf + c * cstride. Columns
// are processed in tiles so the per-pixel accumulators stay in L1 while the classes stream past.
template <typename T>
RIPU_CPU_CLONES void row_entropy(const T* buf, int64_t cstride, RowScratch<T>& sc, int64_t C, int64_t W, T inv_log_c,
                                 T* entropy, T* label) {
  constexpr int64_t kTile = 256;
  T* __restrict m = sc.m.data();
  T* __restrict nf = sc.nonfinite.data();
  T* __restrict s = sc.s.data();
  T* __restrict dot = sc.dot.data();
  int32_t* __restrict arg = sc.arg.data();
  const int32_t Ci = static_cast<int32_t>(C);
  for (int64_t j0 = 0; j0 < W; j0 += kTile) {
    const int64_t n = std::min(kTile, W - j0);
    const T* __restrict x0 = buf + j0;
    for (int64_t j = 0; j < n; ++j) {
      m[j] = x0[j];
      nf[j] = x0[j] - x0[j];
      arg[j] = 0;
      s[j] = T(0);
      dot[j] = T(0);
    }
    for (int64_t c = 1; c < C; ++c) {
      const T* __restrict xc = buf + c * cstride + j0;
      const int32_t ci = static_cast<int32_t>(c);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) argmax_step(xc[j], ci, m[j], arg[j], nf[j]);
    }
    for (int64_t c = 0; c < C; ++c) {
      const T* __restrict xc = buf + c * cstride + j0;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) expsum_step(xc[j], m[j], s[j], dot[j]);
    }
    T* __restrict e = entropy + j0;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) e[j] = entropy_finish(s[j], dot[j], nf[j], Ci, inv_log_c);
    if (label) {
      T* __restrict l = label + j0;
      for (int64_t j = 0; j < n; ++j) l[j] = static_cast<T>(arg[j]);
    }
  }
}

// Pass 1 over every output row of the batch.
template <typename S, typename T>
void entropy_pass(const S* x, const RowSource<T>& src, T* entropy, T* label) {
  const int64_t rows = src.d.B * src.H2;
  const int64_t C = src.d.C, W2 = src.W2;
  const T inv_log_c = inverse_log_classes<T>(static_cast<int32_t>(C));
  if (rows == 0 || W2 == 0) return;
  const bool direct = std::is_same<S, T>::value && !src.rs.enabled && src.d.sW == 1;
#pragma omp parallel
  {
    RowScratch<T> sc(direct ? 0 : C, W2);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = r / src.H2, i = r % src.H2;
      T* lab = label ? label + r * W2 : nullptr;
      if (direct) {  // already the compute type with unit column stride: read the logits in place
        row_entropy<T>(reinterpret_cast<const T*>(x + b * src.d.sB + i * src.d.sH), src.d.sC, sc, C, W2, inv_log_c,
                       entropy + r * W2, lab);
      } else {
        load_row<S, T>(x, src, b, i, sc.buf.data());
        row_entropy<T>(sc.buf.data(), W2, sc, C, W2, inv_log_c, entropy + r * W2, lab);
      }
    }
  }
}

// Bands of rows for the window passes: (image, first row, end row).
struct Band {
  int64_t b, i0, i1;
};

std::vector<Band> make_bands(int64_t B, int64_t H) {
  std::vector<Band> bands;
  if (B == 0 || H == 0) return bands;
  const int64_t threads = num_threads();
  int64_t per_image = (8 * threads + B - 1) / B;
  per_image = std::max<int64_t>(1, std::min<int64_t>(per_image, H));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < per_image; ++t) {
      const int64_t i0 = H * t / per_image, i1 = H * (t + 1) / per_image;
      if (i1 > i0) bands.push_back({b, i0, i1});
    }
  return bands;
}

// Running class counts of one window with S = sum_c n_c log n_c and the number of classes present.
struct ClassWindow {
  std::vector<int32_t> cnt;
  const double* xlogx;
  double s = 0.0;
  int64_t present = 0;
  int64_t bad = 0;

  ClassWindow(int64_t C, const double* table) : cnt(static_cast<size_t>(C)), xlogx(table) {}
  void reset() {
    std::fill(cnt.begin(), cnt.end(), 0);
    s = 0.0;
    present = 0;
    bad = 0;
  }
  void add(int32_t c, int32_t h) {
    const int32_t n = cnt[c];
    s += xlogx[n + h] - xlogx[n];
    present += (n == 0);
    cnt[c] = n + h;
  }
  void remove(int32_t c, int32_t h) {
    const int32_t n = cnt[c];
    s += xlogx[n - h] - xlogx[n];
    present -= (n == h);
    cnt[c] = n - h;
  }
};

// Column histograms cost O(C) per pixel, label updates O(2k+1) at about four times the price each (measured with
// C = 19: equal at 2k+1 = 5).
inline bool use_histograms(int64_t k, int64_t C) { return 4 * (2 * k + 1) > C; }

// Pass 2: impurity of rows [i0, i1) of one image from the parked labels and entropies.
template <typename T>
RIPU_CPU_CLONES void impurity_band(const T* label, const T* entropy, int64_t H, int64_t W, int64_t C, int64_t k, int64_t i0,
                   int64_t i1, const double* xlogx, const double* inv_n, double inv_log_c, T* out, std::vector<int32_t>& hist,
                   std::vector<int32_t>& colbad, ClassWindow& win) {
  const bool use_hist = use_histograms(k, C);
  if (use_hist) std::fill(hist.begin(), hist.begin() + W * C, 0);
  std::fill(colbad.begin(), colbad.begin() + W, 0);
  auto add_row = [&](int64_t r, int32_t sign) {
    const T* lr = label + r * W;
    const T* er = entropy + r * W;
    for (int64_t j = 0; j < W; ++j) {
      colbad[j] += sign * static_cast<int32_t>(std::isnan(er[j]));
      if (use_hist) hist[j * C + static_cast<int64_t>(lr[j])] += sign;
    }
  };
  for (int64_t r = window_lo(i0, k); r < window_hi(i0, k, H); ++r) add_row(r, 1);
  for (int64_t i = i0; i < i1; ++i) {
    if (i > i0) {
      if (i - k - 1 >= 0) add_row(i - k - 1, -1);
      if (i + k < H) add_row(i + k, 1);
    }
    const int64_t r0 = window_lo(i, k), r1 = window_hi(i, k, H);
    const int64_t nrows = r1 - r0;
    T* o = out + i * W;
    if (use_hist) {
      // Column histograms: per pixel, O(C) vectorisable count updates and a fresh sum of n log n (no drift).
      int32_t* __restrict cnt = win.cnt.data();
      std::fill(cnt, cnt + C, 0);
      int64_t bad = 0;
      for (int64_t j = 0; j < window_hi(0, k, W); ++j) {
        const int32_t* hc = hist.data() + j * C;
        for (int64_t c = 0; c < C; ++c) cnt[c] += hc[c];
        bad += colbad[j];
      }
      for (int64_t j = 0; j < W; ++j) {
        if (j > 0) {
          const bool out_col = j - k - 1 >= 0, in_col = j + k < W;
          if (out_col && in_col) {
            const int32_t* hr = hist.data() + (j - k - 1) * C;
            const int32_t* ha = hist.data() + (j + k) * C;
            for (int64_t c = 0; c < C; ++c) cnt[c] += ha[c] - hr[c];
            bad += colbad[j + k] - colbad[j - k - 1];
          } else if (out_col) {
            const int32_t* hr = hist.data() + (j - k - 1) * C;
            for (int64_t c = 0; c < C; ++c) cnt[c] -= hr[c];
            bad -= colbad[j - k - 1];
          } else if (in_col) {
            const int32_t* ha = hist.data() + (j + k) * C;
            for (int64_t c = 0; c < C; ++c) cnt[c] += ha[c];
            bad += colbad[j + k];
          }
        }
        if (bad > 0) {
          o[j] = quiet_nan<T>();
          continue;
        }
        double sum = 0.0;
        int32_t present = 0;
#pragma omp simd reduction(+ : sum, present)
        for (int64_t c = 0; c < C; ++c) {
          sum += xlogx[cnt[c]];
          present += cnt[c] > 0;
        }
        const int64_t N = nrows * window_len(j, k, W);
        o[j] = present <= 1 ? T(0) : static_cast<T>(impurity_from_xlogx_sum_inv(sum, xlogx[N], inv_n[N], inv_log_c));
      }
      continue;
    }
    // Per-pixel label updates (4 (2k+1) <= C): O(2k+1) per pixel, with S = sum n log n kept incrementally.
    auto add_col = [&](int64_t j, int32_t sign) {
      win.bad += sign * colbad[j];
      for (int64_t r = r0; r < r1; ++r) {
        const int32_t c = static_cast<int32_t>(label[r * W + j]);
        if (sign > 0) win.add(c, 1);
        else win.remove(c, 1);
      }
    };
    win.reset();
    for (int64_t j = 0; j < window_hi(0, k, W); ++j) add_col(j, 1);
    for (int64_t j = 0; j < W; ++j) {
      if (j > 0) {
        if (j - k - 1 >= 0) add_col(j - k - 1, -1);
        if (j + k < W) add_col(j + k, 1);
      }
      if (win.bad > 0) {
        o[j] = quiet_nan<T>();
      } else if (win.present <= 1) {
        o[j] = T(0);
      } else {
        const int64_t N = nrows * window_len(j, k, W);
        o[j] = static_cast<T>(impurity_from_xlogx_sum_inv(win.s, xlogx[N], inv_n[N], inv_log_c));
      }
    }
  }
}

// Pass 3: window mean of the parked entropies of rows [i0, i1) of one image.
template <typename T>
void uncertainty_band(const T* entropy, int64_t H, int64_t W, int64_t k, int64_t i0, int64_t i1, T* out,
                      std::vector<double>& colsum, std::vector<int32_t>& colbad) {
  std::fill(colsum.begin(), colsum.begin() + W, 0.0);
  std::fill(colbad.begin(), colbad.begin() + W, 0);
  auto add_row = [&](int64_t r, int32_t sign) {
    const T* er = entropy + r * W;
    for (int64_t j = 0; j < W; ++j) {
      const T e = er[j];
      if (std::isnan(e)) colbad[j] += sign;
      else colsum[j] += sign > 0 ? static_cast<double>(e) : -static_cast<double>(e);
    }
  };
  for (int64_t r = window_lo(i0, k); r < window_hi(i0, k, H); ++r) add_row(r, 1);
  for (int64_t i = i0; i < i1; ++i) {
    if (i > i0) {
      if (i - k - 1 >= 0) add_row(i - k - 1, -1);
      if (i + k < H) add_row(i + k, 1);
    }
    const int64_t nrows = window_len(i, k, H);
    double sum = 0.0;
    int64_t bad = 0;
    for (int64_t j = 0; j < window_hi(0, k, W); ++j) {
      sum += colsum[j];
      bad += colbad[j];
    }
    T* o = out + i * W;
    for (int64_t j = 0; j < W; ++j) {
      if (j > 0) {
        if (j - k - 1 >= 0) {
          sum -= colsum[j - k - 1];
          bad -= colbad[j - k - 1];
        }
        if (j + k < W) {
          sum += colsum[j + k];
          bad += colbad[j + k];
        }
      }
      const double N = static_cast<double>(nrows * window_len(j, k, W));
      o[j] = bad > 0 ? quiet_nan<T>() : static_cast<T>(sum / N);
    }
  }
}

}  // namespace

template <typename S, typename T>
void pixel_entropy(const S* logits, const Dims4& d, T* entropy) {
  const RowSource<T> src(d, Resize{false, d.H, d.W, false});
  entropy_pass<S, T>(logits, src, entropy, nullptr);
}

template <typename S, typename T>
void scores(const S* logits, const Dims4& d, const Resize& rs, int64_t k, bool pixel_mode, T* score, T* impurity,
            T* uncertainty) {
  const RowSource<T> src(d, rs);
  const int64_t B = d.B, C = d.C, H = src.H2, W = src.W2;
  if (B == 0 || H == 0 || W == 0) return;
  k = std::min<int64_t>(k, std::max<int64_t>(H, W));  // larger windows are the whole image anyway
  const int64_t HW = H * W;
  // pass 1: entropy -> uncertainty map, label -> impurity map
  entropy_pass<S, T>(logits, src, uncertainty, impurity);

  // n log n for every possible count of a window
  const int64_t nmax = std::min<int64_t>(2 * k + 1, H) * std::min<int64_t>(2 * k + 1, W);
  std::vector<double> xlogx(static_cast<size_t>(nmax + 1));
  std::vector<double> inv_n(static_cast<size_t>(nmax + 1), 0.0);
  for (int64_t n = 0; n <= nmax; ++n) {
    xlogx[n] = xlogx_count(n);
    if (n > 0) inv_n[n] = 1.0 / static_cast<double>(n);
  }
  const double inv_log_c = C > 1 ? 1.0 / std::log(static_cast<double>(C)) : 0.0;
  const std::vector<Band> bands = make_bands(B, H);
  const int64_t nb = static_cast<int64_t>(bands.size());

  // pass 2: impurity -> score map
#pragma omp parallel
  {
    std::vector<int32_t> hist(use_histograms(k, C) ? static_cast<size_t>(W * C) : 0), colbad(static_cast<size_t>(W));
    ClassWindow win(C, xlogx.data());
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < nb; ++t) {
      const Band& bd = bands[t];
      impurity_band<T>(impurity + bd.b * HW, uncertainty + bd.b * HW, H, W, C, k, bd.i0, bd.i1, xlogx.data(),
                       inv_n.data(), inv_log_c, score + bd.b * HW, hist, colbad, win);
    }
  }

  if (!pixel_mode) {
    // pass 3: window mean of the entropy -> impurity map (labels no longer needed)
#pragma omp parallel
    {
      std::vector<double> colsum(static_cast<size_t>(W));
      std::vector<int32_t> colbad(static_cast<size_t>(W));
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < nb; ++t) {
        const Band& bd = bands[t];
        uncertainty_band<T>(uncertainty + bd.b * HW, H, W, k, bd.i0, bd.i1, impurity + bd.b * HW, colsum, colbad);
      }
    }
  }

  // pass 4: score map holds P; impurity map holds U (region) or labels (pixel); uncertainty map holds e.
  const int64_t total = B * HW;
#pragma omp parallel for schedule(dynamic, 65536)
  for (int64_t p = 0; p < total; ++p) {
    const T P = score[p];
    if (pixel_mode) {
      impurity[p] = P;
      score[p] = P * uncertainty[p];
    } else {
      const T U = impurity[p];
      uncertainty[p] = U;
      impurity[p] = P;
      score[p] = P * U;
    }
  }
}

#define RIPU_INSTANTIATE_SCORES(S, T)                                                                             \
  template void pixel_entropy<S, T>(const S*, const Dims4&, T*);                                                 \
  template void scores<S, T>(const S*, const Dims4&, const Resize&, int64_t, bool, T*, T*, T*);

RIPU_INSTANTIATE_SCORES(float, float)
RIPU_INSTANTIATE_SCORES(double, double)
RIPU_INSTANTIATE_SCORES(half_t, float)
RIPU_INSTANTIATE_SCORES(bfloat16_t, float)

}  // namespace cpu
}  // namespace ripu
