// CPU launcher for select_regions (torch-free): the exact greedy selection of docs/ops.md, "select_regions".
//
// Per image (images in parallel): gather the available pixels (not active, score not NaN and not -inf); take the
// best `chunk` of them in (score desc, flat index asc) order with nth_element, sort only that chunk, and scan it,
// skipping pixels made active by earlier picks. Since `active` only grows, the first surviving candidate in that
// order is exactly the naive loop's choice. When a chunk runs out, the next (twice larger) chunk of the remainder is
// taken the same way. On large maps a threshold estimated from a strided sample first restricts the gather to about
// 2 x chunk pixels (all pixels >= the threshold precede all others in the order, so this is exact; the rest is
// gathered only if that head runs out). Cost: one pass over the map, sorting O(chunk) candidates, and the window
// marks per pick; no full-map pass per pick.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "cpu/ripu_cpu.h"
#include "ripu/window_math.h"

namespace ripu {
namespace cpu {

namespace {

void mark_window(bool* map, int64_t H, int64_t W, int64_t i, int64_t j, int64_t r) {
  const int64_t r0 = window_lo(i, r), r1 = window_hi(i, r, H), c0 = window_lo(j, r), c1 = window_hi(j, r, W);
  for (int64_t y = r0; y < r1; ++y) std::fill(map + y * W + c0, map + y * W + c1, true);
}

template <typename T>
int64_t select_image(const T* s, int64_t H, int64_t W, int64_t n, int64_t radius, int64_t mask_radius,
                     int64_t* centers, bool* active, bool* selected) {
  const int64_t HW = H * W;
  if (n <= 0 || HW == 0) return 0;
  const auto available = [&](int64_t p) {
    const T v = s[p];
    return !active[p] && !std::isnan(v) && v != -std::numeric_limits<T>::infinity();
  };
  const auto before = [s](int64_t a, int64_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
  int64_t got = 0;
  const int64_t first_chunk = std::max<int64_t>(4096, 16 * n);
  // Scan `cand` in (score desc, index asc) order, chunk by chunk, picking the pixels still not active.
  const auto scan = [&](std::vector<int64_t>& cand) {
    const int64_t total = static_cast<int64_t>(cand.size());
    int64_t begin = 0, chunk = first_chunk;
    while (got < n && begin < total) {
      const int64_t end = std::min(total, begin + chunk);
      if (end < total) std::nth_element(cand.begin() + begin, cand.begin() + end, cand.end(), before);
      std::sort(cand.begin() + begin, cand.begin() + end, before);
      for (int64_t q = begin; q < end && got < n; ++q) {
        const int64_t p = cand[q];
        if (active[p]) continue;
        const int64_t i = p / W, j = p % W;
        centers[2 * got] = i;
        centers[2 * got + 1] = j;
        ++got;
        mark_window(active, H, W, i, j, mask_radius);
        mark_window(selected, H, W, i, j, radius);
      }
      begin = end;
      chunk *= 2;
    }
  };
  // A threshold that about 2 x first_chunk pixels reach, from a strided sample: the pixels >= it (the head) come
  // before all others in the order, so the head is scanned first and the rest is gathered only if it runs out.
  bool split = false;
  T threshold = T(0);
  if (HW > 8 * first_chunk) {
    std::vector<T> sample;
    const int64_t stride = std::max<int64_t>(1, HW / 65536);
    for (int64_t p = 0; p < HW; p += stride) {
      const T v = s[p];
      if (!std::isnan(v) && v != -std::numeric_limits<T>::infinity()) sample.push_back(v);
    }
    if (!sample.empty()) {
      const size_t rank = std::min(sample.size() - 1, static_cast<size_t>(static_cast<double>(sample.size()) *
                                                                          2.0 * first_chunk / static_cast<double>(HW)));
      std::nth_element(sample.begin(), sample.begin() + rank, sample.end(), std::greater<T>());
      threshold = sample[rank];
      split = true;
    }
  }
  std::vector<int64_t> cand;
  for (int64_t p = 0; p < HW; ++p)
    if (available(p) && (!split || s[p] >= threshold)) cand.push_back(p);
  scan(cand);
  if (got < n && split) {
    cand.clear();
    for (int64_t p = 0; p < HW; ++p)
      if (available(p) && s[p] < threshold) cand.push_back(p);
    scan(cand);
  }
  return got;
}

}  // namespace

template <typename T>
void select_regions(const T* score, int64_t B, int64_t H, int64_t W, const int64_t* n, int64_t n_max,
                    int64_t radius, int64_t mask_radius, const bool* active_in, int64_t* centers, int64_t* counts,
                    bool* active_out, bool* selected) {
  const int64_t HW = H * W;
  // Windows larger than the image are the whole image.
  radius = std::min<int64_t>(radius, std::max<int64_t>(H, W));
  mask_radius = std::min<int64_t>(mask_radius, std::max<int64_t>(H, W));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < B; ++b) {
    bool* act = active_out + b * HW;
    bool* sel = selected + b * HW;
    int64_t* cen = centers + b * n_max * 2;
    if (active_in) std::copy(active_in + b * HW, active_in + (b + 1) * HW, act);
    else std::fill(act, act + HW, false);
    std::fill(sel, sel + HW, false);
    std::fill(cen, cen + n_max * 2, int64_t(-1));
    const int64_t want = std::min(n[b], n_max);
    counts[b] = select_image<T>(score + b * HW, H, W, want, radius, mask_radius, cen, act, sel);
  }
}

template void select_regions<float>(const float*, int64_t, int64_t, int64_t, const int64_t*, int64_t, int64_t,
                                    int64_t, const bool*, int64_t*, int64_t*, bool*, bool*);
template void select_regions<double>(const double*, int64_t, int64_t, int64_t, const int64_t*, int64_t, int64_t,
                                     int64_t, const bool*, int64_t*, int64_t*, bool*, bool*);

}  // namespace cpu
}  // namespace ripu
