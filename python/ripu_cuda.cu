// The CUDA half of the binding layer: TORCH_LIBRARY_IMPL(ripu, CUDA, m) for every op whose schema python/ripu_ops.cpp
// defines. Argument checks (before any pointer is taken), allocation, dtype dispatch onto the torch-free launchers of
// csrc/cuda, the device guard and PyTorch's current stream. No maths here, and no host synchronisation: no .item(),
// no device-to-host copy (the scalar `grad` of the backward ops is read by the kernels on the device).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>
#include <type_traits>
#include <vector>

#include "cuda/ripu_cuda.h"
#include "ripu_binding.h"

namespace {

using namespace ripu::binding;
using ripu::Dims4;
using ripu::Resize;
constexpr auto kCUDA = at::DeviceType::CUDA;

// Scratch memory from PyTorch's caching allocator. The tensors live until the op returns; the allocator orders
// their reuse on the current stream, after the kernels enqueued here.
class TorchWorkspace final : public ripu::gpu::Workspace {
 public:
  explicit TorchWorkspace(const at::Device& device) : device_(device) {}
  void* get(size_t bytes) override {
    buffers_.push_back(at::empty({static_cast<int64_t>(bytes > 0 ? bytes : 1)},
                                 at::TensorOptions().dtype(at::kByte).device(device_)));
    return buffers_.back().mutable_data_ptr();
  }

 private:
  at::Device device_;
  std::vector<at::Tensor> buffers_;
};

void check_cuda(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "ripu::", op, ": CUDA error: ", cudaGetErrorString(err));
}

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// ------------------------------------------------------------------------------------------------- scores
at::Tensor pixel_entropy_cuda(const at::Tensor& logits) {
  const char* op = "pixel_entropy";
  check_logits(op, logits, kCUDA);
  const c10::cuda::CUDAGuard guard(logits.device());
  auto out = at::empty({logits.size(0), logits.size(2), logits.size(3)},
                       logits.options().dtype(compute_type(logits.scalar_type())));
  const Dims4 d = dims_of(logits);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    check_cuda(op, ripu::gpu::pixel_entropy<S, T>(data_as<S>(logits), d, out.mutable_data_ptr<T>(),
                                                  current_stream()));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scores_cuda(const char* op, bool pixel_mode, const at::Tensor& logits,
                                                           int64_t k, at::OptionalIntArrayRef size,
                                                           bool align_corners) {
  check_logits(op, logits, kCUDA);
  const Resize rs = check_window_args(op, logits, k, size, align_corners);
  // labels are stored as uint16 and column class counts as uint16 between the two passes
  TORCH_CHECK(logits.size(1) <= 65535, "ripu::", op, ": the CUDA kernels support at most 65535 classes, got ",
              logits.size(1));
  TORCH_CHECK(rs.H2 <= 65535, "ripu::", op, ": the CUDA kernels support output heights up to 65535, got ", rs.H2);
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor score, impurity, uncertainty;
  std::tie(score, impurity, uncertainty) = score_maps(logits, rs);
  const Dims4 d = dims_of(logits);
  TorchWorkspace ws(logits.device());
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    check_cuda(op, ripu::gpu::scores<S, T>(data_as<S>(logits), d, rs, k, pixel_mode, score.mutable_data_ptr<T>(),
                                           impurity.mutable_data_ptr<T>(), uncertainty.mutable_data_ptr<T>(), ws,
                                           current_stream()));
  });
  return {score, impurity, uncertainty};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> region_scores_cuda(const at::Tensor& logits, int64_t k,
                                                                  at::OptionalIntArrayRef size, bool align_corners) {
  return scores_cuda("region_scores", false, logits, k, size, align_corners);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pixel_scores_cuda(const at::Tensor& logits, int64_t k,
                                                                 at::OptionalIntArrayRef size, bool align_corners) {
  return scores_cuda("pixel_scores", true, logits, k, size, align_corners);
}

// ---------------------------------------------------------------------------------------------- selection
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> select_regions_cuda(
    const at::Tensor& score, const at::Tensor& n, int64_t n_max, int64_t radius, int64_t mask_radius,
    const std::optional<at::Tensor>& active) {
  const char* op = "select_regions";
  TORCH_CHECK(score.dim() != 3 || score.numel() < (int64_t(1) << 31) - 1, "ripu::", op,
              ": the CUDA kernels support fewer than 2^31 pixels per call, got ", score.numel());
  const c10::cuda::CUDAGuard guard(score.device());
  // Values of n outside [0, n_max] are clamped on the device (checking them here would synchronise).
  SelectCall call = prepare_select(op, score, n, n_max, radius, mask_radius, active, kCUDA);
  const int64_t B = call.score.size(0), H = call.score.size(1), W = call.score.size(2);
  TorchWorkspace ws(score.device());
  auto run = [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return ripu::gpu::select_regions<T>(call.score.const_data_ptr<T>(), B, H, W, call.n.const_data_ptr<int64_t>(),
                                        n_max, radius, mask_radius, call.active_ptr(),
                                        call.centers.mutable_data_ptr<int64_t>(), call.counts.mutable_data_ptr<int64_t>(),
                                        call.active_out.mutable_data_ptr<bool>(), call.selected.mutable_data_ptr<bool>(),
                                        ws, current_stream());
  };
  check_cuda(op, call.score.scalar_type() == at::kDouble ? run(static_cast<double*>(nullptr))
                                                         : run(static_cast<float*>(nullptr)));
  return {call.centers, call.counts, call.active_out, call.selected};
}

// -------------------------------------------------------------------------------------------------- losses
// The upstream gradient as one compute-type element on the device (read there by the kernels).
at::Tensor grad_on_device(const char* op, const at::Tensor& grad, const at::Tensor& logits) {
  check_grad(op, grad);
  return grad.to(logits.device(), compute_type(logits.scalar_type())).contiguous();
}

at::Tensor local_consistency_loss_cuda(const at::Tensor& logits, const at::Tensor& labels, c10::string_view kind,
                                       int64_t neighbors, int64_t ignore_index) {
  const char* op = "local_consistency_loss";
  check_logits(op, logits, kCUDA);
  const auto k = parse_kind(op, kind);
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor lab = check_labels(op, logits, labels, neighbors);
  auto out = at::empty({}, logits.options().dtype(compute_type(logits.scalar_type())));
  const Dims4 d = dims_of(logits);
  TorchWorkspace ws(logits.device());
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    check_cuda(op, ripu::gpu::lcr_forward<S, T>(data_as<S>(logits), d, lab.const_data_ptr<int64_t>(), k,
                                                static_cast<int>(neighbors), ignore_index, out.mutable_data_ptr<T>(),
                                                ws, current_stream()));
  });
  return out;
}

