// CPU launchers for the two losses and their backward passes (torch-free).
//
// LCR: row bands in parallel; softmax rows are computed once per band into a small ring (3 rows forward, 5 rows
// backward) and the box/cross mean is read from it with replicate padding. The backward gathers, for every pixel r,
// d loss / d p_r = [r boundary] dg/dp (p_r, mean_r) + (1/K) sum over the (q, offset) pairs whose clamped neighbour is r
// of [q boundary] dg/dmean (p_q, mean_q), then applies the softmax Jacobian. Only pixels the loss reads (a boundary
// pixel and its neighbourhood offsets) get a gradient; every other pixel gets exactly 0 -- a row with no boundary
// pixel within one row is written as zeros without computing its softmax. NL: rows in parallel, per-pixel terms.
// Sums are accumulated in double. Extra memory O(C x W) per thread. The per-row loops run class-outer, pixel-inner
// so they vectorise (softmax with the polynomial exp of ripu/common.h, which keeps NaN where torch's exp gives NaN).
// FP exceptions are never inspected here (see scores.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ripu_cpu.h"
#include "cpu/rows.h"
#include "ripu/loss_math.h"

namespace ripu {
namespace cpu {

namespace {

// buf[c * W + j] (logits) -> softmax probabilities in place; m and s are W-long scratch. As torch.softmax: a pixel
// with a NaN logit, +inf, or only -inf logits is NaN in every class (exp of a NaN difference stays NaN).
template <typename T>
RIPU_CPU_CLONES void softmax_row(T* buf, int64_t C, int64_t W, T* m_, T* s_) {
  T* __restrict m = m_;
  T* __restrict s = s_;
  for (int64_t j = 0; j < W; ++j) {
    m[j] = buf[j];
    s[j] = T(0);
  }
  for (int64_t c = 1; c < C; ++c) {
    const T* __restrict xc = buf + c * W;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) m[j] = xc[j] > m[j] ? xc[j] : m[j];
  }
  for (int64_t c = 0; c < C; ++c) {
    T* __restrict xc = buf + c * W;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      const T z = xc[j] - m[j];
      const T e = z != z ? z : rexp_fast(z);
      xc[j] = e;
      s[j] += e;
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    T* __restrict xc = buf + c * W;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) xc[j] = xc[j] / s[j];
  }
}

// g[j] += w * src[j + shift] for j in [j0, j1).
template <typename T>
RIPU_CPU_CLONES void axpy_shifted(T* __restrict g, const T* __restrict src, T w, int64_t j0, int64_t j1,
                                  int64_t shift) {
#pragma omp simd
  for (int64_t j = j0; j < j1; ++j) g[j] += w * src[j + shift];
}

// Softmax backward of one row: g (C x W, d loss / d p before scaling) is scaled in place, then
// out[c * sC + j * sW] = p (g - sum_c p g). dot is W-long scratch.
template <typename T>
RIPU_CPU_CLONES void softmax_backward_row(const T* __restrict p, T* __restrict g, T scale, T* __restrict dot,
                                          int64_t C, int64_t W, T* out, int64_t sC, int64_t sW) {
  for (int64_t j = 0; j < W; ++j) dot[j] = T(0);
  for (int64_t c = 0; c < C; ++c) {
    const T* __restrict pc = p + c * W;
    T* __restrict gc = g + c * W;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      gc[j] *= scale;
      dot[j] += pc[j] * gc[j];
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    const T* __restrict pc = p + c * W;
    const T* __restrict gc = g + c * W;
    T* oc = out + c * sC;
    if (sW == 1) {
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) oc[j] = softmax_backward(pc[j], gc[j], dot[j]);
    } else {
      for (int64_t j = 0; j < W; ++j) oc[j * sW] = softmax_backward(pc[j], gc[j], dot[j]);
    }
  }
}

