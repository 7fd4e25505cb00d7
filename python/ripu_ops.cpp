// The binding layer: the one TORCH_LIBRARY(ripu, m) with every schema, the CPU implementations (argument checks,
// allocation, dtype dispatch onto the torch-free launchers of csrc/cpu), and the empty `_C` Python module whose
// import runs these registrations. Fake kernels and autograd are registered from Python (_backend_cpp.py).
// No maths here.
#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "cpu/ripu_cpu.h"

extern "C" {
// extension-cpp style: importing ripu_kernels._C only runs the static registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace {

using ripu::cpu::Dims4;
using ripu::cpu::Resize;

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

template <typename S>
const S* data_as(const at::Tensor& t) {
  return reinterpret_cast<const S*>(t.const_data_ptr());
}

// ------------------------------------------------------------------------------------------------- scores
at::Tensor pixel_entropy_cpu(const at::Tensor& logits) {
  check_logits("pixel_entropy", logits);
  TORCH_CHECK(logits.device().is_cpu(), "ripu::pixel_entropy: logits must be a CPU tensor here");
  auto out = at::empty({logits.size(0), logits.size(2), logits.size(3)},
                       logits.options().dtype(compute_type(logits.scalar_type())));
  const Dims4 d = dims_of(logits);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    using S = std::remove_const_t<std::remove_pointer_t<decltype(s_tag)>>;
    using T = std::remove_pointer_t<decltype(t_tag)>;
    ripu::cpu::pixel_entropy<S, T>(data_as<S>(logits), d, out.mutable_data_ptr<T>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scores_cpu(const char* op, bool pixel_mode, const at::Tensor& logits,
                                                          int64_t k, at::OptionalIntArrayRef size, bool align_corners) {
  check_logits(op, logits);
  TORCH_CHECK(logits.device().is_cpu(), "ripu::", op, ": logits must be a CPU tensor here");
  TORCH_CHECK(k >= 0, "ripu::", op, ": k must be >= 0, got ", k);
  // labels are parked as numbers in a float map between passes: exact below 2^24
  TORCH_CHECK(logits.size(1) <= (int64_t(1) << 24), "ripu::", op, ": at most 2^24 classes are supported, got ",
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
  const auto opts = logits.options().dtype(compute_type(logits.scalar_type()));
  auto score = at::empty({logits.size(0), rs.H2, rs.W2}, opts);
  auto impurity = at::empty_like(score);
  auto uncertainty = at::empty_like(score);
  const Dims4 d = dims_of(logits);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    using S = std::remove_const_t<std::remove_pointer_t<decltype(s_tag)>>;
    using T = std::remove_pointer_t<decltype(t_tag)>;
    ripu::cpu::scores<S, T>(data_as<S>(logits), d, rs, k, pixel_mode, score.mutable_data_ptr<T>(),
                            impurity.mutable_data_ptr<T>(), uncertainty.mutable_data_ptr<T>());
  });
  return {score, impurity, uncertainty};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> region_scores_cpu(const at::Tensor& logits, int64_t k,
                                                                 at::OptionalIntArrayRef size, bool align_corners) {
  return scores_cpu("region_scores", false, logits, k, size, align_corners);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pixel_scores_cpu(const at::Tensor& logits, int64_t k,
                                                                at::OptionalIntArrayRef size, bool align_corners) {
  return scores_cpu("pixel_scores", true, logits, k, size, align_corners);
}

// ---------------------------------------------------------------------------------------------- selection
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> select_regions_cpu(const at::Tensor& score,
                                                                              const at::Tensor& n, int64_t n_max,
                                                                              int64_t radius, int64_t mask_radius,
                                                                              const std::optional<at::Tensor>& active) {
  const char* op = "select_regions";
  TORCH_CHECK(score.dim() == 3, "ripu::", op, ": score must be a 3-D tensor (B, H, W), got ", score.dim(),
              "-D of shape ", score.sizes());
  TORCH_CHECK(at::isFloatingType(score.scalar_type()), "ripu::", op, ": score must have a floating-point dtype, got ",
              score.scalar_type());
  TORCH_CHECK(score.device().is_cpu(), "ripu::", op, ": score must be a CPU tensor here");
  TORCH_CHECK(n_max >= 0, "ripu::", op, ": n_max must be >= 0, got ", n_max);
  TORCH_CHECK(radius >= 0, "ripu::", op, ": radius must be >= 0, got ", radius);
  TORCH_CHECK(mask_radius >= 0, "ripu::", op, ": mask_radius must be >= 0, got ", mask_radius);
  const int64_t B = score.size(0), H = score.size(1), W = score.size(2);
  TORCH_CHECK(n.dim() == 1 && n.size(0) == B, "ripu::", op, ": n must have shape (B,) = (", B, ",), got ", n.sizes());
  TORCH_CHECK(!at::isFloatingType(n.scalar_type()) && n.scalar_type() != at::kBool, "ripu::", op,
              ": n must be an integer tensor, got ", n.scalar_type());
  TORCH_CHECK(n.device() == score.device(), "ripu::", op, ": n must be on the device of score");
  auto n64 = n.to(at::kLong).contiguous();
  const int64_t* np = n64.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(np[b] >= 0 && np[b] <= n_max, "ripu::", op, ": n[", b, "] must be in [0, n_max = ", n_max, "], got ",
                np[b]);
  }
  at::Tensor act_in;
  if (active.has_value()) {
    TORCH_CHECK(active->scalar_type() == at::kBool, "ripu::", op, ": active must be a bool tensor, got ",
                active->scalar_type());
    TORCH_CHECK(active->sizes() == score.sizes(), "ripu::", op, ": active must have the shape of score ",
                score.sizes(), ", got ", active->sizes());
    TORCH_CHECK(active->device() == score.device(), "ripu::", op, ": active must be on the device of score");
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
  if (s.scalar_type() == at::kDouble) {
    ripu::cpu::select_regions<double>(s.const_data_ptr<double>(), B, H, W, np, n_max, radius, mask_radius, ain,
                                      centers.mutable_data_ptr<int64_t>(), counts.mutable_data_ptr<int64_t>(),
                                      act_out.mutable_data_ptr<bool>(), selected.mutable_data_ptr<bool>());
  } else {
    ripu::cpu::select_regions<float>(s.const_data_ptr<float>(), B, H, W, np, n_max, radius, mask_radius, ain,
                                     centers.mutable_data_ptr<int64_t>(), counts.mutable_data_ptr<int64_t>(),
                                     act_out.mutable_data_ptr<bool>(), selected.mutable_data_ptr<bool>());
  }
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
  TORCH_CHECK(labels.device() == logits.device(), "ripu::", op, ": labels must be on the device of logits");
  TORCH_CHECK(neighbors == 4 || neighbors == 8, "ripu::", op, ": neighbors must be 4 or 8, got ", neighbors);
  return labels.to(at::kLong).contiguous();
}

at::Tensor local_consistency_loss_cpu(const at::Tensor& logits, const at::Tensor& labels, c10::string_view kind,
                                      int64_t neighbors, int64_t ignore_index) {
  const char* op = "local_consistency_loss";
  check_logits(op, logits);
  TORCH_CHECK(logits.device().is_cpu(), "ripu::", op, ": logits must be a CPU tensor here");
  const auto k = parse_kind(op, kind);
  const at::Tensor lab = check_labels(op, logits, labels, neighbors);
  const auto ct = compute_type(logits.scalar_type());
  auto out = at::empty({}, logits.options().dtype(ct));
  const Dims4 d = dims_of(logits);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    using S = std::remove_const_t<std::remove_pointer_t<decltype(s_tag)>>;
    using T = std::remove_pointer_t<decltype(t_tag)>;
    *out.mutable_data_ptr<T>() = ripu::cpu::lcr_forward<S, T>(data_as<S>(logits), d, lab.const_data_ptr<int64_t>(),
                                                               k, static_cast<int>(neighbors), ignore_index);
  });
  return out;
}

double grad_value(const char* op, const at::Tensor& grad) {
  TORCH_CHECK(grad.numel() == 1, "ripu::", op, ": grad must hold one element (the loss is a scalar), got shape ",
              grad.sizes());
  return grad.to(at::kDouble).item<double>();
}

// Gradient buffer in the compute dtype with the logits' layout (dense layouts kept, others contiguous); converted
// to the logits' dtype on return.
at::Tensor grad_buffer(const at::Tensor& logits) {
  return at::empty_like(logits, logits.options().dtype(compute_type(logits.scalar_type())),
                        at::MemoryFormat::Preserve);
}

at::Tensor lcr_backward_cpu(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& labels,
                            c10::string_view kind, int64_t neighbors, int64_t ignore_index) {
  const char* op = "_local_consistency_loss_backward";
  check_logits(op, logits);
  TORCH_CHECK(logits.device().is_cpu(), "ripu::", op, ": logits must be a CPU tensor here");
  const auto k = parse_kind(op, kind);
  const at::Tensor lab = check_labels(op, logits, labels, neighbors);
  const double g = grad_value(op, grad);
  at::Tensor dx = grad_buffer(logits);
  const Dims4 d = dims_of(logits), dd = dims_of(dx);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    using S = std::remove_const_t<std::remove_pointer_t<decltype(s_tag)>>;
    using T = std::remove_pointer_t<decltype(t_tag)>;
    ripu::cpu::lcr_backward<S, T>(static_cast<T>(g), data_as<S>(logits), d, lab.const_data_ptr<int64_t>(), k,
                                  static_cast<int>(neighbors), ignore_index, dx.mutable_data_ptr<T>(), dd);
  });
  return dx.scalar_type() == logits.scalar_type() ? dx : dx.to(logits.scalar_type());
}

