"""The public ops of shared/SPEC.md: argument validation and backend choice, no kernels."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from . import _dispatch
from .types import Scores, Selection

__all__ = [
    "pixel_entropy",
    "region_scores",
    "pixel_scores",
    "select_regions",
    "local_consistency_loss",
    "negative_learning_loss",
]


# ----------------------------------------------------------------------------------------------- checks
def _check_int(op: str, name: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        isinstance(value, torch.Tensor) and value.dim() == 0 and not value.dtype.is_floating_point
    ):
        raise TypeError(f"ripu::{op}: {name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"ripu::{op}: {name} must be >= {minimum}, got {value}")
    return value


def _check_logits(op: str, logits, name: str = "logits") -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"ripu::{op}: {name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 4:
        raise ValueError(f"ripu::{op}: {name} must be a 4-D tensor (B, C, H, W), got {logits.dim()}-D "
                         f"of shape {tuple(logits.shape)}")
    if not logits.dtype.is_floating_point:
        raise ValueError(f"ripu::{op}: {name} must have a floating-point dtype, got {logits.dtype}")
    if logits.shape[1] < 1:
        raise ValueError(f"ripu::{op}: {name} must have at least one class (C >= 1), got C = {logits.shape[1]}")
    return logits


def _check_size(op: str, size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, torch.Size):
        size = tuple(size)
    if not isinstance(size, Sequence) or len(size) != 2 or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in size
    ):
        raise ValueError(f"ripu::{op}: size must be None or a pair of ints (H, W), got {size!r}")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"ripu::{op}: size must be positive, got {tuple(size)}")
    return (int(size[0]), int(size[1]))


def _check_bool(op: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"ripu::{op}: {name} must be a bool, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------------------------------------- ops
def pixel_entropy(logits: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Normalised softmax entropy ``-sum_c p_c log p_c / log C`` per pixel, ``(B, H, W)``.

    ``0 log 0 = 0``; the entropy is 0 when ``C == 1``; a pixel with a non-finite logit gets NaN.
    """
    _check_logits("pixel_entropy", logits)
    fn = _dispatch.get("pixel_entropy", backend, logits.device)
    with torch.no_grad():
        return fn(logits.detach())


def _scores(op: str, logits, k, size, align_corners, backend) -> Scores:
    _check_logits(op, logits)
    k = _check_int(op, "k", k)
    size = _check_size(op, size)
    align_corners = _check_bool(op, "align_corners", align_corners)
    fn = _dispatch.get(op, backend, logits.device)
    with torch.no_grad():
        return Scores(*fn(logits.detach(), k, size, align_corners))


def region_scores(logits: torch.Tensor, k: int = 1, size=None, align_corners: bool = True, *,
                  backend: str = "auto") -> Scores:
    """Region impurity ``P`` and uncertainty ``U`` over the clipped ``(2k+1)^2`` window; ``score = P * U`` (RA).

    ``size=(H2, W2)`` first resizes the logits bilinearly (fused, never materialised) as
    ``F.interpolate(logits, size, mode="bilinear", align_corners=align_corners)`` would.
    """
    return _scores("region_scores", logits, k, size, align_corners, backend)


def pixel_scores(logits: torch.Tensor, k: int = 32, size=None, align_corners: bool = True, *,
                 backend: str = "auto") -> Scores:
    """Pixel score ``P * e`` (PA): impurity over the ``(2k+1)^2`` window times the pixel's own entropy.

    The ``uncertainty`` field of the result is the pixel entropy ``e``.
    """
    return _scores("pixel_scores", logits, k, size, align_corners, backend)