// Neighbourhood offsets in the reference's summation order.
constexpr int kOff8[9][2] = {{-1, -1}, {-1, 0}, {-1, 1}, {0, -1}, {0, 0}, {0, 1}, {1, -1}, {1, 0}, {1, 1}};
constexpr int kOff4[5][2] = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}};

inline int64_t clamp_index(int64_t i, int64_t n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

// Is pixel (i, j) of one image's label map (H x W, contiguous) a boundary pixel?
bool is_boundary(const int64_t* lab, int64_t H, int64_t W, int64_t i, int64_t j, int neighbors, int64_t ignore) {
  const int64_t l = lab[i * W + j];
  if (l == ignore) return false;
  auto at = [&](int64_t y, int64_t x) -> int64_t { return (y < 0 || y >= H || x < 0 || x >= W) ? 0 : lab[y * W + x]; };
  int64_t lap;
  if (neighbors == 8) {
    lap = 8 * l;
    for (const auto& o : kOff8)
      if (o[0] || o[1]) lap -= at(i + o[0], j + o[1]);
  } else {
    lap = 4 * l - at(i - 1, j) - at(i + 1, j) - at(i, j - 1) - at(i, j + 1);
  }
  return lcr_is_boundary(lap, l, ignore);
}

// A ring of per-row buffers (C x W each) tagged by (image, row).
template <typename T>
struct RowRing {
  int64_t slots, size;
  std::vector<T> data;
  std::vector<int64_t> tag;
  RowRing(int64_t nslots, int64_t row_size)
      : slots(nslots), size(row_size), data(static_cast<size_t>(nslots * row_size)), tag(nslots, -1) {}
  T* slot(int64_t key) { return data.data() + (key % slots) * size; }
  bool has(int64_t key) const { return tag[key % slots] == key; }
  void set(int64_t key) { tag[key % slots] = key; }
  void clear() { std::fill(tag.begin(), tag.end(), int64_t(-1)); }
};

template <typename S, typename T>
struct LcrWorker {
  const S* x;
  const RowSource<T>& src;
  const int64_t* labels;
  LcrKind kind;
  int neighbors;
  int64_t ignore;
  int64_t C, H, W;
  int K;
  const int (*off)[2];
  RowRing<T> p;   // softmax rows
  RowRing<T> ab;  // per row: dg/dp (first C*W) and dg/dmean (next C*W), zero off the boundary
  std::vector<char> ab_bnd;  // per ab slot: the row's boundary flags (W) and, at [W], whether any is set
  std::vector<T> m, s, mean, g, dot;
  std::vector<char> bnd, touched;

  LcrWorker(const S* x_, const RowSource<T>& src_, const int64_t* labels_, LcrKind kind_, int neighbors_,
            int64_t ignore_, int p_slots, int ab_slots)
      : x(x_), src(src_), labels(labels_), kind(kind_), neighbors(neighbors_), ignore(ignore_), C(src_.d.C),
        H(src_.d.H), W(src_.d.W), K(neighbors_ == 8 ? 9 : 5), off(neighbors_ == 8 ? kOff8 : kOff4),
        p(p_slots, src_.d.C * src_.d.W), ab(ab_slots, 2 * src_.d.C * src_.d.W), m(W), s(W), mean(C),
        g(static_cast<size_t>(C * W)), dot(W), bnd(static_cast<size_t>(W)), touched(static_cast<size_t>(W)) {
    ab_bnd.resize(static_cast<size_t>(ab_slots * (W + 1)));
  }

  const T* prob(int64_t b, int64_t r) {
    const int64_t key = b * H + r;
    T* buf = p.slot(key);
    if (!p.has(key)) {
      load_row<S, T>(x, src, b, r, buf);
      softmax_row<T>(buf, C, W, m.data(), s.data());
      p.set(key);
    }
    return buf;
  }

  // Boundary flags of row i of image b into bnd; returns whether any is set.
  bool boundary_row(int64_t b, int64_t i) {
    const int64_t* lab = labels + b * H * W;
    bool any = false;
    for (int64_t j = 0; j < W; ++j) {
      bnd[j] = is_boundary(lab, H, W, i, j, neighbors, ignore);
      any = any || bnd[j];
    }
    return any;
  }

  // mean[c] of pixel (i, j) from the three probability rows rows[0..2] = rows clamp(i-1), i, clamp(i+1).
  void pixel_mean(const T* const rows[3], int64_t j) {
    for (int64_t c = 0; c < C; ++c) {
      T acc = T(0);
      for (int o = 0; o < K; ++o) acc += rows[off[o][0] + 1][c * W + clamp_index(j + off[o][1], W)];
      mean[c] = acc / static_cast<T>(K);
    }
  }

  // Sum of d over the boundary pixels of row i, and their number.
  void forward_row(int64_t b, int64_t i, double& total, int64_t& count) {
    if (!boundary_row(b, i)) return;
    const T* rows[3] = {prob(b, clamp_index(i - 1, H)), prob(b, i), prob(b, clamp_index(i + 1, H))};
    for (int64_t j = 0; j < W; ++j) {
      if (!bnd[j]) continue;
      pixel_mean(rows, j);
      T d = T(0);
      for (int64_t c = 0; c < C; ++c) d += lcr_term(rows[1][c * W + j], mean[c], kind);
      total += static_cast<double>(d);
      ++count;
    }
  }

  // dg/dp and dg/dmean of row q (zero off the boundary); flags = its boundary flags, flags[W] = whether any is set.
  const T* grads(int64_t b, int64_t q, const char** flags) {
    const int64_t key = b * H + q;
    T* buf = ab.slot(key);
    char* fl = ab_bnd.data() + (key % ab.slots) * (W + 1);
    *flags = fl;
    if (ab.has(key)) return buf;
    std::fill(buf, buf + 2 * C * W, T(0));
    const bool any = boundary_row(b, q);
    std::copy(bnd.begin(), bnd.end(), fl);
    fl[W] = any;
    if (any) {
      const T* rows[3] = {prob(b, clamp_index(q - 1, H)), prob(b, q), prob(b, clamp_index(q + 1, H))};
      for (int64_t j = 0; j < W; ++j) {
        if (!bnd[j]) continue;
        pixel_mean(rows, j);
        for (int64_t c = 0; c < C; ++c) {
          T dp, dm;
          lcr_term_grad(rows[1][c * W + j], mean[c], kind, dp, dm);
          buf[c * W + j] = dp;
          buf[C * W + c * W + j] = dm;
        }
      }
    }
    ab.set(key);
    return buf;
  }

  // w[dq + 1][dj + 1] = number of offsets o by which neighbour q = (r + dq, j + dj) (inside the image) reaches
  // (r, j) after replicate clamping: how often q's d loss / d mean enters the gradient of p at (r, j).
  void tap_weights(int64_t r, int64_t j, T w[3][3]) const {
    for (int dq = 0; dq < 3; ++dq)
      for (int dj = 0; dj < 3; ++dj) w[dq][dj] = T(0);
    for (int o = 0; o < K; ++o)
      for (int dq = -1; dq <= 1; ++dq) {
        const int64_t qi = r + dq;
        if (qi < 0 || qi >= H || clamp_index(qi + off[o][0], H) != r) continue;
        for (int dj = -1; dj <= 1; ++dj) {
          const int64_t qj = j + dj;
          if (qj >= 0 && qj < W && clamp_index(qj + off[o][1], W) == j) w[dq + 1][dj + 1] += T(1);
        }
      }
  }

  // dx of row r of image b (scale = grad / number of boundary pixels). The gather weights are the same for every
  // column 1 <= j <= W - 2 (clamping only changes them at the two edge columns), so the interior is a 3 x 3 stencil
  // over the d loss / d mean rows, class-outer and vectorised; the edge columns are gathered one by one.
  void backward_row(int64_t b, int64_t r, T scale, T* dx, const Dims4& dd) {
    const T* abq[3] = {nullptr, nullptr, nullptr};  // rows r-1, r, r+1
    const char* flq[3] = {nullptr, nullptr, nullptr};
    bool any = false;
    for (int dq = -1; dq <= 1; ++dq)
      if (r + dq >= 0 && r + dq < H) {
        abq[dq + 1] = grads(b, r + dq, &flq[dq + 1]);
        any = any || flq[dq + 1][W];
      }
    T* out = dx + b * dd.sB + r * dd.sH;
    if (!any) {  // no boundary pixel within one row: the loss reads nothing here
      zero_columns(out, dd, nullptr);
      return;
    }
    // touched[j]: pixel (r, j) is read by the loss, i.e. (r, j) + o is a boundary pixel for an offset o.
    for (int64_t j = 0; j < W; ++j) {
      bool t = false;
      for (int o = 0; o < K && !t; ++o) {
        const int64_t qj = j + off[o][1];
        const char* fl = flq[off[o][0] + 1];
        t = fl != nullptr && qj >= 0 && qj < W && fl[qj];
      }
      touched[j] = t;
    }
    const T* pr = prob(b, r);  // after grads(): rows r-2..r+2 fit in the 5-slot ring, so this stays valid
    const T invK = T(1) / static_cast<T>(K);
    T* G = g.data();
    std::copy(abq[1], abq[1] + C * W, G);  // d loss / d p of the row itself
    if (W >= 3) {
      T w[3][3];
      tap_weights(r, 1, w);
      for (int64_t c = 0; c < C; ++c)
        for (int dq = 0; dq < 3; ++dq) {
          if (!abq[dq]) continue;
          const T* bm = abq[dq] + C * W + c * W;
          for (int dj = 0; dj < 3; ++dj)
            if (w[dq][dj] != T(0)) axpy_shifted<T>(G + c * W, bm, w[dq][dj] * invK, 1, W - 1, dj - 1);
        }
    }
    const int64_t edges[2] = {0, W - 1};
    for (int e = 0; e < (W > 1 ? 2 : 1); ++e) {
      const int64_t j = edges[e];
      T w[3][3];
      tap_weights(r, j, w);
      for (int dq = 0; dq < 3; ++dq) {
        if (!abq[dq]) continue;
        const T* bm = abq[dq] + C * W;
        for (int dj = 0; dj < 3; ++dj) {
          const int64_t qj = j + dj - 1;
          if (w[dq][dj] == T(0) || qj < 0 || qj >= W) continue;
          for (int64_t c = 0; c < C; ++c) G[c * W + j] += w[dq][dj] * invK * bm[c * W + qj];
        }
      }
    }
    softmax_backward_row<T>(pr, G, scale, dot.data(), C, W, out, dd.sC, dd.sW);
    zero_columns(out, dd, touched.data());  // untouched pixels: 0 even where p is NaN (0 * NaN would be NaN)
  }

  // out[c * sC + j * sW] = 0 for every class and every column j with !keep[j] (all columns when keep is null).
  void zero_columns(T* out, const Dims4& dd, const char* keep) const {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = 0; j < W; ++j)
        if (!keep || !keep[j]) out[c * dd.sC + j * dd.sW] = T(0);
  }
};