at::Tensor negative_learning_loss_cpu(const at::Tensor& logits, double threshold) {
  const char* op = "negative_learning_loss";
  check_logits(op, logits);
  TORCH_CHECK(logits.device().is_cpu(), "ripu::", op, ": logits must be a CPU tensor here");
  auto out = at::empty({}, logits.options().dtype(compute_type(logits.scalar_type())));
  const Dims4 d = dims_of(logits);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    using S = std::remove_const_t<std::remove_pointer_t<decltype(s_tag)>>;
    using T = std::remove_pointer_t<decltype(t_tag)>;
    *out.mutable_data_ptr<T>() = ripu::cpu::nl_forward<S, T>(data_as<S>(logits), d, static_cast<T>(threshold));
  });
  return out;
}

at::Tensor nl_backward_cpu(const at::Tensor& grad, const at::Tensor& logits, double threshold) {
  const char* op = "_negative_learning_loss_backward";
  check_logits(op, logits);
  TORCH_CHECK(logits.device().is_cpu(), "ripu::", op, ": logits must be a CPU tensor here");
  const double g = grad_value(op, grad);
  at::Tensor dx = grad_buffer(logits);
  const Dims4 d = dims_of(logits), dd = dims_of(dx);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    using S = std::remove_const_t<std::remove_pointer_t<decltype(s_tag)>>;
    using T = std::remove_pointer_t<decltype(t_tag)>;
    ripu::cpu::nl_backward<S, T>(static_cast<T>(g), data_as<S>(logits), d, static_cast<T>(threshold),
                                 dx.mutable_data_ptr<T>(), dd);
  });
  return dx.scalar_type() == logits.scalar_type() ? dx : dx.to(logits.scalar_type());
}

}  // namespace

