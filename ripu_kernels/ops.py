"""The public ops (docs/ops.md is their contract): argument validation and backend choice, no kernels.

Integer arguments accept any integral scalar (``int``, NumPy integers, 0-d integer tensors), never ``bool``.
"""
from __future__ import annotations

import math
import numbers
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
def _is_int(value) -> bool:
    """An integral scalar: int, a NumPy integer (numbers.Integral), a 0-d integer tensor; not bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (numbers.Integral, torch.SymInt)):  # SymInt: a size under torch.compile's dynamic shapes
        return True
    return (isinstance(value, torch.Tensor) and value.dim() == 0 and not value.dtype.is_floating_point
            and not value.dtype.is_complex and value.dtype != torch.bool)


def _check_int(op: str, name: str, value, minimum: int = 0) -> int:
    if not _is_int(value):
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
    if not isinstance(size, Sequence) or len(size) != 2 or not all(_is_int(s) for s in size):
        raise ValueError(f"ripu::{op}: size must be None or a pair of ints (H, W), got {size!r}")
    size = (int(size[0]), int(size[1]))
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
    ``F.interpolate(logits, size, mode="bilinear", align_corners=align_corners)`` does on CPU tensors. A window that
    holds one class scores exactly 0. See docs/ops.md, "region_scores".
    """
    return _scores("region_scores", logits, k, size, align_corners, backend)


def pixel_scores(logits: torch.Tensor, k: int = 32, size=None, align_corners: bool = True, *,
                 backend: str = "auto") -> Scores:
    """Pixel score ``P * e`` (PA): impurity over the ``(2k+1)^2`` window times the pixel's own entropy.

    The ``uncertainty`` field of the result is the pixel entropy ``e``.
    """
    return _scores("pixel_scores", logits, k, size, align_corners, backend)


def max_picks(height: int, width: int, mask_radius: int) -> int:
    """The most centres one image of ``height x width`` can yield with suppression radius ``mask_radius``.

    Picks are pairwise more than ``mask_radius`` apart (Chebyshev distance): each ``(m+1) x (m+1)`` block of the
    image holds at most one, so there are at most ``ceil(H/(m+1)) * ceil(W/(m+1))``. ``centers`` is never wider.
    """
    step = mask_radius + 1
    return -(-height // step) * -(-width // step)


def select_regions(score: torch.Tensor, n, radius: int = 1, mask_radius: int | None = None,
                   active: torch.Tensor | None = None, *, n_max: int | None = None,
                   backend: str = "auto") -> Selection:
    """Exact greedy selection of up to ``n`` window centres per image (docs/ops.md, "select_regions").

    Repeatedly takes the available pixel with the highest score (ties: smallest flat index), marks the
    clipped ``(2*mask_radius+1)^2`` window ``active`` and the ``(2*radius+1)^2`` window ``selected``.
    NaN, ``-inf`` and already ``active`` pixels are unavailable; stops early when none is left.

    ``n`` is an int or a ``(B,)`` integer tensor (one budget per image). ``centers`` is ``(B, w, 2)`` with
    ``w = min(n_max, max_picks(H, W, mask_radius))``, where ``n_max`` is ``n`` for an int ``n``; for a tensor ``n``
    it is the ``n_max`` argument when given (then every ``n[b]`` is clamped to ``[0, n_max]`` without reading ``n``
    on the host, so the call has no host synchronisation and traces under ``torch.compile(fullgraph=True)``), else
    ``int(n.max())``, a host read that ``torch.compile`` cannot trace: pass ``n_max`` there.
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
    batch, height, width = score.shape
    bound = max_picks(height, width, mask_radius)
    if n_max is not None:
        n_max = _check_int(op, "n_max", n_max)
    if isinstance(n, torch.Tensor) and n.dim() == 1:
        if n.dtype.is_floating_point or n.dtype.is_complex or n.dtype == torch.bool:
            raise ValueError(f"ripu::{op}: n must be an int or an integer tensor of shape (B,), got {n.dtype}")
        if n.shape[0] != batch:
            raise ValueError(f"ripu::{op}: n must have shape (B,) = ({batch},), got {tuple(n.shape)}")
        n_t = n.to(device=score.device, dtype=torch.int64)
        if n_max is None:
            if torch.compiler.is_compiling():
                raise ValueError(f"ripu::{op}: with a tensor n, pass n_max= (an int bounding n) under torch.compile: "
                                 "the width of centers would otherwise be read from n on the host")
            if batch and int(n_t.min()) < 0:  # host reads: the output's width depends on n
                raise ValueError(f"ripu::{op}: n must be >= 0, got {int(n_t.min())}")
            n_max = int(n_t.max()) if batch else 0
    else:
        n_int = _check_int(op, "n", n)
        n_max = n_int if n_max is None else min(n_int, n_max)
        n_t = torch.full((batch,), min(n_max, bound), dtype=torch.int64, device=score.device)
    n_max = min(n_max, bound)
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
    ``ignore_index``; 0 (with zero gradient) when there are none. The gradient is exactly 0 at pixels more than one
    step from every boundary pixel, even where their logits are not finite. Double backward: ``reference`` only
    (the compiled backends raise, naming the op). See docs/ops.md, "local_consistency_loss".
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
    if not isinstance(kind, str) or kind not in ("l1", "kl"):
        raise ValueError(f"ripu::{op}: kind must be 'l1' or 'kl', got {kind!r}")
    if not _is_int(neighbors) or int(neighbors) not in (4, 8):
        got = int(neighbors) if _is_int(neighbors) else repr(neighbors)
        raise ValueError(f"ripu::{op}: neighbors must be 4 or 8, got {got}")
    ignore_index = _check_int(op, "ignore_index", ignore_index, minimum=-(2**62))
    fn = _dispatch.get(op, backend, logits.device)
    return fn(logits, labels, kind, int(neighbors), ignore_index)


def negative_learning_loss(logits: torch.Tensor, threshold: float = 0.05, *, backend: str = "auto") -> torch.Tensor:
    """Negative learning (NL): ``sum(mask * -log(1 - p + 1e-6)) / sum(mask)`` with ``mask = p < threshold``.

    No gradient flows through the mask; the loss is 0 (with zero gradient) when the mask is empty. A pixel with a
    non-finite logit has NaN probabilities, which count as masked: the loss is then NaN, as cross-entropy and LCR
    would be. Double backward: ``reference`` only. See docs/ops.md, "negative_learning_loss".
    """
    op = "negative_learning_loss"
    _check_logits(op, logits)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        raise ValueError(f"ripu::{op}: threshold must be a finite number, got {threshold!r}")
    fn = _dispatch.get(op, backend, logits.device)
    return fn(logits, float(threshold))