int64_t count_boundary(const int64_t* labels, int64_t B, int64_t H, int64_t W, int neighbors, int64_t ignore) {
  int64_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static)
  for (int64_t r = 0; r < B * H; ++r) {
    const int64_t b = r / H, i = r % H;
    const int64_t* lab = labels + b * H * W;
    for (int64_t j = 0; j < W; ++j) count += is_boundary(lab, H, W, i, j, neighbors, ignore);
  }
  return count;
}

// Rows split into contiguous bands (one image per band) so the ring caches get reused.
struct RowBand {
  int64_t b, i0, i1;
};

std::vector<RowBand> row_bands(int64_t B, int64_t H) {
  std::vector<RowBand> out;
  const int64_t per = std::max<int64_t>(1, std::min<int64_t>(H, (8 * num_threads() + B - 1) / std::max<int64_t>(B, 1)));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < per; ++t) {
      const int64_t i0 = H * t / per, i1 = H * (t + 1) / per;
      if (i1 > i0) out.push_back({b, i0, i1});
    }
  return out;
}

}  // namespace

template <typename S, typename T>
T lcr_forward(const S* logits, const Dims4& d, const int64_t* labels, LcrKind kind, int neighbors,
              int64_t ignore_index) {
  const RowSource<T> src(d, Resize{false, d.H, d.W, false});
  const std::vector<RowBand> bands = row_bands(d.B, d.H);
  const int64_t nb = static_cast<int64_t>(bands.size());
  double total = 0.0;
  int64_t count = 0;
  if (d.W == 0) return T(0);
#pragma omp parallel reduction(+ : total, count)
  {
    LcrWorker<S, T> wk(logits, src, labels, kind, neighbors, ignore_index, 3, 1);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < nb; ++t) {
      wk.p.clear();
      for (int64_t i = bands[t].i0; i < bands[t].i1; ++i) wk.forward_row(bands[t].b, i, total, count);
    }
  }
  return static_cast<T>(total / static_cast<double>(std::max<int64_t>(count, 1)));
}

