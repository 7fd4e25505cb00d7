// What the CPU (ripu_ops.cpp) and CUDA (ripu_cuda.cu) halves of the binding layer share: the argument checks of every
// op, output allocation and the dtype dispatch onto the launchers. Checks never read tensor data (no host sync on
// CUDA). No maths here.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <tuple>
#include <type_traits>

#include "ripu/common.h"
#include "ripu/loss_math.h"

namespace ripu {
namespace binding {

inline Dims4 dims_of(const at::Tensor& t) {
  return Dims4{t.size(0), t.size(1), t.size(2), t.size(3), t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// float32 for float32/float16/bfloat16 logits, float64 for float64.
inline at::ScalarType compute_type(at::ScalarType s) { return s == at::kDouble ? at::kDouble : at::kFloat; }

// Shape, dtype, class count and device type of `logits`; `device_kind` is "CPU" or "CUDA".
inline void check_logits(const char* op, const at::Tensor& logits, at::DeviceType device_type) {
  TORCH_CHECK(logits.dim() == 4, "ripu::", op, ": logits must be a 4-D tensor (B, C, H, W), got ", logits.dim(),
              "-D of shape ", logits.sizes());
  const auto s = logits.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16, "ripu::", op,
              ": logits must be float16, bfloat16, float32 or float64, got ", s);
  TORCH_CHECK(logits.size(1) >= 1, "ripu::", op, ": logits must have at least one class (C >= 1), got C = ",
              logits.size(1));
  TORCH_CHECK(logits.size(1) <= INT32_MAX, "ripu::", op, ": too many classes: ", logits.size(1));
  TORCH_CHECK(logits.device().type() == device_type, "ripu::", op, ": logits must be a ", device_type,
              " tensor here, got ", logits.device());
}

// Calls f(const S* tag, T* tag) with the storage and compute types of `logits`.
template <typename F>
void dispatch_logits(const at::Tensor& logits, F&& f) {
  switch (logits.scalar_type()) {
    case at::kFloat: f(static_cast<const float*>(nullptr), static_cast<float*>(nullptr)); break;
    case at::kDouble: f(static_cast<const double*>(nullptr), static_cast<double*>(nullptr)); break;
    case at::kHalf: f(static_cast<const half_t*>(nullptr), static_cast<float*>(nullptr)); break;
    case at::kBFloat16: f(static_cast<const bfloat16_t*>(nullptr), static_cast<float*>(nullptr)); break;
    default: TORCH_CHECK(false, "ripu: unsupported logits dtype ", logits.scalar_type());
  }
}

// Inside a dispatch_logits lambda: S and T from the two tags.
#define RIPU_TYPES(s_tag, t_tag)                                         \
  using S = std::remove_const_t<std::remove_pointer_t<decltype(s_tag)>>; \
  using T = std::remove_pointer_t<decltype(t_tag)>

template <typename S>
const S* data_as(const at::Tensor& t) {
  return reinterpret_cast<const S*>(t.const_data_ptr());
}

// k and the optional resize of region_scores / pixel_scores.
inline Resize check_window_args(const char* op, const at::Tensor& logits, int64_t k, at::OptionalIntArrayRef size,
                                bool align_corners) {
  TORCH_CHECK(k >= 0, "ripu::", op, ": k must be >= 0, got ", k);
  Resize rs{false, logits.size(2), logits.size(3), align_corners};
  if (size.has_value()) {
    const auto sz = *size;
    TORCH_CHECK(sz.size() == 2, "ripu::", op, ": size must be None or a pair of ints (H, W), got ", sz);
    TORCH_CHECK(sz[0] >= 1 && sz[1] >= 1, "ripu::", op, ": size must be positive, got ", sz);
    TORCH_CHECK(logits.size(0) == 0 || (logits.size(2) >= 1 && logits.size(3) >= 1), "ripu::", op,
                ": cannot resize logits with an empty spatial size ", logits.sizes());
    rs = Resize{true, sz[0], sz[1], align_corners};
  }
  return rs;
}

// The three (B, H2, W2) maps of the score ops, in the compute type.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> score_maps(const at::Tensor& logits, const Resize& rs) {
  const auto opts = logits.options().dtype(compute_type(logits.scalar_type()));
  auto score = at::empty({logits.size(0), rs.H2, rs.W2}, opts);
  return {score, at::empty_like(score), at::empty_like(score)};
}

// Checked arguments and allocated outputs of select_regions.
struct SelectCall {
  at::Tensor score;      // float32 or float64, contiguous (16-bit scores compare the same once widened)
  at::Tensor n;          // int64, contiguous
  at::Tensor active_in;  // bool, contiguous, or undefined
  at::Tensor centers, counts, active_out, selected;
  const bool* active_ptr() const { return active_in.defined() ? active_in.const_data_ptr<bool>() : nullptr; }
};

// Everything select_regions checks without reading tensor data (the range of n is the backend's business).
inline SelectCall prepare_select(const char* op, const at::Tensor& score, const at::Tensor& n, int64_t n_max,
                                 int64_t radius, int64_t mask_radius, const std::optional<at::Tensor>& active,
                                 at::DeviceType device_type) {
  TORCH_CHECK(score.dim() == 3, "ripu::", op, ": score must be a 3-D tensor (B, H, W), got ", score.dim(),
              "-D of shape ", score.sizes());
  TORCH_CHECK(at::isFloatingType(score.scalar_type()), "ripu::", op, ": score must have a floating-point dtype, got ",
              score.scalar_type());
  TORCH_CHECK(score.device().type() == device_type, "ripu::", op, ": score must be a ", device_type,
              " tensor here, got ", score.device());
  TORCH_CHECK(n_max >= 0, "ripu::", op, ": n_max must be >= 0, got ", n_max);
  TORCH_CHECK(radius >= 0, "ripu::", op, ": radius must be >= 0, got ", radius);
  TORCH_CHECK(mask_radius >= 0, "ripu::", op, ": mask_radius must be >= 0, got ", mask_radius);
  const int64_t B = score.size(0), H = score.size(1), W = score.size(2);
  TORCH_CHECK(n.dim() == 1 && n.size(0) == B, "ripu::", op, ": n must have shape (B,) = (", B, ",), got ", n.sizes());
  TORCH_CHECK(!at::isFloatingType(n.scalar_type()) && n.scalar_type() != at::kBool, "ripu::", op,
              ": n must be an integer tensor, got ", n.scalar_type());
  TORCH_CHECK(n.device() == score.device(), "ripu::", op, ": n must be on the device of score (", score.device(),
              "), got ", n.device());
  SelectCall call;
  if (active.has_value()) {
    TORCH_CHECK(active->scalar_type() == at::kBool, "ripu::", op, ": active must be a bool tensor, got ",
                active->scalar_type());
    TORCH_CHECK(active->sizes() == score.sizes(), "ripu::", op, ": active must have the shape of score ",
                score.sizes(), ", got ", active->sizes());
    TORCH_CHECK(active->device() == score.device(), "ripu::", op, ": active must be on the device of score (",
                score.device(), "), got ", active->device());
    call.active_in = active->contiguous();
  }
  call.n = n.to(at::kLong).contiguous();
  at::Tensor s = score;
  if (s.scalar_type() != at::kFloat && s.scalar_type() != at::kDouble) s = s.to(at::kFloat);
  call.score = s.contiguous();
  call.centers = at::empty({B, n_max, 2}, score.options().dtype(at::kLong));
  call.counts = at::empty({B}, score.options().dtype(at::kLong));
  call.active_out = at::empty({B, H, W}, score.options().dtype(at::kBool));
  call.selected = at::empty({B, H, W}, score.options().dtype(at::kBool));
  return call;
}

inline LcrKind parse_kind(const char* op, c10::string_view kind) {
  if (kind == "l1") return LcrKind::L1;
  if (kind == "kl") return LcrKind::KL;
  TORCH_CHECK(false, "ripu::", op, ": kind must be 'l1' or 'kl', got '", std::string(kind), "'");
}

// The labels of the LCR ops as contiguous int64, after checking them and `neighbors`.
inline at::Tensor check_labels(const char* op, const at::Tensor& logits, const at::Tensor& labels,
                               int64_t neighbors) {
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

inline void check_grad(const char* op, const at::Tensor& grad) {
  TORCH_CHECK(grad.numel() == 1, "ripu::", op, ": grad must hold one element (the loss is a scalar), got shape ",
              grad.sizes());
}

// Gradient buffer in the compute dtype with the logits' layout (dense layouts kept, others contiguous).
inline at::Tensor grad_buffer(const at::Tensor& logits) {
  return at::empty_like(logits, logits.options().dtype(compute_type(logits.scalar_type())),
                        at::MemoryFormat::Preserve);
}

// The gradient buffer returned in the logits' dtype.
inline at::Tensor as_logits_dtype(const at::Tensor& dx, const at::Tensor& logits) {
  return dx.scalar_type() == logits.scalar_type() ? dx : dx.to(logits.scalar_type());
}

}  // namespace binding
}  // namespace ripu
