// CPU launchers for the two losses and their backward passes (torch-free).
//
// LCR: row bands in parallel; softmax rows are computed once per band into a small ring (3 rows forward, 5 rows
// backward) and the box/cross mean is read from it with replicate padding. The backward gathers, for every pixel r,
// d loss / d p_r = [r boundary] dg/dp (p_r, mean_r) + (1/K) sum over the (q, offset) pairs whose clamped neighbour is r
// of [q boundary] dg/dmean (p_q, mean_q), then applies the softmax Jacobian. NL: rows in parallel, per-pixel terms.
// Sums are accumulated in double. Extra memory O(C x W) per thread.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ripu_cpu.h"
#include "cpu/rows.h"
#include "ripu/loss_math.h"

namespace ripu {
namespace cpu {

namespace {

// buf[c * W + j] (logits) -> softmax probabilities in place; m and s are W-long scratch.
template <typename T>
void softmax_row(T* buf, int64_t C, int64_t W, T* m, T* s) {
  for (int64_t j = 0; j < W; ++j) {
    m[j] = buf[j];
    s[j] = T(0);
  }
  for (int64_t c = 1; c < C; ++c) {
    const T* xc = buf + c * W;
    for (int64_t j = 0; j < W; ++j) m[j] = xc[j] > m[j] ? xc[j] : m[j];
  }
  for (int64_t c = 0; c < C; ++c) {
    T* xc = buf + c * W;
    for (int64_t j = 0; j < W; ++j) {
      xc[j] = rexp(xc[j] - m[j]);
      s[j] += xc[j];
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    T* xc = buf + c * W;
    for (int64_t j = 0; j < W; ++j) xc[j] = xc[j] / s[j];
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
  std::vector<T> m, s, mean;
  std::vector<char> bnd;

  LcrWorker(const S* x_, const RowSource<T>& src_, const int64_t* labels_, LcrKind kind_, int neighbors_,
            int64_t ignore_, int p_slots, int ab_slots)
      : x(x_), src(src_), labels(labels_), kind(kind_), neighbors(neighbors_), ignore(ignore_), C(src_.d.C),
        H(src_.d.H), W(src_.d.W), K(neighbors_ == 8 ? 9 : 5), off(neighbors_ == 8 ? kOff8 : kOff4),
        p(p_slots, src_.d.C * src_.d.W), ab(ab_slots, 2 * src_.d.C * src_.d.W), m(W), s(W), mean(C),
        bnd(static_cast<size_t>(W)) {}

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

  const T* grads(int64_t b, int64_t q) {
    const int64_t key = b * H + q;
    T* buf = ab.slot(key);
    if (ab.has(key)) return buf;
    std::fill(buf, buf + 2 * C * W, T(0));
    if (boundary_row(b, q)) {
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

  // dx of row r of image b (scale = grad / number of boundary pixels).
  void backward_row(int64_t b, int64_t r, T scale, T* dx, const Dims4& dd) {
    const T* pr = prob(b, r);
    const T* abq[3] = {nullptr, nullptr, nullptr};  // rows r-1, r, r+1
    for (int dq = -1; dq <= 1; ++dq)
      if (r + dq >= 0 && r + dq < H) abq[dq + 1] = grads(b, r + dq);
    pr = prob(b, r);  // the ring may have been refilled; re-fetch (cached, cheap)
    std::vector<T>& g = mean;  // reuse as the per-pixel gradient buffer
    const T invK = T(1) / static_cast<T>(K);
    for (int64_t j = 0; j < W; ++j) {
      for (int64_t c = 0; c < C; ++c) g[c] = abq[1][c * W + j];
      for (int o = 0; o < K; ++o) {
        for (int dq = -1; dq <= 1; ++dq) {
          const int64_t qi = r + dq;
          if (qi < 0 || qi >= H || clamp_index(qi + off[o][0], H) != r) continue;
          const T* bm = abq[dq + 1] + C * W;
          for (int dj = -1; dj <= 1; ++dj) {
            const int64_t qj = j + dj;
            if (qj < 0 || qj >= W || clamp_index(qj + off[o][1], W) != j) continue;
            for (int64_t c = 0; c < C; ++c) g[c] += invK * bm[c * W + qj];
          }
        }
      }
      T dot = T(0);
      for (int64_t c = 0; c < C; ++c) {
        g[c] *= scale;
        dot += pr[c * W + j] * g[c];
      }
      T* o = dx + b * dd.sB + r * dd.sH + j * dd.sW;
      for (int64_t c = 0; c < C; ++c) o[c * dd.sC] = softmax_backward(pr[c * W + j], g[c], dot);
    }
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
      for (int64_t q = 0; q < C * W; ++q) {
        const T p = buf[q];
        if (nl_masked(p, threshold)) {
          total += static_cast<double>(nl_term(p));
          ++count;
        }
      }
    }
  }
  return static_cast<T>(total / static_cast<double>(std::max<int64_t>(count, 1)));
}

template <typename S, typename T>
void nl_backward(T grad, const S* logits, const Dims4& d, T threshold, T* dx, const Dims4& dd) {
  const RowSource<T> src(d, Resize{false, d.H, d.W, false});
  const int64_t C = d.C, W = d.W, rows = d.B * d.H;
  if (rows == 0 || W == 0) return;
  int64_t count = 0;
#pragma omp parallel reduction(+ : count)
  {
    std::vector<T> buf(static_cast<size_t>(C * W)), m(W), s(W);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      load_row<S, T>(logits, src, r / d.H, r % d.H, buf.data());
      softmax_row<T>(buf.data(), C, W, m.data(), s.data());
      for (int64_t q = 0; q < C * W; ++q) count += nl_masked(buf[q], threshold);
    }
  }
  const T scale = static_cast<T>(static_cast<double>(grad) / static_cast<double>(std::max<int64_t>(count, 1)));
#pragma omp parallel
  {
    std::vector<T> buf(static_cast<size_t>(C * W)), m(W), s(W), dot(W);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = r / d.H, i = r % d.H;
      load_row<S, T>(logits, src, b, i, buf.data());
      softmax_row<T>(buf.data(), C, W, m.data(), s.data());
      std::fill(dot.begin(), dot.end(), T(0));
      // g_c = scale * mask * d term / dp, kept in m-sized passes: first the dot products, then dx
      for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < W; ++j) {
          const T p = buf[c * W + j];
          if (nl_masked(p, threshold)) dot[j] += p * (scale * nl_term_grad(p));
        }
      for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < W; ++j) {
          const T p = buf[c * W + j];
          const T g = nl_masked(p, threshold) ? scale * nl_term_grad(p) : T(0);
          dx[b * dd.sB + c * dd.sC + i * dd.sH + j * dd.sW] = softmax_backward(p, g, dot[j]);
        }
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
