"""Pure-PyTorch reference of every op: readable, vectorised, exact. The other backends are tested against it.

Functions take the normalised arguments documented in ``ripu_kernels._dispatch``. Window statistics use
integral images (exact integer counts for the impurity, float64 sums for the uncertainty), so the reference
stays usable on full 1024 x 2048 maps; it still favours clarity over speed. docs/ops.md is the contract it
implements; where this file and docs/ops.md disagree, one of them has a bug.

Every function traces under ``torch.compile(fullgraph=True)``: the greedy selection loop (host-side Python) is
wrapped as the custom op ``ripu_reference::select_regions`` with a fake kernel, so the compiler sees one opaque call.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..types import compute_dtype


def unavailable_reason(device: torch.device) -> str | None:
    return None  # runs wherever PyTorch runs


def _linear_along(x: torch.Tensor, dim: int, length: int, align_corners: bool) -> torch.Tensor:
    """Linear resize of (B, C, H, W) ``x`` along ``dim`` (2 or 3) only."""
    if dim == 2:
        return _linear_along(x.transpose(2, 3), 3, length, align_corners).transpose(2, 3)
    b, c, h, w = x.shape
    y = F.interpolate(x.reshape(b, c * h, w), size=length, mode="linear", align_corners=align_corners)
    return y.reshape(b, c, h, length)


def _prepare(logits: torch.Tensor, size=None, align_corners: bool = True) -> torch.Tensor:
    """Logits in the compute dtype, resized as ``F.interpolate(mode="bilinear")`` does on CPU tensors.

    The contract follows the CPU kernel of F.interpolate: along an axis whose size does not change it reads each
    pixel alone, while the CUDA kernel also reads the next pixel with weight 0, so an inf there spreads a NaN
    (0 * inf) onto its neighbour. On other devices an unchanged axis is therefore left out of the resize (a linear
    resize along the other axis alone; the same values up to an ulp).
    """
    x = logits.to(compute_dtype(logits.dtype))
    if size is None:
        return x
    b, c, h, w = x.shape
    h2, w2 = size
    if b == 0:
        return x.new_empty((0, c, h2, w2))
    if x.device.type != "cpu" and (h2 == h) != (w2 == w):
        return _linear_along(x, 3, w2, align_corners) if h2 == h else _linear_along(x, 2, h2, align_corners)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def _entropy(x: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of softmax over dim 1 of float32/64 logits; NaN where any logit is not finite."""
    b, c, h, w = x.shape
    finite = torch.isfinite(x).all(dim=1)
    if c == 1:
        e = torch.zeros((b, h, w), dtype=x.dtype, device=x.device)
    else:
        logp = torch.log_softmax(x, dim=1)
        p = logp.exp()
        e = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(dim=1) / math.log(c)
    return torch.where(finite, e, torch.full_like(e, float("nan")))