def select_regions(score: torch.Tensor, n, radius: int = 1, mask_radius: int | None = None,
                   active: torch.Tensor | None = None, *, backend: str = "auto") -> Selection:
    """Exact greedy selection of up to ``n`` window centres per image (SPEC, "Selection").

    Repeatedly takes the available pixel with the highest score (ties: smallest flat index), marks the
    clipped ``(2*mask_radius+1)^2`` window ``active`` and the ``(2*radius+1)^2`` window ``selected``.
    NaN, ``-inf`` and already ``active`` pixels are unavailable; stops early when none is left.
    """
    op = "select_regions"
    if not isinstance(score, torch.Tensor):
        raise TypeError(f"ripu::{op}: score must be a torch.Tensor, got {type(score).__name__}")
    if score.dim() != 3:
        raise ValueError(f"ripu::{op}: score must be a 3-D tensor (B, H, W), got {score.dim()}-D "
                         f"of shape {tuple(score.shape)}")
    if not score.dtype.is_floating_point:
        raise ValueError(f"ripu::{op}: score must have a floating-point dtype, got {score.dtype}")
    radius = _check_int(op, "radius", radius)
    mask_radius = 2 * radius if mask_radius is None else _check_int(op, "mask_radius", mask_radius)
    batch = score.shape[0]
    if isinstance(n, torch.Tensor) and n.dim() == 1:
        if n.dtype.is_floating_point or n.dtype == torch.bool:
            raise ValueError(f"ripu::{op}: n must be an int or an integer tensor of shape (B,), got {n.dtype}")
        if n.shape[0] != batch:
            raise ValueError(f"ripu::{op}: n must have shape (B,) = ({batch},), got {tuple(n.shape)}")
        n_t = n.to(device=score.device, dtype=torch.int64)
        n_max = int(n_t.max()) if batch else 0  # the one host read: the output's shape depends on it
        if batch and int(n_t.min()) < 0:
            raise ValueError(f"ripu::{op}: n must be >= 0, got {n_t.min().item()}")
    else:
        n_max = _check_int(op, "n", n)
        n_t = torch.full((batch,), n_max, dtype=torch.int64, device=score.device)
    if active is not None:
        if not isinstance(active, torch.Tensor) or active.dtype != torch.bool:
            got = active.dtype if isinstance(active, torch.Tensor) else type(active).__name__
            raise ValueError(f"ripu::{op}: active must be None or a bool tensor, got {got}")
        if active.shape != score.shape:
            raise ValueError(f"ripu::{op}: active must have the shape of score {tuple(score.shape)}, "
                             f"got {tuple(active.shape)}")
        if active.device != score.device:
            raise ValueError(f"ripu::{op}: active must be on the device of score ({score.device}), "
                             f"got {active.device}")
    fn = _dispatch.get(op, backend, score.device)
    with torch.no_grad():
        return Selection(*fn(score.detach(), n_t, n_max, radius, mask_radius, active))


def local_consistency_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "l1", neighbors: int = 8,
                           ignore_index: int = 255, *, backend: str = "auto") -> torch.Tensor:
    """Local consistency regulariser (LCR) on label-boundary pixels; a differentiable scalar.

    ``d = sum_c |p - mean|`` (``kind="l1"``) or ``sum_c p log(p / (mean + 1e-6) + 1e-6)`` (``"kl"``) where
    ``mean`` is the 3x3 box (``neighbors=8``) or 5-pixel cross (``4``) mean of the softmax with replicate
    padding; averaged over pixels where the label map's Laplacian is non-zero and the label is not
    ``ignore_index``; 0 when there are none.
    """
    op = "local_consistency_loss"
    _check_logits(op, logits)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"ripu::{op}: labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"ripu::{op}: labels must have an integer dtype, got {labels.dtype}")
    b, _, h, w = logits.shape
    if labels.shape != (b, h, w):
        raise ValueError(f"ripu::{op}: labels must have shape (B, H, W) = {(b, h, w)}, got {tuple(labels.shape)}")
    if labels.device != logits.device:
        raise ValueError(f"ripu::{op}: labels must be on the device of logits ({logits.device}), got {labels.device}")
    if kind not in ("l1", "kl"):
        raise ValueError(f"ripu::{op}: kind must be 'l1' or 'kl', got {kind!r}")
    if isinstance(neighbors, bool) or neighbors not in (4, 8):
        raise ValueError(f"ripu::{op}: neighbors must be 4 or 8, got {neighbors!r}")
    ignore_index = _check_int(op, "ignore_index", ignore_index, minimum=-(2**62))
    fn = _dispatch.get(op, backend, logits.device)
    return fn(logits, labels, kind, int(neighbors), ignore_index)


def negative_learning_loss(logits: torch.Tensor, threshold: float = 0.05, *, backend: str = "auto") -> torch.Tensor:
    """Negative learning (NL): ``sum(mask * -log(1 - p + 1e-6)) / sum(mask)`` with ``mask = p < threshold``.

    No gradient flows through the mask; the loss is 0 when the mask is empty.
    """
    op = "negative_learning_loss"
    _check_logits(op, logits)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"ripu::{op}: threshold must be a finite number, got {threshold!r}")
    fn = _dispatch.get(op, backend, logits.device)
    return fn(logits, float(threshold))
