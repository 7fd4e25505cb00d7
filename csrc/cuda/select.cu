// Exact greedy selection on the GPU, batched over images, with no host synchronisation (see csrc/cuda/README.md).
//
// Keys: desc(score) maps a score to an unsigned integer whose ascending order is the score's descending order
// (-0.0 and +0.0 map alike; NaN, -inf and active pixels are never keys). The greedy pick order is (key asc, flat
// index asc).
//
// 1. Candidate threshold per image (two 4096-bin histogram rounds over the top 24 key bits): the smallest key prefix
//    holding at least M = n * |mask window| available pixels. Every candidate the greedy scan consumes before its
//    n-th pick is a pick or lies in the mask window of an earlier pick, so the scan never needs a pixel beyond the
//    first M (and when fewer than M are available, all of them are candidates).
// 2. Stable compaction of the candidates (cub::DeviceSelect::If, index order kept), then a stable segmented radix
//    sort by key: (key asc, index asc) per image.
// 3. One block per image scans its sorted candidates in chunks: the block drops those already active, one warp
//    resolves the survivors 32 at a time with ballots (a pick kills the later lanes within Chebyshev distance
//    mask_radius), writes the centres and marks the windows, until n picks or no candidates are left.
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>

#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <cub/device/device_select.cuh>

#include "cuda/cuda_utils.cuh"
#include "cuda/ripu_cuda.h"
#include "cuda/select_grid.h"

