"""The compiled backends ``cpu`` and ``cuda``: ``torch.ops.ripu.*`` from the extension ``ripu_kernels._C``.

Importing ``ripu_kernels._C`` runs the C++ registrations (``TORCH_LIBRARY(ripu, m)`` with every schema and the
CPU/CUDA kernels, see ``python/ripu_ops.cpp``). This module adds, from Python, the fake (meta) kernels that
``torch.compile`` and ``torch.library.opcheck`` need and the autograd formulas of the two losses, whose backward
passes are the compiled ``ripu::_<loss>_backward`` ops (a second derivative through them raises, naming the op).
It raises ImportError when the extension is not built, or was built against another torch than the one running
(``_C.TORCH_VERSION``), which the dispatcher reports as "backend unavailable" with the reason.
"""
from __future__ import annotations

import torch

from .types import compute_dtype

_REBUILD = "rebuild with `pip install --no-build-isolation --no-deps -e .` (or `make setup`)"

try:
    from . import _C  # registers torch.ops.ripu.*
except ImportError as exc:
    if "undefined symbol" in str(exc) or "symbol not found" in str(exc):
        raise ImportError(f"{exc} (ripu_kernels._C was probably built against another torch: {_REBUILD})") from exc
    raise

# A _C built against another torch may import (its symbols happen to resolve) yet crash or compute garbage: only the
# torch it was built with may run it.
_BUILT_WITH = getattr(_C, "TORCH_VERSION", None)
if _BUILT_WITH != torch.__version__:
    raise ImportError(f"ripu_kernels._C was built against torch {_BUILT_WITH or '(unknown: an older checkout)'}, "
                      f"running torch {torch.__version__}: {_REBUILD}")

# Asked once here (a dispatcher query inside an op call would break a torch.compile graph).
HAS_CUDA_KERNELS = bool(getattr(_C, "WITH_CUDA", 0)) and torch._C._dispatch_has_kernel_for_dispatch_key(
    "ripu::region_scores", "CUDA")

_ops = torch.ops.ripu


# ------------------------------------------------------------------------------------------- fake kernels
@torch.library.register_fake("ripu::pixel_entropy")
def _pixel_entropy_fake(logits):
    b, _, h, w = logits.shape
    return logits.new_empty((b, h, w), dtype=compute_dtype(logits.dtype))


def _scores_fake(logits, k, size, align_corners):
    b, _, h, w = logits.shape
    if size is not None:
        h, w = size
    out = logits.new_empty((b, h, w), dtype=compute_dtype(logits.dtype))
    return out, torch.empty_like(out), torch.empty_like(out)


torch.library.register_fake("ripu::region_scores")(_scores_fake)
torch.library.register_fake("ripu::pixel_scores")(_scores_fake)


@torch.library.register_fake("ripu::select_regions")
def _select_regions_fake(score, n, n_max, radius, mask_radius, active):
    b = score.shape[0]
    centers = score.new_empty((b, n_max, 2), dtype=torch.int64)
    counts = score.new_empty((b,), dtype=torch.int64)
    act = score.new_empty(score.shape, dtype=torch.bool)
    sel = score.new_empty(score.shape, dtype=torch.bool)
    return centers, counts, act, sel


@torch.library.register_fake("ripu::local_consistency_loss")
def _lcr_fake(logits, labels, kind, neighbors, ignore_index):
    return logits.new_empty((), dtype=compute_dtype(logits.dtype))


@torch.library.register_fake("ripu::_local_consistency_loss_backward")
def _lcr_backward_fake(grad, logits, labels, kind, neighbors, ignore_index):
    return torch.empty_like(logits)


@torch.library.register_fake("ripu::negative_learning_loss")
def _nl_fake(logits, threshold):
    return logits.new_empty((), dtype=compute_dtype(logits.dtype))


@torch.library.register_fake("ripu::_negative_learning_loss_backward")
def _nl_backward_fake(grad, logits, threshold):
    return torch.empty_like(logits)


# ----------------------------------------------------------------------------------------------- autograd
def _lcr_setup_context(ctx, inputs, output):
    logits, labels, kind, neighbors, ignore_index = inputs
    ctx.save_for_backward(logits, labels)
    ctx.kind, ctx.neighbors, ctx.ignore_index = kind, neighbors, ignore_index


def _lcr_backward(ctx, grad):
    logits, labels = ctx.saved_tensors
    dx = _ops._local_consistency_loss_backward(grad, logits, labels, ctx.kind, ctx.neighbors, ctx.ignore_index)
    return dx, None, None, None, None


torch.library.register_autograd("ripu::local_consistency_loss", _lcr_backward, setup_context=_lcr_setup_context)


def _nl_setup_context(ctx, inputs, output):
    logits, threshold = inputs
    ctx.save_for_backward(logits)
    ctx.threshold = threshold


def _nl_backward(ctx, grad):
    (logits,) = ctx.saved_tensors
    return _ops._negative_learning_loss_backward(grad, logits, ctx.threshold), None


torch.library.register_autograd("ripu::negative_learning_loss", _nl_backward, setup_context=_nl_setup_context)


# The backward ops have no derivative of their own: differentiating them (double backward, e.g. a gradient
# penalty through a loss) raises here, naming the loss, instead of silently giving zeros.
def _no_double_backward(loss: str):
    def backward(ctx, grad):
        raise RuntimeError(f"ripu::{loss}: double backward (the gradient of its gradient) is not implemented by the "
                           f"compiled cpu/cuda kernels; use backend='reference' (plain autograd) for it")

    return backward


torch.library.register_autograd("ripu::_local_consistency_loss_backward",
                                _no_double_backward("local_consistency_loss"))
torch.library.register_autograd("ripu::_negative_learning_loss_backward",
                                _no_double_backward("negative_learning_loss"))


# ------------------------------------------------------------------------------------- backend interface
def unavailable_reason(device: torch.device) -> str | None:
    """Backend ``cpu``: compiled CPU kernels, for CPU tensors only (``cuda`` lives in ``_backend_cuda``)."""
    device = torch.device(device)
    if device.type == "cpu":
        return None
    return f"the cpu backend runs on CPU tensors only (use backend='cuda' for {device.type} tensors)"


def cuda_unavailable_reason(device: torch.device) -> str | None:
    """Backend ``cuda``: the same ops, for CUDA tensors, when the extension was built with CUDA kernels."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"the cuda backend runs on CUDA tensors only, got a {device.type} tensor"
    if not HAS_CUDA_KERNELS:
        return "the extension ripu_kernels._C was built without CUDA kernels"
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return None


def pixel_entropy(logits):
    return _ops.pixel_entropy(logits)


def region_scores(logits, k, size, align_corners):
    return _ops.region_scores(logits, k, None if size is None else list(size), align_corners)


def pixel_scores(logits, k, size, align_corners):
    return _ops.pixel_scores(logits, k, None if size is None else list(size), align_corners)


def select_regions(score, n, n_max, radius, mask_radius, active):
    return _ops.select_regions(score, n, n_max, radius, mask_radius, active)


def local_consistency_loss(logits, labels, kind, neighbors, ignore_index):
    return _ops.local_consistency_loss(logits, labels, kind, neighbors, ignore_index)


def negative_learning_loss(logits, threshold):
    return _ops.negative_learning_loss(logits, threshold)