// Every schema of the library (the CUDA implementations register against the same ops).
TORCH_LIBRARY(ripu, m) {
  m.def("pixel_entropy(Tensor logits) -> Tensor");
  m.def("region_scores(Tensor logits, int k, int[]? size, bool align_corners) -> (Tensor, Tensor, Tensor)");
  m.def("pixel_scores(Tensor logits, int k, int[]? size, bool align_corners) -> (Tensor, Tensor, Tensor)");
  m.def(
      "select_regions(Tensor score, Tensor n, int n_max, int radius, int mask_radius, Tensor? active)"
      " -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("local_consistency_loss(Tensor logits, Tensor labels, str kind, int neighbors, int ignore_index) -> Tensor");
  m.def(
      "_local_consistency_loss_backward(Tensor grad, Tensor logits, Tensor labels, str kind, int neighbors,"
      " int ignore_index) -> Tensor");
  m.def("negative_learning_loss(Tensor logits, float threshold) -> Tensor");
  m.def("_negative_learning_loss_backward(Tensor grad, Tensor logits, float threshold) -> Tensor");
}

TORCH_LIBRARY_IMPL(ripu, CPU, m) {
  m.impl("pixel_entropy", &pixel_entropy_cpu);
  m.impl("region_scores", &region_scores_cpu);
  m.impl("pixel_scores", &pixel_scores_cpu);
  m.impl("select_regions", &select_regions_cpu);
  m.impl("local_consistency_loss", &local_consistency_loss_cpu);
  m.impl("_local_consistency_loss_backward", &lcr_backward_cpu);
  m.impl("negative_learning_loss", &negative_learning_loss_cpu);
  m.impl("_negative_learning_loss_backward", &nl_backward_cpu);
}