namespace ripu {
namespace gpu {
namespace {

constexpr int kBins = 4096;
constexpr int kHistThreads = 256;
constexpr int kThreshThreads = 1024;
constexpr int kScanThreads = 256;

template <typename T>
struct KeyOf;
template <>
struct KeyOf<float> {
  using type = uint32_t;
};
template <>
struct KeyOf<double> {
  using type = uint64_t;
};

__device__ __forceinline__ uint32_t desc_key(float s) {
  uint32_t u = __float_as_uint(s);
  if (s == 0.0f) u = 0u;  // -0.0 == +0.0
  const uint32_t ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~ord;
}
__device__ __forceinline__ uint64_t desc_key(double s) {
  uint64_t u = static_cast<uint64_t>(__double_as_longlong(s));
  if (s == 0.0) u = 0ull;
  const uint64_t ord = (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
  return ~ord;
}
__device__ __forceinline__ uint32_t top32(uint32_t k) { return k; }
__device__ __forceinline__ uint32_t top32(uint64_t k) { return static_cast<uint32_t>(k >> 32); }

template <typename T>
__device__ __forceinline__ bool available(T s, const bool* active_in, int64_t g) {
  return !(s != s) && s != -static_cast<T>(INFINITY) && !(active_in && active_in[g]);
}

// Per-image state of the threshold search.
struct Thresh {
  int64_t want;      // M
  uint32_t t1;       // level-1 bin (top 12 key bits) holding the M-th candidate
  uint32_t state;    // 0: decided, 1: needs level 2
  uint64_t below1;   // candidates in bins < t1
  uint64_t limit;    // candidates: top32(key) < limit (0: none, 2^32: all)
  uint64_t count;    // number of candidates
};

// level 1: bins of top32 >> 20 over available pixels; level 2: bins of (top32 >> 8) & 0xfff among those in bin t1.
// Blocks along x share the pixels of one image; images go along y, looping when B exceeds the grid's y extent
// (65535: select_grid.h).
template <typename T, int Level>
__global__ void __launch_bounds__(kHistThreads)
    hist_kernel(const T* score, const bool* active_in, int64_t B, int64_t HW, const Thresh* th, uint32_t* hist) {
  __shared__ uint32_t sh[kBins];
  const int lane = threadIdx.x & 31;
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    if (Level == 2 && th[b].state != 1) continue;  // uniform over the block
    const uint32_t t1 = Level == 2 ? th[b].t1 : 0u;
    __syncthreads();  // the previous image's flush has read sh
    for (int x = threadIdx.x; x < kBins; x += blockDim.x) sh[x] = 0;
    __syncthreads();
    const T* s_img = score + b * HW;
    // Scores crowd into few bins (a handful of exponents): lanes with the same bin add once (warp aggregation), so
    // shared-memory atomics do not serialise 32-fold. The loop bound is uniform across the warp for __match_any_sync.
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t base = blockIdx.x * static_cast<int64_t>(blockDim.x); base < HW; base += stride) {
      const int64_t f = base + threadIdx.x;
      int bin = -1;
      if (f < HW) {
        const T s = s_img[f];
        if (available(s, active_in, b * HW + f)) {
          const uint32_t t = top32(desc_key(s));
          if (Level == 1) bin = static_cast<int>(t >> 20);
          else if ((t >> 20) == t1) bin = static_cast<int>((t >> 8) & 0xfffu);
        }
      }
      const unsigned peers = __match_any_sync(0xffffffffu, bin);
      if (bin >= 0 && lane == __ffs(peers) - 1) atomicAdd(&sh[bin], static_cast<uint32_t>(__popc(peers)));
    }
    __syncthreads();
    uint32_t* g = hist + b * kBins;
    for (int x = threadIdx.x; x < kBins; x += blockDim.x)
      if (sh[x]) atomicAdd(&g[x], sh[x]);
  }
}

// One block per image: find the bin where the running count reaches `want`.
template <int Level>
__global__ void __launch_bounds__(kThreshThreads)
    thresh_kernel(const uint32_t* hist, const int64_t* n, int64_t n_max, int64_t win, Thresh* th) {
  using Scan = cub::BlockScan<uint64_t, kThreshThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ uint64_t s_total;
  __shared__ uint32_t s_bin;
  constexpr int kPer = kBins / kThreshThreads;
  const int64_t b = blockIdx.x;
  const uint32_t* h = hist + b * kBins;
  if (Level == 2 && th[b].state != 1) return;
  uint64_t v[kPer];
  uint64_t local = 0;
  for (int q = 0; q < kPer; ++q) {
    v[q] = h[threadIdx.x * kPer + q];
    local += v[q];
  }
  uint64_t excl = 0, total = 0;
  Scan(tmp).ExclusiveSum(local, excl, total);
  if (threadIdx.x == 0) {
    s_total = total;
    s_bin = 0xffffffffu;
  }
  __syncthreads();
  uint64_t base = 0, want = 0;
  if (Level == 1) {
    int64_t nb = n[b];
    nb = nb < 0 ? 0 : (nb > n_max ? n_max : nb);
    // M = n * win, saturating (anything >= the available count means "all")
    const uint64_t m = (nb > 0 && static_cast<uint64_t>(nb) > s_total / static_cast<uint64_t>(win) + 1)
                           ? s_total + 1
                           : static_cast<uint64_t>(nb) * static_cast<uint64_t>(win);
    want = m;
    if (want == 0 || want >= s_total) {  // decided: nothing, or every available pixel
      if (threadIdx.x == 0) {
        th[b].want = static_cast<int64_t>(want);
        th[b].state = 0;
        th[b].limit = want == 0 ? 0ull : (1ull << 32);
        th[b].count = want == 0 ? 0ull : s_total;
      }
      return;
    }
  } else {
    base = th[b].below1;
    want = static_cast<uint64_t>(th[b].want);
  }
  // smallest bin whose inclusive running count (plus base) reaches want
  uint64_t run = base + excl;
  for (int q = 0; q < kPer; ++q) {
    const uint64_t before = run;
    run += v[q];
    if (before < want && run >= want) {
      s_bin = threadIdx.x * kPer + q;  // unique: the running count crosses want once
      if (Level == 1) {
        th[b].want = static_cast<int64_t>(want);
        th[b].t1 = s_bin;
        th[b].below1 = before;
        th[b].state = 1;
      } else {
        const uint64_t top = (static_cast<uint64_t>(th[b].t1) << 20) | (static_cast<uint64_t>(threadIdx.x * kPer + q) << 8) | 0xffull;
        th[b].limit = top + 1;
        th[b].count = run;
        th[b].state = 0;
      }
    }
  }
}

__global__ void offsets_kernel(const Thresh* th, int64_t B, int32_t* offsets) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    int64_t acc = 0;
    offsets[0] = 0;
    for (int64_t b = 0; b < B; ++b) {
      acc += static_cast<int64_t>(th[b].count);
      offsets[b + 1] = static_cast<int32_t>(acc);
    }
  }
}

