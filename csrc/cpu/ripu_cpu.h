// Torch-free CPU launchers of the ripu kernels: raw pointers, sizes and element strides; OpenMP inside.
//
// Template parameters: S = stored logit type (float, double, ripu::half_t, ripu::bfloat16_t), T = compute and
// output type (float for float/half/bfloat16 logits, double for double). Explicit instantiations for the four
// (S, T) pairs live in the .cpp files. Output maps are contiguous (B, H, W) unless a stride argument says otherwise.
#pragma once

#include <cstdint>

#include "ripu/common.h"
#include "ripu/loss_math.h"

namespace ripu {
namespace cpu {

// Tensor geometry and the optional resize (ripu/common.h).
using ripu::Dims4;
using ripu::Resize;

// Threads the launchers use (OpenMP's current maximum).
int num_threads();

// entropy: (B, H, W) contiguous.
template <typename S, typename T>
void pixel_entropy(const S* logits, const Dims4& d, T* entropy);

// Region (pixel_mode = false: score = P * U) or pixel (pixel_mode = true: score = P * e, uncertainty = e) scores
// over the clipped (2k+1)^2 window. Outputs (B, H2, W2) contiguous; no other memory than O(C x W2) per thread
// (per-pixel entropy and labels are parked in the output maps between passes).
template <typename S, typename T>
void scores(const S* logits, const Dims4& d, const Resize& rs, int64_t k, bool pixel_mode, T* score, T* impurity,
            T* uncertainty);

// Exact greedy selection (docs/ops.md, "select_regions"). score: (B, H, W) contiguous; n: (B,) picks per image, clamped to [0, n_max];
// active_in: (B, H, W) bool or nullptr (not modified); centers: (B, n_max, 2); counts: (B,); active_out and
// selected: (B, H, W). All outputs are fully written.
template <typename T>
void select_regions(const T* score, int64_t B, int64_t H, int64_t W, const int64_t* n, int64_t n_max,
                    int64_t radius, int64_t mask_radius, const bool* active_in, int64_t* centers, int64_t* counts,
                    bool* active_out, bool* selected);

// Local consistency loss (docs/ops.md, "local_consistency_loss"). labels: (B, H, W) int64 contiguous. Returns the loss.
template <typename S, typename T>
T lcr_forward(const S* logits, const Dims4& d, const int64_t* labels, LcrKind kind, int neighbors,
              int64_t ignore_index);

// Gradient of the LCR loss w.r.t. the logits times `grad`, written through the strides of `dx_strides`
// (the sB..sW fields; B..W as in d).
template <typename S, typename T>
void lcr_backward(T grad, const S* logits, const Dims4& d, const int64_t* labels, LcrKind kind, int neighbors,
                  int64_t ignore_index, T* dx, const Dims4& dx_strides);

// Negative learning loss. Returns the loss.
template <typename S, typename T>
T nl_forward(const S* logits, const Dims4& d, T threshold);

template <typename S, typename T>
void nl_backward(T grad, const S* logits, const Dims4& d, T threshold, T* dx, const Dims4& dx_strides);

}  // namespace cpu
}  // namespace ripu
