// Torch-free CUDA launchers of the ripu kernels: raw device pointers, sizes, element strides and a cudaStream_t.
//
// Template parameters: S = stored logit type (float, double, ripu::half_t, ripu::bfloat16_t), T = compute and output
// type (float for float/half/bfloat16 logits, double for double). Explicit instantiations for the four (S, T) pairs
// live in the .cu files. Every launcher only enqueues work on `stream` (no host synchronisation, no device-to-host
// copy) and returns the first CUDA error it met (cudaSuccess otherwise). Scratch memory comes from a caller-supplied
// Workspace so that the binding layer can hand out PyTorch caching-allocator memory ordered on the same stream.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "ripu/common.h"
#include "ripu/loss_math.h"

namespace ripu {
namespace gpu {

// Tensor geometry and the optional resize (ripu/common.h).
using ripu::Dims4;
using ripu::Resize;

// Device scratch memory. get(bytes) returns a device pointer (aligned to at least 256 bytes) that stays valid, and
// is used only by work enqueued on the launcher's stream, until the launcher's caller releases the workspace.
struct Workspace {
  virtual void* get(size_t bytes) = 0;
  virtual ~Workspace() = default;
};

// Normalised entropy, (B, H, W) contiguous.
template <typename S, typename T>
cudaError_t pixel_entropy(const S* logits, const Dims4& d, T* entropy, cudaStream_t stream);

// Region (pixel_mode = false: score = P * U) or pixel (pixel_mode = true: score = P * e, uncertainty = e) scores over
// the clipped (2k+1)^2 window. Outputs (B, H2, W2) contiguous. Requires C <= 65535 and H2 <= 65535.
template <typename S, typename T>
cudaError_t scores(const S* logits, const Dims4& d, const Resize& rs, int64_t k, bool pixel_mode, T* score,
                   T* impurity, T* uncertainty, Workspace& ws, cudaStream_t stream);

// Exact greedy selection (docs/ops.md, "select_regions"), all images in one pipeline, no host synchronisation.
// score: (B, H, W) contiguous; n: (B,) int64 on the device (values are clamped to [0, n_max]); active_in: (B, H, W)
// bool or nullptr (not modified); centers: (B, n_max, 2); counts: (B,); active_out and selected: (B, H, W).
// Requires B * H * W < 2^31. All outputs are fully written.
template <typename T>
cudaError_t select_regions(const T* score, int64_t B, int64_t H, int64_t W, const int64_t* n, int64_t n_max,
                           int64_t radius, int64_t mask_radius, const bool* active_in, int64_t* centers,
                           int64_t* counts, bool* active_out, bool* selected, Workspace& ws, cudaStream_t stream);

// Local consistency loss (docs/ops.md, "local_consistency_loss"). labels: (B, H, W) int64 contiguous. loss: one T on the device.
template <typename S, typename T>
cudaError_t lcr_forward(const S* logits, const Dims4& d, const int64_t* labels, LcrKind kind, int neighbors,
                        int64_t ignore_index, T* loss, Workspace& ws, cudaStream_t stream);

// dx = grad * d(loss)/d(logits), written through the strides of `dxd` (sizes as in d). grad: one T on the device.
template <typename S, typename T>
cudaError_t lcr_backward(const T* grad, const S* logits, const Dims4& d, const int64_t* labels, LcrKind kind,
                         int neighbors, int64_t ignore_index, T* dx, const Dims4& dxd, Workspace& ws,
                         cudaStream_t stream);

// Negative learning loss. loss: one T on the device.
template <typename S, typename T>
cudaError_t nl_forward(const S* logits, const Dims4& d, T threshold, T* loss, Workspace& ws, cudaStream_t stream);

template <typename S, typename T>
cudaError_t nl_backward(const T* grad, const S* logits, const Dims4& d, T threshold, T* dx, const Dims4& dxd,
                        Workspace& ws, cudaStream_t stream);

}  // namespace gpu
}  // namespace ripu
