"""The Triton backend: Triton kernels registered as ``torch.library.triton_op`` (namespace ``ripu_triton``).

The dispatcher imports this module to ask :func:`unavailable_reason`, so it must import without Triton:
``import triton`` happens only inside the kernel modules (``_scores``, ``_losses``), which the six functions
below import on first use. On CUDA tensors the kernels are compiled; on CPU tensors they run under Triton's
interpreter, which must be switched on (``TRITON_INTERPRET=1``) before the first call imports the kernels.

``select_regions`` has no Triton kernel: it runs the CUDA backend's kernel when that is built for the
device, else the reference implementation.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import torch

# find_spec locates the package without importing it; asked once (torch.compile cannot trace it).
_HAVE_TRITON = importlib.util.find_spec("triton") is not None
_INTERPRET_HINT = "Triton runs on CUDA tensors; set TRITON_INTERPRET=1 to run its interpreter on CPU"


def unavailable_reason(device: torch.device) -> str | None:
    """``None`` when the Triton kernels can run on tensors of ``device``, else why not."""
    if not _HAVE_TRITON:
        return "the 'triton' package is not installed"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available to PyTorch"
        return None
    if device.type == "cpu":
        if os.environ.get("TRITON_INTERPRET") != "1":
            return _INTERPRET_HINT
        common = sys.modules.get(__name__ + "._common")
        if common is not None and not common.INTERPRET:
            return ("the Triton kernels were already built for the GPU (TRITON_INTERPRET was unset when they were "
                    "first used); set TRITON_INTERPRET=1 before the first Triton call to run them on CPU")
        return None
    return f"Triton kernels do not run on {device.type} tensors"


def pixel_entropy(logits):
    from . import _scores

    return _scores.pixel_entropy(logits)


def region_scores(logits, k, size, align_corners):
    from . import _scores

    return _scores.region_scores(logits, k, size, align_corners)


def pixel_scores(logits, k, size, align_corners):
    from . import _scores

    return _scores.pixel_scores(logits, k, size, align_corners)


def select_regions(score, n, n_max, radius, mask_radius, active):
    from .. import _dispatch

    if _dispatch.unavailable_reason("cuda", score.device) is None and score.device.type == "cuda":
        from .. import _backend_cpp  # type: ignore[attr-defined]

        return _backend_cpp.select_regions(score, n, n_max, radius, mask_radius, active)
    from ..reference import _impl

    return _impl.select_regions(score, n, n_max, radius, mask_radius, active)


def local_consistency_loss(logits, labels, kind, neighbors, ignore_index):
    from . import _losses

    return _losses.local_consistency_loss(logits, labels, kind, neighbors, ignore_index)


def negative_learning_loss(logits, threshold):
    from . import _losses

    return _losses.negative_learning_loss(logits, threshold)
