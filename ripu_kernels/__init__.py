"""ripu_kernels: fused, exact kernels for RIPU active domain adaptation (Xie et al., CVPR 2022).

The six ops of shared/SPEC.md, each with ``backend="auto"|"reference"|"cpu"|"cuda"|"triton"``.
"""
from __future__ import annotations

from ._dispatch import available_backends
from .ops import (
    local_consistency_loss,
    negative_learning_loss,
    pixel_entropy,
    pixel_scores,
    region_scores,
    select_regions,
)
from .types import Scores, Selection

from . import reference  # noqa: E402  (after ops: it wraps them)

__version__ = "0.1.0"

__all__ = [
    "pixel_entropy",
    "region_scores",
    "pixel_scores",
    "select_regions",
    "local_consistency_loss",
    "negative_learning_loss",
    "Scores",
    "Selection",
    "available_backends",
    "reference",
]