def _window_bounds(n: int, k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """First and one-past-last index of the clipped window of radius ``k`` around each of ``n`` positions."""
    i = torch.arange(n, device=device)
    return (i - k).clamp(min=0), (i + k + 1).clamp(max=n)


def _box_sum(v: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of ``v`` (B, H, W) over the clipped (2k+1)^2 window of every pixel, via an integral image."""
    b, h, w = v.shape
    integral = torch.zeros((b, h + 1, w + 1), dtype=v.dtype, device=v.device)
    integral[:, 1:, 1:] = v.cumsum(1).cumsum(2)
    r0, r1 = _window_bounds(h, k, v.device)
    c0, c1 = _window_bounds(w, k, v.device)
    rows_hi, rows_lo = integral[:, r1], integral[:, r0]
    return rows_hi[:, :, c1] - rows_lo[:, :, c1] - rows_hi[:, :, c0] + rows_lo[:, :, c0]


def _window_count(h: int, w: int, k: int, device) -> torch.Tensor:
    """``N = |W_k|``: in-image pixels of each clipped window, (H, W) int64."""
    r0, r1 = _window_bounds(h, k, device)
    c0, c1 = _window_bounds(w, k, device)
    return (r1 - r0)[:, None] * (c1 - c0)[None, :]


def _impurity(x: torch.Tensor, k: int, bad_window: torch.Tensor) -> torch.Tensor:
    """Region impurity over the clipped window from exact integer class counts of the argmax map (float64)."""
    b, c, h, w = x.shape
    count = _window_count(h, w, k, x.device).to(torch.float64)
    impurity = torch.zeros((b, h, w), dtype=torch.float64, device=x.device)
    if c > 1:
        label = x.argmax(dim=1)  # ties: the lowest class index
        for cls in range(c):
            n_c = _box_sum((label == cls).to(torch.int64), k)
            q = n_c.to(torch.float64) / count
            impurity -= torch.where(n_c > 0, q * torch.log(q), torch.zeros_like(q))
        impurity /= math.log(c)
    return torch.where(bad_window, torch.full_like(impurity, float("nan")), impurity)


def _nonfinite_window(e: torch.Tensor, k: int) -> torch.Tensor:
    """True where the window of radius ``k`` touches a pixel whose entropy is NaN (a non-finite logit)."""
    return _box_sum(torch.isnan(e).to(torch.int64), k) > 0


def pixel_entropy(logits: torch.Tensor) -> torch.Tensor:
    return _entropy(_prepare(logits))


def region_scores(logits, k, size, align_corners):
    x = _prepare(logits, size, align_corners)
    e = _entropy(x)
    bad = _nonfinite_window(e, k)
    impurity = _impurity(x, k, bad)
    count = _window_count(e.shape[1], e.shape[2], k, e.device)
    uncertainty = _box_sum(torch.nan_to_num(e.to(torch.float64), nan=0.0), k) / count
    uncertainty = torch.where(bad, torch.full_like(uncertainty, float("nan")), uncertainty)
    impurity, uncertainty = impurity.to(x.dtype), uncertainty.to(x.dtype)
    return impurity * uncertainty, impurity, uncertainty


def pixel_scores(logits, k, size, align_corners):
    x = _prepare(logits, size, align_corners)
    e = _entropy(x)
    impurity = _impurity(x, k, _nonfinite_window(e, k)).to(x.dtype)
    return impurity * e, impurity, e


def _greedy_select(score, n, n_max, radius, mask_radius, active):
    """Exact greedy selection: one stable descending sort of the available pixels, then a suppression scan.

    The scan visits candidates in (score desc, flat index asc) order and skips those made active by an
    earlier pick; since ``active`` only grows, the first surviving candidate is always the greedy choice.
    Each image takes at most ``n[b]`` clamped to ``[0, n_max]`` picks.
    """
    b, h, w = score.shape
    device = score.device
    centers = torch.full((b, n_max, 2), -1, dtype=torch.int64)
    counts = torch.zeros((b,), dtype=torch.int64)
    act = (active.cpu().clone() if active is not None else torch.zeros((b, h, w), dtype=torch.bool))
    sel = torch.zeros((b, h, w), dtype=torch.bool)
    s_host, n_host = score.detach().cpu(), n.clamp(0, n_max).cpu().tolist()
    r, m = radius, mask_radius
    for img in range(b):
        flat = s_host[img].reshape(-1)
        available = ~(torch.isnan(flat) | (flat == float("-inf")) | act[img].reshape(-1))
        candidates = available.nonzero().squeeze(1)
        order = candidates[torch.sort(flat[candidates], descending=True, stable=True).indices]
        a, s = act[img].numpy(), sel[img].numpy()  # views: writes go to act / sel
        got, want = 0, n_host[img]
        for start in range(0, order.numel(), 4096):
            if got >= want:
                break
            for f in order[start:start + 4096].tolist():
                i, j = divmod(f, w)
                if a[i, j]:
                    continue
                centers[img, got, 0], centers[img, got, 1] = i, j
                a[max(i - m, 0):i + m + 1, max(j - m, 0):j + m + 1] = True
                s[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1] = True
                got += 1
                if got >= want:
                    break
        counts[img] = got
    return centers.to(device), counts.to(device), act.to(device), sel.to(device)


# The loop above reads scores on the host: as a custom op with a fake kernel it is one opaque node for
# torch.compile instead of a graph break.
@torch.library.custom_op("ripu_reference::select_regions", mutates_args=())
def _select_regions_op(score: torch.Tensor, n: torch.Tensor, n_max: int, radius: int, mask_radius: int,
                       active: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                torch.Tensor]:
    return _greedy_select(score, n, n_max, radius, mask_radius, active)


@_select_regions_op.register_fake
def _select_regions_fake(score, n, n_max, radius, mask_radius, active):
    b = score.shape[0]
    return (score.new_empty((b, n_max, 2), dtype=torch.int64), score.new_empty((b,), dtype=torch.int64),
            score.new_empty(score.shape, dtype=torch.bool), score.new_empty(score.shape, dtype=torch.bool))


def select_regions(score, n, n_max, radius, mask_radius, active):
    return _select_regions_op(score, n, n_max, radius, mask_radius, active)


def _shifted(t: torch.Tensor, di: int, dj: int) -> torch.Tensor:
    """``t`` (..., H+2, W+2) padded by one: the (H, W) view shifted by (di, dj)."""
    h, w = t.shape[-2] - 2, t.shape[-1] - 2
    return t[..., 1 + di:1 + di + h, 1 + dj:1 + dj + w]


_OFFSETS = {
    8: [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)],
    4: [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)],
}


def boundary_mask(labels: torch.Tensor, neighbors: int, ignore_index: int) -> torch.Tensor:
    """Pixels where the integer Laplacian of the label map (zero padding) is non-zero and not ignored."""
    lab = F.pad(labels.to(torch.int64)[:, None], (1, 1, 1, 1))  # zeros outside the image
    offsets = _OFFSETS[neighbors]
    lap = (len(offsets) - 1) * _shifted(lab, 0, 0)
    for di, dj in offsets:
        if (di, dj) != (0, 0):
            lap = lap - _shifted(lab, di, dj)
    return (lap[:, 0] != 0) & (labels != ignore_index)


def local_consistency_loss(logits, labels, kind, neighbors, ignore_index):
    x = logits.to(compute_dtype(logits.dtype))
    boundary = boundary_mask(labels, neighbors, ignore_index)
    offsets = _OFFSETS[neighbors]
    if x.numel():
        # The loss reads p only at the pixels u + o of a boundary pixel u (o an offset). Elsewhere the logits are
        # replaced by zeros: the loss is unchanged and the gradient there is exactly 0 even for non-finite logits
        # (autograd through softmax would give 0 * NaN = NaN at every non-finite pixel, read or not). The offsets
        # are symmetric, so "v = u + o for a boundary u" is "v + o is a boundary pixel for some o".
        padded_b = F.pad(boundary[:, None].to(torch.uint8), (1, 1, 1, 1))[:, 0]
        touched = torch.zeros_like(boundary)
        for di, dj in offsets:
            touched |= _shifted(padded_b, di, dj).bool()
        x = torch.where(touched[:, None], x, torch.zeros_like(x))
    p = torch.softmax(x, dim=1)
    if p.numel():
        padded = F.pad(p, (1, 1, 1, 1), mode="replicate")
        mean = sum(_shifted(padded, di, dj) for di, dj in offsets) / len(offsets)
    else:
        mean = p
    if kind == "l1":
        d = (p - mean).abs().sum(dim=1)
    else:
        d = (p * torch.log(p / (mean + 1e-6) + 1e-6)).sum(dim=1)
    total = torch.where(boundary, d, torch.zeros_like(d)).sum()
    return total / boundary.sum().clamp(min=1).to(d.dtype)


def negative_learning_loss(logits, threshold):
    p = torch.softmax(logits.to(compute_dtype(logits.dtype)), dim=1)
    # p < threshold, and NaN (a pixel with a non-finite logit): its terms are NaN, so is the loss, as cross-entropy.
    mask = (~(p >= threshold)).detach()
    total = torch.where(mask, -torch.log(1 - p + 1e-6), torch.zeros_like(p)).sum()
    return total / mask.sum().clamp(min=1).to(p.dtype)
