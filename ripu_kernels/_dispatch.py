"""Backend registry and choice (docs/ops.md, "Backends").

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
                    active: bool Tensor (B, H, W) | None) -> (centers, counts, active, selected);
                    every n[b] is clamped to [0, n_max] (no host read of n: it may live on a GPU)
local_consistency_loss  (logits, labels, kind: str, neighbors: int, ignore_index: int) -> 0-d Tensor
negative_learning_loss  (logits, threshold: float) -> 0-d Tensor
==================  =========================================================================

Logits arrive as the caller gave them (any float dtype, NCHW or channels-last or strided); a backend
reads them in place or copies as it needs.

The backend modules are imported once, when ``ripu_kernels`` is imported (:func:`load_backends`), never inside an
op call: an import inside a call made under ``torch.compile`` breaks the graph. A backend whose import fails is
recorded with the reason, which explicit requests (``backend="cpu"``) report as a ``ValueError``.

``backend="auto"``:

- CPU tensors: ``cpu`` (the compiled kernels) when the extension loaded, else ``reference`` (one warning at import
  says why the extension did not load).
- CUDA tensors: per op, the first *available* backend of ``ripu_kernels._verified.VERIFIED[op]`` -- the backends
  that passed every GPU test of that op in a ``make gpu-check`` run, fastest first as measured there -- else
  ``reference``. Until a GPU run has been recorded (``tools/update_verified.py``) the table is empty and ``auto``
  runs the reference on CUDA tensors: plain PyTorch, correct everywhere. ``backend="cuda"`` / ``"triton"`` still
  run the kernels when asked for explicitly.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import torch

from . import _verified

BACKENDS = ("reference", "cpu", "cuda", "triton")

_MODULES = {
    "reference": "ripu_kernels.reference._impl",
    "cpu": "ripu_kernels._backend_cpp",
    "cuda": "ripu_kernels._backend_cuda",
    "triton": "ripu_kernels.triton",
}

# Order in which available_backends lists what can run (auto on CPU tensors follows it; on CUDA tensors auto
# follows the verified table instead).
_ORDER = {
    "cuda": ("cuda", "triton", "reference"),
    "cpu": ("cpu", "reference"),
}

# name -> (module, None) or (None, why it could not be imported); filled by load_backends().
_LOADED: dict[str, tuple[ModuleType | None, str | None]] = {}


class ExtensionUnavailableWarning(UserWarning):
    """The compiled extension ``ripu_kernels._C`` did not load: ``auto`` uses the pure-PyTorch reference."""


def load_backends(warn: bool = True) -> None:
    """Import every backend module once and remember why any of them could not be imported.

    With ``warn``, one :class:`ExtensionUnavailableWarning` says why the compiled extension is unavailable (the
    ``cpu`` and ``cuda`` backends then fall back to the reference under ``auto``).
    """
    for name in BACKENDS:
        if name in _LOADED:
            continue
        try:
            _LOADED[name] = (importlib.import_module(_MODULES[name]), None)
        except ImportError as exc:  # the backend's dependency (extension, triton) is missing or stale
            _LOADED[name] = (None, f"it could not be imported ({exc})")
    why = _LOADED["cpu"][1]
    if warn and why is not None:
        hint = "" if "rebuild" in why else (" Build it with `pip install --no-build-isolation --no-deps -e .` "
                                            "(or `make setup`).")
        warnings.warn(f"ripu_kernels: the compiled extension is unavailable: {why}. backend='auto' runs the "
                      f"pure-PyTorch reference instead (correct, but about 30x slower on CPU).{hint}",
                      ExtensionUnavailableWarning, stacklevel=3)


def _load(name: str) -> tuple[ModuleType | None, str | None]:
    if name not in _LOADED:  # only when ripu_kernels._dispatch is used before the package finished importing
        load_backends(warn=False)
    return _LOADED[name]


def unavailable_reason(name: str, device: torch.device) -> str | None:
    """``None`` when backend ``name`` can run on tensors of ``device``, else a human-readable reason."""
    module, why = _load(name)
    if module is None:
        return why
    return module.unavailable_reason(device)


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """The backends that can run on tensors of ``device``: on CPU fastest first, as ``auto`` tries them.

    On CUDA tensors ``auto`` does not simply take the first of these: it takes, per op, the first available backend
    that a recorded GPU run verified (``ripu_kernels._verified``), else the reference (docs/ops.md, "Backends").
    """
    device = torch.device(device)
    order = _ORDER.get(device.type, ("reference",))
    rest = [b for b in BACKENDS if b not in order]
    return [b for b in (*order, *rest) if unavailable_reason(b, device) is None]


def auto_candidates(op: str, device: torch.device) -> tuple[str, ...]:
    """The backends ``auto`` tries for ``op`` on ``device``, in order (the last, ``reference``, always runs)."""
    if device.type == "cuda":
        return (*_verified.VERIFIED.get(op, ()), "reference")
    return _ORDER.get(device.type, ("reference",))


def resolve(op: str, backend: str, device: torch.device) -> str:
    """Name of the backend that runs ``op`` for tensors on ``device`` (raises ``ValueError`` when none)."""
    if not isinstance(backend, str) or (backend != "auto" and backend not in BACKENDS):
        raise ValueError(
            f"ripu::{op}: backend must be one of 'auto', {', '.join(repr(b) for b in BACKENDS)}; got {backend!r}"
        )
    if backend == "auto":
        for name in auto_candidates(op, device):
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