template <typename S, typename T>
void lcr_backward(T grad, const S* logits, const Dims4& d, const int64_t* labels, LcrKind kind, int neighbors,
                  int64_t ignore_index, T* dx, const Dims4& dd) {
  if (d.B == 0 || d.H == 0 || d.W == 0) return;
  const int64_t count = count_boundary(labels, d.B, d.H, d.W, neighbors, ignore_index);
  if (count == 0) {
    // zero gradient
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < d.B * d.H; ++r) {
      const int64_t b = r / d.H, i = r % d.H;
      for (int64_t c = 0; c < d.C; ++c)
        for (int64_t j = 0; j < d.W; ++j) dx[b * dd.sB + c * dd.sC + i * dd.sH + j * dd.sW] = T(0);
    }
    return;
  }
  const T scale = static_cast<T>(static_cast<double>(grad) / static_cast<double>(count));
  const RowSource<T> src(d, Resize{false, d.H, d.W, false});
  const std::vector<RowBand> bands = row_bands(d.B, d.H);
  const int64_t nb = static_cast<int64_t>(bands.size());
#pragma omp parallel
  {
    LcrWorker<S, T> wk(logits, src, labels, kind, neighbors, ignore_index, 5, 3);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < nb; ++t) {
      wk.p.clear();
      wk.ab.clear();
      for (int64_t r = bands[t].i0; r < bands[t].i1; ++r) wk.backward_row(bands[t].b, r, scale, dx, dd);
    }
  }
}

