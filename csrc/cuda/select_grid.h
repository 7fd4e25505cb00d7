// Launch geometry of select.cu, plain C++ so the C++ tests check it on any machine (tests/cpp/test_cuda_host.cpp).
//
// The histogram kernels put the pixels of one image along gridDim.x and the images along gridDim.y, whose CUDA limit
// is 65535: the grid is capped there and each block loops over the images b = blockIdx.y, blockIdx.y + gridDim.y,
// ... < B. The one-block-per-image kernels (thresholds, scan) put the images along gridDim.x (limit 2^31 - 1, and a
// call holds fewer than 2^31 pixels).
#pragma once

#include <cstdint>

namespace ripu {
namespace gpu {

constexpr int64_t kMaxGridY = 65535;

struct SelectGrid {
  unsigned x, y;
};

// Blocks of `threads` threads, each covering about 16 pixels per thread of an image of HW pixels (at most 1024
// blocks per image along x); images along y, capped at kMaxGridY.
inline SelectGrid hist_grid(int64_t B, int64_t HW, int threads) {
  int64_t bx = (HW + threads * 16 - 1) / (threads * 16);
  bx = bx < 1 ? 1 : (bx > 1024 ? 1024 : bx);
  int64_t by = B < 1 ? 1 : (B > kMaxGridY ? kMaxGridY : B);
  return SelectGrid{static_cast<unsigned>(bx), static_cast<unsigned>(by)};
}

inline unsigned per_image_blocks(int64_t B) { return static_cast<unsigned>(B < 1 ? 1 : B); }

}  // namespace gpu
}  // namespace ripu
