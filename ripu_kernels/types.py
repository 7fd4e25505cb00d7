"""Result types of the public ops (docs/ops.md)."""
from __future__ import annotations

from typing import NamedTuple

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype every backend computes and returns maps in: float64 for float64 logits, float32 for every other
    float dtype (docs/ops.md, "Inputs and outputs")."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class Scores(NamedTuple):
    """Per-pixel acquisition maps, each ``(B, H, W)`` float32 (float64 for float64 logits).

    ``score`` is ``impurity * uncertainty`` for region scores (RA) and ``impurity * entropy`` for pixel
    scores (PA), whose ``uncertainty`` field is then the pixel entropy itself.
    """

    score: torch.Tensor
    impurity: torch.Tensor
    uncertainty: torch.Tensor


class Selection(NamedTuple):
    """Result of :func:`ripu_kernels.select_regions`.

    ``centers`` ``(B, n, 2)`` int64 ``(row, col)`` in pick order padded with ``-1``; ``counts`` ``(B,)`` int64
    number of picks per image; ``active`` ``(B, H, W)`` bool, the input mask OR the new suppression windows;
    ``selected`` ``(B, H, W)`` bool, the pixels revealed by this call only.
    """

    centers: torch.Tensor
    counts: torch.Tensor
    active: torch.Tensor
    selected: torch.Tensor