namespace {

// NL terms of one softmax row: t[q] = -log(1 - p + 1e-6) where p < threshold or p is NaN, else 0; returns their sum
// (double) and adds the number of masked entries to count. The masked argument lies in [1e-6, 1 + 1e-6], where the
// polynomial log is accurate; a NaN probability (non-finite logits) is masked and makes the sum NaN.
template <typename T>
RIPU_CPU_CLONES double nl_row_terms(const T* __restrict p, int64_t n, T threshold, int64_t& count) {
  double total = 0.0;
  int64_t cnt = 0;
#pragma omp simd reduction(+ : total, cnt)
  for (int64_t q = 0; q < n; ++q) {
    const bool masked = nl_masked(p[q], threshold);
    const T t = nl_term(masked ? p[q] : T(0));
    total += masked ? static_cast<double>(t) : 0.0;
    cnt += masked ? 1 : 0;
  }
  count += cnt;
  return total;
}

// g[q] = d term / d p where p < threshold (NaN where p is NaN), else 0.
template <typename T>
RIPU_CPU_CLONES void nl_row_grads(const T* __restrict p, T* __restrict g, int64_t n, T threshold) {
#pragma omp simd
  for (int64_t q = 0; q < n; ++q) g[q] = nl_masked(p[q], threshold) ? nl_term_grad(p[q]) : T(0);
}

}  // namespace

