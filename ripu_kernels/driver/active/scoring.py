"""Acquisition scores through the public fused ops of ``ripu_kernels`` (the driver uses nothing else)."""
from __future__ import annotations

import torch

import ripu_kernels as rk

from ..errors import AcquisitionError
from .budget import Budget


def check_finite(logits: torch.Tensor, image_ids: list[str]) -> None:
    """Raise :class:`AcquisitionError` naming the first image whose logits are not all finite."""
    bad = ~torch.isfinite(logits.detach()).flatten(1).all(dim=1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        n = int((~torch.isfinite(logits[i])).sum())
        raise AcquisitionError(f"acquisition: the model produced {n} non-finite logits (NaN/inf) for image "
                               f"{image_ids[i]!r}; refusing to select regions from them")


def score_maps(logits: torch.Tensor, budget: Budget, size: tuple[int, int], align_corners: bool = True) -> rk.Scores:
    """RA region scores or PA pixel scores at label resolution ``size`` (the resize is fused into the op)."""
    if budget.mode == "ra":
        return rk.region_scores(logits, k=budget.k, size=size, align_corners=align_corners)
    return rk.pixel_scores(logits, k=budget.k, size=size, align_corners=align_corners)
