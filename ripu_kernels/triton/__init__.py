"""The Triton backend: Triton kernels registered as ``torch.library.triton_op`` (namespace ``ripu_triton``).

The dispatcher imports this module to ask :func:`unavailable_reason`, so it must import without Triton:
``import triton`` happens only inside the kernel modules (``_scores``, ``_losses``), which the six functions
below import on first use; the versions are read from the package metadata (triton >= 3.3, torch >= 2.6). On CUDA tensors the kernels are compiled; on CPU tensors they run under Triton's
interpreter, which must be switched on (``TRITON_INTERPRET=1``) before the first call imports the kernels.

``select_regions`` has no Triton kernel: it runs the CUDA backend's kernel when that is built for the
device, else the reference implementation.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys

import torch

# Oldest versions the backend supports. torch: torch.library.triton_op and wrap_triton (2.6). triton: setup.py's
# [triton] extra; the kernels use tl.range(loop_unroll_factor=...) and tl.add(..., sanitize_overflow=False).
# Tested with torch 2.13 and triton 3.9.
MIN_TRITON = (3, 3)
MIN_TORCH = (2, 6)

_INTERPRET_HINT = "Triton runs on CUDA tensors; set TRITON_INTERPRET=1 to run its interpreter on CPU"


def _version_tuple(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string such as '3.3.1', '2.6.0+cu124' or '3.4.0.dev20250101'."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def _installed_triton_version() -> str | None:
    """The installed triton's version without importing it ('' when the package has no metadata), None if absent."""
    if importlib.util.find_spec("triton") is None:
        return None
    for dist in ("triton", "pytorch-triton", "pytorch-triton-rocm", "triton-nightly"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def version_problem(triton_version: str | None, torch_version: str) -> str | None:
    """Why these versions cannot run the backend (naming what is missing), or None."""
    if triton_version is None:
        return "the 'triton' package is not installed"
    if _version_tuple(torch_version) < MIN_TORCH:
        return (f"the Triton backend needs torch >= {'.'.join(map(str, MIN_TORCH))} (torch.library.triton_op and "
                f"wrap_triton), found torch {torch_version}")
    if triton_version and _version_tuple(triton_version) < MIN_TRITON:
        return (f"the Triton backend needs triton >= {'.'.join(map(str, MIN_TRITON))} (setup.py's [triton] extra; "
                f"its kernels use tl.range(loop_unroll_factor=...) and tl.add(sanitize_overflow=...)), found "
                f"triton {triton_version}")
    return None


# Asked once, without importing triton (torch.compile cannot trace importlib either).
_VERSION_PROBLEM = version_problem(_installed_triton_version(), torch.__version__)


def unavailable_reason(device: torch.device) -> str | None:
    """``None`` when the Triton kernels can run on tensors of ``device``, else why not."""
    if _VERSION_PROBLEM is not None:
        return _VERSION_PROBLEM
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