template <typename S, typename T>
T nl_forward(const S* logits, const Dims4& d, T threshold) {
  const RowSource<T> src(d, Resize{false, d.H, d.W, false});
  const int64_t C = d.C, W = d.W, rows = d.B * d.H;
  double total = 0.0;
  int64_t count = 0;
  if (rows == 0 || W == 0) return T(0);
#pragma omp parallel reduction(+ : total, count)
  {
    std::vector<T> buf(static_cast<size_t>(C * W)), m(W), s(W);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      load_row<S, T>(logits, src, r / d.H, r % d.H, buf.data());
      softmax_row<T>(buf.data(), C, W, m.data(), s.data());
      total += nl_row_terms<T>(buf.data(), C * W, threshold, count);
    }
  }
  return static_cast<T>(total / static_cast<double>(std::max<int64_t>(count, 1)));
}

template <typename S, typename T>
void nl_backward(T grad, const S* logits, const Dims4& d, T threshold, T* dx, const Dims4& dd) {
  const RowSource<T> src(d, Resize{false, d.H, d.W, false});
  const int64_t C = d.C, W = d.W, rows = d.B * d.H;
  if (rows == 0 || W == 0) return;
  // The mask count normalises every gradient, so it takes a pass of its own.
  int64_t count = 0;
#pragma omp parallel reduction(+ : count)
  {
    std::vector<T> buf(static_cast<size_t>(C * W)), m(W), s(W);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      load_row<S, T>(logits, src, r / d.H, r % d.H, buf.data());
      softmax_row<T>(buf.data(), C, W, m.data(), s.data());
      int64_t cnt = 0;
#pragma omp simd reduction(+ : cnt)
      for (int64_t q = 0; q < C * W; ++q) cnt += nl_masked(buf[q], threshold) ? 1 : 0;
      count += cnt;
    }
  }
  const T scale = static_cast<T>(static_cast<double>(grad) / static_cast<double>(std::max<int64_t>(count, 1)));
#pragma omp parallel
  {
    std::vector<T> buf(static_cast<size_t>(C * W)), g(static_cast<size_t>(C * W)), m(W), s(W), dot(W);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = r / d.H, i = r % d.H;
      load_row<S, T>(logits, src, b, i, buf.data());
      softmax_row<T>(buf.data(), C, W, m.data(), s.data());
      nl_row_grads<T>(buf.data(), g.data(), C * W, threshold);
      softmax_backward_row<T>(buf.data(), g.data(), scale, dot.data(), C, W, dx + b * dd.sB + i * dd.sH, dd.sC,
                              dd.sW);
    }
  }
}

#define RIPU_INSTANTIATE_LOSSES(S, T)                                                                             \
  template T lcr_forward<S, T>(const S*, const Dims4&, const int64_t*, LcrKind, int, int64_t);                    \
  template void lcr_backward<S, T>(T, const S*, const Dims4&, const int64_t*, LcrKind, int, int64_t, T*,          \
                                   const Dims4&);                                                                 \
  template T nl_forward<S, T>(const S*, const Dims4&, T);                                                         \
  template void nl_backward<S, T>(T, const S*, const Dims4&, T, T*, const Dims4&);

RIPU_INSTANTIATE_LOSSES(float, float)
RIPU_INSTANTIATE_LOSSES(double, double)
RIPU_INSTANTIATE_LOSSES(half_t, float)
RIPU_INSTANTIATE_LOSSES(bfloat16_t, float)

}  // namespace cpu
}  // namespace ripu
