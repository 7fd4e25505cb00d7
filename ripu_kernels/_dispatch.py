"""Backend registry and choice.

Every backend is a module exposing the six ops with *normalised* arguments (already validated by
``ripu_kernels.ops``) and an ``unavailable_reason(device) -> str | None`` function:

==================  =========================================================================
function            signature (all tensors on one device; outputs float32, float64 for float64)
==================  =========================================================================
pixel_entropy       (logits) -> Tensor (B, H, W)
region_scores       (logits, k: int, size: tuple[int, int] | None, align_corners: bool)
                    -> (score, impurity, uncertainty)
pixel_scores        same as region_scores
select_regions      (score, n: int64 Tensor (B,), n_max: int, radius: int, mask_radius: int,
                    active: bool Tensor (B, H, W) | None) -> (centers, counts, active, selected)
local_consistency_loss  (logits, labels, kind: str, neighbors: int, ignore_index: int) -> 0-d Tensor
negative_learning_loss  (logits, threshold: float) -> 0-d Tensor
==================  =========================================================================

Logits arrive as the caller gave them (any float dtype, NCHW or channels-last or strided); a backend
reads them in place or copies as it needs.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

import torch

BACKENDS = ("reference", "cpu", "cuda", "triton")

_MODULES = {
    "reference": "ripu_kernels.reference._impl",
    "cpu": "ripu_kernels._backend_cpp",
    "cuda": "ripu_kernels._backend_cpp",
    "triton": "ripu_kernels.triton",
}

# Preference order of ``backend="auto"`` per device type.
_AUTO = {
    "cuda": ("cuda", "triton", "reference"),
    "cpu": ("cpu", "reference"),
}


def _load(name: str) -> tuple[ModuleType | None, str | None]:
    module = sys.modules.get(_MODULES[name])  # already imported: no importlib call, so torch.compile traces it
    if module is not None:
        return module, None
    try:
        return importlib.import_module(_MODULES[name]), None
    except ImportError as exc:  # the backend's dependency (extension, triton) is missing
        return None, f"it could not be imported ({exc})"


def unavailable_reason(name: str, device: torch.device) -> str | None:
    """``None`` when backend ``name`` can run on tensors of ``device``, else a human-readable reason."""
    module, why = _load(name)
    if module is None:
        return why
    return module.unavailable_reason(device)


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """The backends that can run on tensors of ``device``, fastest first as ``auto`` would try them."""
    device = torch.device(device)
    order = _AUTO.get(device.type, ("reference",))
    rest = [b for b in BACKENDS if b not in order]
    return [b for b in (*order, *rest) if unavailable_reason(b, device) is None]


def resolve(op: str, backend: str, device: torch.device) -> str:
    """Name of the backend that runs ``op`` for tensors on ``device`` (raises ``ValueError`` when none)."""
    if not isinstance(backend, str) or (backend != "auto" and backend not in BACKENDS):
        raise ValueError(
            f"ripu::{op}: backend must be one of 'auto', {', '.join(repr(b) for b in BACKENDS)}; got {backend!r}"
        )
    if backend == "auto":
        for name in _AUTO.get(device.type, ("reference",)):
            if unavailable_reason(name, device) is None:
                return name
        return "reference"
    why = unavailable_reason(backend, device)
    if why is not None:
        raise ValueError(f"ripu::{op}: backend {backend!r} is not available for a {device.type} tensor: {why}")
    return backend


def get(op: str, backend: str, device: torch.device):
    """The implementation of ``op`` in the backend chosen for ``device``."""
    name = resolve(op, backend, device)
    module, _ = _load(name)
    return getattr(module, op)
