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
#include "ripu_binding.h"

extern "C" {
// extension-cpp style: importing ripu_kernels._C only runs the static registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace {

using namespace ripu::binding;
using ripu::Dims4;
using ripu::Resize;
constexpr auto kCPU = at::DeviceType::CPU;

// ------------------------------------------------------------------------------------------------- scores
at::Tensor pixel_entropy_cpu(const at::Tensor& logits) {
  check_logits("pixel_entropy", logits, kCPU);
  auto out = at::empty({logits.size(0), logits.size(2), logits.size(3)},
                       logits.options().dtype(compute_type(logits.scalar_type())));
  const Dims4 d = dims_of(logits);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    ripu::cpu::pixel_entropy<S, T>(data_as<S>(logits), d, out.mutable_data_ptr<T>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scores_cpu(const char* op, bool pixel_mode, const at::Tensor& logits,
                                                          int64_t k, at::OptionalIntArrayRef size, bool align_corners) {
  check_logits(op, logits, kCPU);
  const Resize rs = check_window_args(op, logits, k, size, align_corners);
  // labels are parked as numbers in a float map between passes: exact below 2^24
  TORCH_CHECK(logits.size(1) <= (int64_t(1) << 24), "ripu::", op, ": at most 2^24 classes are supported, got ",
              logits.size(1));
  at::Tensor score, impurity, uncertainty;
  std::tie(score, impurity, uncertainty) = score_maps(logits, rs);
  const Dims4 d = dims_of(logits);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
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
  SelectCall call = prepare_select(op, score, n, n_max, radius, mask_radius, active, kCPU);
  const int64_t B = call.score.size(0), H = call.score.size(1), W = call.score.size(2);
  const int64_t* np = call.n.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(np[b] >= 0 && np[b] <= n_max, "ripu::", op, ": n[", b, "] must be in [0, n_max = ", n_max, "], got ",
                np[b]);
  }
  auto run = [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    ripu::cpu::select_regions<T>(call.score.const_data_ptr<T>(), B, H, W, np, n_max, radius, mask_radius,
                                 call.active_ptr(), call.centers.mutable_data_ptr<int64_t>(),
                                 call.counts.mutable_data_ptr<int64_t>(), call.active_out.mutable_data_ptr<bool>(),
                                 call.selected.mutable_data_ptr<bool>());
  };
  if (call.score.scalar_type() == at::kDouble) {
    run(static_cast<double*>(nullptr));
  } else {
    run(static_cast<float*>(nullptr));
  }
  return {call.centers, call.counts, call.active_out, call.selected};
}

// -------------------------------------------------------------------------------------------------- losses
at::Tensor local_consistency_loss_cpu(const at::Tensor& logits, const at::Tensor& labels, c10::string_view kind,
                                      int64_t neighbors, int64_t ignore_index) {
  const char* op = "local_consistency_loss";
  check_logits(op, logits, kCPU);
  const auto k = parse_kind(op, kind);
  const at::Tensor lab = check_labels(op, logits, labels, neighbors);
  auto out = at::empty({}, logits.options().dtype(compute_type(logits.scalar_type())));
  const Dims4 d = dims_of(logits);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    *out.mutable_data_ptr<T>() = ripu::cpu::lcr_forward<S, T>(data_as<S>(logits), d, lab.const_data_ptr<int64_t>(),
                                                               k, static_cast<int>(neighbors), ignore_index);
  });
  return out;
}

// The upstream gradient as a host number (the CPU launchers take it by value).
double grad_value(const char* op, const at::Tensor& grad) {
  check_grad(op, grad);
  return grad.to(at::kDouble).item<double>();
}

at::Tensor lcr_backward_cpu(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& labels,
                            c10::string_view kind, int64_t neighbors, int64_t ignore_index) {
  const char* op = "_local_consistency_loss_backward";
  check_logits(op, logits, kCPU);
  const auto k = parse_kind(op, kind);
  const at::Tensor lab = check_labels(op, logits, labels, neighbors);
  const double g = grad_value(op, grad);
  at::Tensor dx = grad_buffer(logits);
  const Dims4 d = dims_of(logits), dd = dims_of(dx);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    ripu::cpu::lcr_backward<S, T>(static_cast<T>(g), data_as<S>(logits), d, lab.const_data_ptr<int64_t>(), k,
                                  static_cast<int>(neighbors), ignore_index, dx.mutable_data_ptr<T>(), dd);
  });
  return as_logits_dtype(dx, logits);
}

at::Tensor negative_learning_loss_cpu(const at::Tensor& logits, double threshold) {
  const char* op = "negative_learning_loss";
  check_logits(op, logits, kCPU);
  auto out = at::empty({}, logits.options().dtype(compute_type(logits.scalar_type())));
  const Dims4 d = dims_of(logits);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    *out.mutable_data_ptr<T>() = ripu::cpu::nl_forward<S, T>(data_as<S>(logits), d, static_cast<T>(threshold));
  });
  return out;
}

at::Tensor nl_backward_cpu(const at::Tensor& grad, const at::Tensor& logits, double threshold) {
  const char* op = "_negative_learning_loss_backward";
  check_logits(op, logits, kCPU);
  const double g = grad_value(op, grad);
  at::Tensor dx = grad_buffer(logits);
  const Dims4 d = dims_of(logits), dd = dims_of(dx);
  dispatch_logits(logits, [&](auto s_tag, auto t_tag) {
    RIPU_TYPES(s_tag, t_tag);
    ripu::cpu::nl_backward<S, T>(static_cast<T>(g), data_as<S>(logits), d, static_cast<T>(threshold),
                                 dx.mutable_data_ptr<T>(), dd);
  });
  return as_logits_dtype(dx, logits);
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