template <typename T>
struct CandidatePred {
  const T* score;
  const bool* active_in;
  const Thresh* th;
  int64_t HW;
  __device__ __forceinline__ bool operator()(int32_t g) const {
    const T s = score[g];
    if (!available(s, active_in, g)) return false;
    return static_cast<uint64_t>(top32(desc_key(s))) < th[g / HW].limit;
  }
};

// keys[s] = desc(score) of candidate s; idx[s] becomes its flat index inside its image.
template <typename T>
__global__ void keys_kernel(const T* score, const int32_t* offsets, int64_t B, int64_t HW,
                            typename KeyOf<T>::type* keys, int32_t* idx) {
  const int64_t total = offsets[B];
  for (int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; s < total;
       s += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t g = idx[s];
    keys[s] = desc_key(score[g]);
    idx[s] = static_cast<int32_t>(g % HW);
  }
}

__global__ void __launch_bounds__(kScanThreads)
    scan_kernel(const int32_t* order, const int32_t* offsets, const int64_t* n, int64_t n_max, int64_t H, int64_t W,
                int64_t radius, int64_t mask_radius, bool* active, bool* selected, int64_t* centers,
                int64_t* counts) {
  __shared__ int32_t sur[kScanThreads];
  __shared__ int32_t warp_tot[kScanThreads / 32];
  __shared__ int32_t s_nsur;
  __shared__ int64_t s_cnt;
  const int64_t b = blockIdx.x;
  const int64_t HW = H * W;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const unsigned lt = (1u << lane) - 1u;
  int64_t want = n[b];
  want = want < 0 ? 0 : (want > n_max ? n_max : want);
  const int32_t beg = offsets[b], end = offsets[b + 1];
  volatile bool* A = active + b * HW;
  volatile bool* Sel = selected + b * HW;
  int64_t* cen = centers + b * n_max * 2;
  const int64_t m = mask_radius, r = radius;
  if (threadIdx.x == 0) s_cnt = 0;
  __syncthreads();

  for (int32_t base = beg; base < end; base += kScanThreads) {
    if (s_cnt >= want) break;  // uniform: read after a barrier
    // 1. drop candidates made active by earlier picks; compact the survivors in order.
    const int32_t s = base + static_cast<int32_t>(threadIdx.x);
    int32_t f = -1;
    bool alive = false;
    if (s < end) {
      f = order[s];
      alive = !A[f];
    }
    const unsigned bal = __ballot_sync(0xffffffffu, alive);
    if (lane == 0) warp_tot[warp] = __popc(bal);
    __syncthreads();
    if (threadIdx.x == 0) {
      int32_t acc = 0;
      for (int w = 0; w < kScanThreads / 32; ++w) {
        const int32_t t = warp_tot[w];
        warp_tot[w] = acc;
        acc += t;
      }
      s_nsur = acc;
    }
    __syncthreads();
    if (alive) sur[warp_tot[warp] + __popc(bal & lt)] = f;
    __syncthreads();

    // 2. warp 0 resolves the survivors in order, 32 at a time.
    if (warp == 0) {
      int64_t c = s_cnt;
      const int32_t nsur = s_nsur;
      for (int32_t q0 = 0; q0 < nsur && c < want; q0 += 32) {
        const int32_t q = q0 + lane;
        const bool valid = q < nsur;
        const int32_t fq = valid ? sur[q] : 0;
        const int64_t i = fq / W, j = fq - (fq / W) * W;
        unsigned live = __ballot_sync(0xffffffffu, valid && !A[fq]);  // earlier sub-chunks' picks
        unsigned picks = 0;
        while (live && c + __popc(picks) < want) {
          const int p = __ffs(live) - 1;
          picks |= 1u << p;
          const int64_t pi = __shfl_sync(0xffffffffu, i, p), pj = __shfl_sync(0xffffffffu, j, p);
          const int64_t di = i > pi ? i - pi : pi - i, dj = j > pj ? j - pj : pj - j;
          live &= ~__ballot_sync(0xffffffffu, valid && di <= m && dj <= m);  // includes p itself
        }
        if ((picks >> lane) & 1u) {
          const int64_t at = c + __popc(picks & lt);
          cen[at * 2] = i;
          cen[at * 2 + 1] = j;
        }
        // mark the mask windows (active) and the label windows (selected) of this sub-chunk's picks
        unsigned todo = picks;
        while (todo) {
          const int p = __ffs(todo) - 1;
          todo &= todo - 1;
          const int64_t pi = __shfl_sync(0xffffffffu, i, p), pj = __shfl_sync(0xffffffffu, j, p);
          {
            const int64_t r0 = pi - m > 0 ? pi - m : 0, r1 = pi + m + 1 < H ? pi + m + 1 : H;
            const int64_t c0 = pj - m > 0 ? pj - m : 0, c1 = pj + m + 1 < W ? pj + m + 1 : W;
            const int64_t w = c1 - c0, cells = (r1 - r0) * w;
            for (int64_t t = lane; t < cells; t += 32) A[(r0 + t / w) * W + c0 + t % w] = true;
          }
          {
            const int64_t r0 = pi - r > 0 ? pi - r : 0, r1 = pi + r + 1 < H ? pi + r + 1 : H;
            const int64_t c0 = pj - r > 0 ? pj - r : 0, c1 = pj + r + 1 < W ? pj + r + 1 : W;
            const int64_t w = c1 - c0, cells = (r1 - r0) * w;
            for (int64_t t = lane; t < cells; t += 32) Sel[(r0 + t / w) * W + c0 + t % w] = true;
          }
        }
        c += __popc(picks);
        __syncwarp();  // the marks are visible to the warp's next sub-chunk
      }
      if (lane == 0) s_cnt = c;
    }
    __syncthreads();  // the marks and the count are visible to the block's next chunk
  }
  if (threadIdx.x == 0) counts[b] = s_cnt;
}

}  // namespace