at::Tensor lcr_backward_cuda(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& labels,
                             c10::string_view kind, int64_t neighbors, int64_t ignore_index) {
  const char* op = "_local_consistency_loss_backward";
  check_logits(op, logits, kCUDA);
  const auto k = parse_kind(op, kind);
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor lab = check_labels(op, logits, labels, neighbors);
  const at::Tensor g = grad_on_device(op, grad, logits);
  at::Tensor dx = grad_buffer(logits);
  const Dims4 d = dims_of(logits), dd = dims_of(dx);
  TorchWorkspace ws(logits.device());
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    check_cuda(op, ripu::gpu::lcr_backward<S, T>(g.const_data_ptr<T>(), data_as<S>(logits), d,
                                                 lab.const_data_ptr<int64_t>(), k, static_cast<int>(neighbors),
                                                 ignore_index, dx.mutable_data_ptr<T>(), dd, ws, current_stream()));
  });
  return as_logits_dtype(dx, logits);
}

at::Tensor negative_learning_loss_cuda(const at::Tensor& logits, double threshold) {
  const char* op = "negative_learning_loss";
  check_logits(op, logits, kCUDA);
  const c10::cuda::CUDAGuard guard(logits.device());
  auto out = at::empty({}, logits.options().dtype(compute_type(logits.scalar_type())));
  const Dims4 d = dims_of(logits);
  TorchWorkspace ws(logits.device());
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    check_cuda(op, ripu::gpu::nl_forward<S, T>(data_as<S>(logits), d, static_cast<T>(threshold),
                                               out.mutable_data_ptr<T>(), ws, current_stream()));
  });
  return out;
}

at::Tensor nl_backward_cuda(const at::Tensor& grad, const at::Tensor& logits, double threshold) {
  const char* op = "_negative_learning_loss_backward";
  check_logits(op, logits, kCUDA);
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor g = grad_on_device(op, grad, logits);
  at::Tensor dx = grad_buffer(logits);
  const Dims4 d = dims_of(logits), dd = dims_of(dx);
  TorchWorkspace ws(logits.device());
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    check_cuda(op, ripu::gpu::nl_backward<S, T>(g.const_data_ptr<T>(), data_as<S>(logits), d,
                                                static_cast<T>(threshold), dx.mutable_data_ptr<T>(), dd, ws,
                                                current_stream()));
  });
  return as_logits_dtype(dx, logits);
}

}  // namespace

TORCH_LIBRARY_IMPL(ripu, CUDA, m) {
  m.impl("pixel_entropy", &pixel_entropy_cuda);
  m.impl("region_scores", &region_scores_cuda);
  m.impl("pixel_scores", &pixel_scores_cuda);
  m.impl("select_regions", &select_regions_cuda);
  m.impl("local_consistency_loss", &local_consistency_loss_cuda);
  m.impl("_local_consistency_loss_backward", &lcr_backward_cuda);
  m.impl("negative_learning_loss", &negative_learning_loss_cuda);
  m.impl("_negative_learning_loss_backward", &nl_backward_cuda);
}
