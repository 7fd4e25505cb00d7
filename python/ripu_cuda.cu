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

namespace {

using ripu::gpu::Dims4;
using ripu::gpu::Resize;

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

Dims4 dims_of(const at::Tensor& t) {
  return Dims4{t.size(0), t.size(1), t.size(2), t.size(3), t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

at::ScalarType compute_type(at::ScalarType s) { return s == at::kDouble ? at::kDouble : at::kFloat; }

void check_logits(const char* op, const at::Tensor& logits) {
  TORCH_CHECK(logits.dim() == 4, "ripu::", op, ": logits must be a 4-D tensor (B, C, H, W), got ", logits.dim(),
              "-D of shape ", logits.sizes());
  const auto s = logits.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16, "ripu::", op,
              ": logits must be float16, bfloat16, float32 or float64, got ", s);
  TORCH_CHECK(logits.size(1) >= 1, "ripu::", op, ": logits must have at least one class (C >= 1), got C = ",
              logits.size(1));
  TORCH_CHECK(logits.size(1) <= INT32_MAX, "ripu::", op, ": too many classes: ", logits.size(1));
  TORCH_CHECK(logits.is_cuda(), "ripu::", op, ": logits must be a CUDA tensor here, got ", logits.device());
}

// Calls f(S* tag, T* tag) with the storage and compute types of `logits`.
template <typename F>
void dispatch_logits(const at::Tensor& logits, F&& f) {
  switch (logits.scalar_type()) {
    case at::kFloat: f(static_cast<const float*>(nullptr), static_cast<float*>(nullptr)); break;
    case at::kDouble: f(static_cast<const double*>(nullptr), static_cast<double*>(nullptr)); break;
    case at::kHalf: f(static_cast<const ripu::half_t*>(nullptr), static_cast<float*>(nullptr)); break;
    case at::kBFloat16: f(static_cast<const ripu::bfloat16_t*>(nullptr), static_cast<float*>(nullptr)); break;
    default: TORCH_CHECK(false, "ripu: unsupported logits dtype ", logits.scalar_type());
  }
}

#define RIPU_TYPES(s_tag, t_tag)                                              \
  using S = std::remove_const_t<std::remove_pointer_t<decltype(s_tag)>>; \
  using T = std::remove_pointer_t<decltype(t_tag)>

template <typename S>
const S* data_as(const at::Tensor& t) {
  return reinterpret_cast<const S*>(t.const_data_ptr());
}

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// ------------------------------------------------------------------------------------------------- scores
at::Tensor pixel_entropy_cuda(const at::Tensor& logits) {
  const char* op = "pixel_entropy";
  check_logits(op, logits);
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
  check_logits(op, logits);
  TORCH_CHECK(k >= 0, "ripu::", op, ": k must be >= 0, got ", k);
  // labels are stored as uint16 and column class counts as uint16 between the two passes
  TORCH_CHECK(logits.size(1) <= 65535, "ripu::", op, ": the CUDA kernels support at most 65535 classes, got ",
              logits.size(1));
  Resize rs{false, logits.size(2), logits.size(3), align_corners};
  if (size.has_value()) {
    const auto sz = *size;
    TORCH_CHECK(sz.size() == 2, "ripu::", op, ": size must be None or a pair of ints (H, W), got ", sz);
    TORCH_CHECK(sz[0] >= 1 && sz[1] >= 1, "ripu::", op, ": size must be positive, got ", sz);
    TORCH_CHECK(logits.size(0) == 0 || (logits.size(2) >= 1 && logits.size(3) >= 1), "ripu::", op,
                ": cannot resize logits with an empty spatial size ", logits.sizes());
    rs = Resize{true, sz[0], sz[1], align_corners};
  }
  TORCH_CHECK(rs.H2 <= 65535, "ripu::", op, ": the CUDA kernels support output heights up to 65535, got ", rs.H2);
  const c10::cuda::CUDAGuard guard(logits.device());
  const auto opts = logits.options().dtype(compute_type(logits.scalar_type()));
  auto score = at::empty({logits.size(0), rs.H2, rs.W2}, opts);
  auto impurity = at::empty_like(score);
  auto uncertainty = at::empty_like(score);
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
  TORCH_CHECK(score.dim() == 3, "ripu::", op, ": score must be a 3-D tensor (B, H, W), got ", score.dim(),
              "-D of shape ", score.sizes());
  TORCH_CHECK(at::isFloatingType(score.scalar_type()), "ripu::", op, ": score must have a floating-point dtype, got ",
              score.scalar_type());
  TORCH_CHECK(score.is_cuda(), "ripu::", op, ": score must be a CUDA tensor here, got ", score.device());
  TORCH_CHECK(n_max >= 0, "ripu::", op, ": n_max must be >= 0, got ", n_max);
  TORCH_CHECK(radius >= 0, "ripu::", op, ": radius must be >= 0, got ", radius);
  TORCH_CHECK(mask_radius >= 0, "ripu::", op, ": mask_radius must be >= 0, got ", mask_radius);
  const int64_t B = score.size(0), H = score.size(1), W = score.size(2);
  TORCH_CHECK(B * H * W < (int64_t(1) << 31) - 1, "ripu::", op,
              ": the CUDA kernels support fewer than 2^31 pixels per call, got ", B * H * W);
  TORCH_CHECK(n.dim() == 1 && n.size(0) == B, "ripu::", op, ": n must have shape (B,) = (", B, ",), got ", n.sizes());
  TORCH_CHECK(!at::isFloatingType(n.scalar_type()) && n.scalar_type() != at::kBool, "ripu::", op,
              ": n must be an integer tensor, got ", n.scalar_type());
  TORCH_CHECK(n.device() == score.device(), "ripu::", op, ": n must be on the device of score (", score.device(),
              "), got ", n.device());
  // Values of n outside [0, n_max] are clamped on the device (checking them here would synchronise).
  const c10::cuda::CUDAGuard guard(score.device());
  const at::Tensor n64 = n.to(at::kLong).contiguous();
  at::Tensor act_in;
  if (active.has_value()) {
    TORCH_CHECK(active->scalar_type() == at::kBool, "ripu::", op, ": active must be a bool tensor, got ",
                active->scalar_type());
    TORCH_CHECK(active->sizes() == score.sizes(), "ripu::", op, ": active must have the shape of score ",
                score.sizes(), ", got ", active->sizes());
    TORCH_CHECK(active->device() == score.device(), "ripu::", op, ": active must be on the device of score (",
                score.device(), "), got ", active->device());
    act_in = active->contiguous();
  }
  // 16-bit scores compare exactly the same once widened to float32.
  at::Tensor s = score;
  if (s.scalar_type() != at::kFloat && s.scalar_type() != at::kDouble) s = s.to(at::kFloat);
  s = s.contiguous();
  auto centers = at::empty({B, n_max, 2}, score.options().dtype(at::kLong));
  auto counts = at::empty({B}, score.options().dtype(at::kLong));
  auto act_out = at::empty({B, H, W}, score.options().dtype(at::kBool));
  auto selected = at::empty({B, H, W}, score.options().dtype(at::kBool));
  const bool* ain = act_in.defined() ? act_in.const_data_ptr<bool>() : nullptr;
  TorchWorkspace ws(score.device());
  cudaError_t err;
  if (s.scalar_type() == at::kDouble) {
    err = ripu::gpu::select_regions<double>(s.const_data_ptr<double>(), B, H, W, n64.const_data_ptr<int64_t>(), n_max,
                                            radius, mask_radius, ain, centers.mutable_data_ptr<int64_t>(),
                                            counts.mutable_data_ptr<int64_t>(), act_out.mutable_data_ptr<bool>(),
                                            selected.mutable_data_ptr<bool>(), ws, current_stream());
  } else {
    err = ripu::gpu::select_regions<float>(s.const_data_ptr<float>(), B, H, W, n64.const_data_ptr<int64_t>(), n_max,
                                           radius, mask_radius, ain, centers.mutable_data_ptr<int64_t>(),
                                           counts.mutable_data_ptr<int64_t>(), act_out.mutable_data_ptr<bool>(),
                                           selected.mutable_data_ptr<bool>(), ws, current_stream());
  }
  check_cuda(op, err);
  return {centers, counts, act_out, selected};
}

// -------------------------------------------------------------------------------------------------- losses
ripu::LcrKind parse_kind(const char* op, c10::string_view kind) {
  if (kind == "l1") return ripu::LcrKind::L1;
  if (kind == "kl") return ripu::LcrKind::KL;
  TORCH_CHECK(false, "ripu::", op, ": kind must be 'l1' or 'kl', got '", std::string(kind), "'");
}

at::Tensor check_labels(const char* op, const at::Tensor& logits, const at::Tensor& labels, int64_t neighbors) {
  TORCH_CHECK(!at::isFloatingType(labels.scalar_type()) && !at::isComplexType(labels.scalar_type()) &&
                  labels.scalar_type() != at::kBool,
              "ripu::", op, ": labels must have an integer dtype, got ", labels.scalar_type());
  TORCH_CHECK(labels.dim() == 3 && labels.size(0) == logits.size(0) && labels.size(1) == logits.size(2) &&
                  labels.size(2) == logits.size(3),
              "ripu::", op, ": labels must have shape (B, H, W) = (", logits.size(0), ", ", logits.size(2), ", ",
              logits.size(3), "), got ", labels.sizes());
  TORCH_CHECK(labels.device() == logits.device(), "ripu::", op, ": labels must be on the device of logits (",
              logits.device(), "), got ", labels.device());
  TORCH_CHECK(neighbors == 4 || neighbors == 8, "ripu::", op, ": neighbors must be 4 or 8, got ", neighbors);
  return labels.to(at::kLong).contiguous();
}

// The upstream gradient as one compute-type element on the device (read there by the kernels).
at::Tensor grad_on_device(const char* op, const at::Tensor& grad, const at::Tensor& logits) {
  TORCH_CHECK(grad.numel() == 1, "ripu::", op, ": grad must hold one element (the loss is a scalar), got shape ",
              grad.sizes());
  return grad.to(logits.device(), compute_type(logits.scalar_type())).contiguous();
}

// Gradient buffer in the compute dtype with the logits' layout (dense layouts kept, others contiguous).
at::Tensor grad_buffer(const at::Tensor& logits) {
  return at::empty_like(logits, logits.options().dtype(compute_type(logits.scalar_type())),
                        at::MemoryFormat::Preserve);
}

at::Tensor local_consistency_loss_cuda(const at::Tensor& logits, const at::Tensor& labels, c10::string_view kind,
                                       int64_t neighbors, int64_t ignore_index) {
  const char* op = "local_consistency_loss";
  check_logits(op, logits);
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
  check_logits(op, logits);
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
  return dx.scalar_type() == logits.scalar_type() ? dx : dx.to(logits.scalar_type());
}

at::Tensor negative_learning_loss_cuda(const at::Tensor& logits, double threshold) {
  const char* op = "negative_learning_loss";
  check_logits(op, logits);
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
  check_logits(op, logits);
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
  return dx.scalar_type() == logits.scalar_type() ? dx : dx.to(logits.scalar_type());
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