template <typename T>
cudaError_t select_regions(const T* score, int64_t B, int64_t H, int64_t W, const int64_t* n, int64_t n_max,
                           int64_t radius, int64_t mask_radius, const bool* active_in, int64_t* centers,
                           int64_t* counts, bool* active_out, bool* selected, Workspace& ws, cudaStream_t stream) {
  using Key = typename KeyOf<T>::type;
  const int64_t HW = H * W, total = B * HW;
  if (B == 0) return cudaSuccess;
  if (n_max > 0) RIPU_TRY(cudaMemsetAsync(centers, 0xff, sizeof(int64_t) * B * n_max * 2, stream));  // -1
  if (total > 0) {
    if (active_in)
      RIPU_TRY(cudaMemcpyAsync(active_out, active_in, sizeof(bool) * total, cudaMemcpyDeviceToDevice, stream));
    else
      RIPU_TRY(cudaMemsetAsync(active_out, 0, sizeof(bool) * total, stream));
    RIPU_TRY(cudaMemsetAsync(selected, 0, sizeof(bool) * total, stream));
  }
  if (total == 0 || n_max == 0) return cudaMemsetAsync(counts, 0, sizeof(int64_t) * B, stream);

  const int64_t mw = 2 * mask_radius + 1;
  const int64_t win = (mw < H ? mw : H) * (mw < W ? mw : W);

  // 1. thresholds
  uint32_t* hist = static_cast<uint32_t*>(ws.get(sizeof(uint32_t) * kBins * B * 2));
  Thresh* th = static_cast<Thresh*>(ws.get(sizeof(Thresh) * B));
  int32_t* offsets = static_cast<int32_t*>(ws.get(sizeof(int32_t) * (B + 1)));
  RIPU_TRY(cudaMemsetAsync(hist, 0, sizeof(uint32_t) * kBins * B * 2, stream));
  const SelectGrid hg = hist_grid(B, HW, kHistThreads);
  const dim3 hgrid(hg.x, hg.y);
  hist_kernel<T, 1><<<hgrid, kHistThreads, 0, stream>>>(score, active_in, B, HW, th, hist);
  RIPU_TRY(cudaGetLastError());
  const unsigned per_image = per_image_blocks(B);  // gridDim.x: up to 2^31 - 1 images
  thresh_kernel<1><<<per_image, kThreshThreads, 0, stream>>>(hist, n, n_max, win, th);
  RIPU_TRY(cudaGetLastError());
  hist_kernel<T, 2><<<hgrid, kHistThreads, 0, stream>>>(score, active_in, B, HW, th, hist + kBins * B);
  RIPU_TRY(cudaGetLastError());
  thresh_kernel<2><<<per_image, kThreshThreads, 0, stream>>>(hist + kBins * B, n, n_max, win, th);
  RIPU_TRY(cudaGetLastError());
  offsets_kernel<<<1, 32, 0, stream>>>(th, B, offsets);
  RIPU_TRY(cudaGetLastError());

  // 2. stable compaction (flat indices over the batch, in order) and a stable segmented sort by key.
  int32_t* cand = static_cast<int32_t*>(ws.get(sizeof(int32_t) * total));
  int32_t* cand_sorted = static_cast<int32_t*>(ws.get(sizeof(int32_t) * total));
  Key* keys = static_cast<Key*>(ws.get(sizeof(Key) * total));
  Key* keys_sorted = static_cast<Key*>(ws.get(sizeof(Key) * total));
  int64_t* nsel = static_cast<int64_t*>(ws.get(sizeof(int64_t)));
  const CandidatePred<T> pred{score, active_in, th, HW};
  thrust::counting_iterator<int32_t> first(0);
  size_t sel_bytes = 0, sort_bytes = 0;
  RIPU_TRY(cub::DeviceSelect::If(nullptr, sel_bytes, first, cand, nsel, total, pred, stream));
  // DoubleBuffer form: the sort ping-pongs between our two buffers instead of allocating two more of `total`.
  cub::DoubleBuffer<Key> dkeys(keys, keys_sorted);
  cub::DoubleBuffer<int32_t> dvals(cand, cand_sorted);
  RIPU_TRY(cub::DeviceSegmentedRadixSort::SortPairs(nullptr, sort_bytes, dkeys, dvals, static_cast<int>(total),
                                                    static_cast<int>(B), offsets, offsets + 1, 0,
                                                    static_cast<int>(sizeof(Key) * 8), stream));
  void* tmp = ws.get(sel_bytes > sort_bytes ? sel_bytes : sort_bytes);
  RIPU_TRY(cub::DeviceSelect::If(tmp, sel_bytes, first, cand, nsel, total, pred, stream));
  keys_kernel<T><<<grid_for(total, 256, 4096), 256, 0, stream>>>(score, offsets, B, HW, keys, cand);
  RIPU_TRY(cudaGetLastError());
  RIPU_TRY(cub::DeviceSegmentedRadixSort::SortPairs(tmp, sort_bytes, dkeys, dvals, static_cast<int>(total),
                                                    static_cast<int>(B), offsets, offsets + 1, 0,
                                                    static_cast<int>(sizeof(Key) * 8), stream));

  // 3. suppression scan, one block per image (the sorted indices are in whichever buffer the sort ended on; the
  // selector is set on the host by the sort's dispatch)
  scan_kernel<<<per_image, kScanThreads, 0, stream>>>(dvals.Current(), offsets, n, n_max, H, W, radius, mask_radius,
                                                      active_out, selected, centers, counts);
  return cudaGetLastError();
}

template cudaError_t select_regions<float>(const float*, int64_t, int64_t, int64_t, const int64_t*, int64_t, int64_t,
                                           int64_t, const bool*, int64_t*, int64_t*, bool*, bool*, Workspace&,
                                           cudaStream_t);
template cudaError_t select_regions<double>(const double*, int64_t, int64_t, int64_t, const int64_t*, int64_t,
                                            int64_t, int64_t, const bool*, int64_t*, int64_t*, bool*, bool*,
                                            Workspace&, cudaStream_t);

}  // namespace gpu
}  // namespace ripu
