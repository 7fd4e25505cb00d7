"""ripu_kernels: fused, exact kernels for RIPU active domain adaptation (Xie et al., CVPR 2022).

Six ops, each with ``backend="auto"|"reference"|"cpu"|"cuda"|"triton"``; docs/ops.md is their contract (maths,
ties, NaN, errors) and says what ``auto`` picks on each device.
"""
from __future__ import annotations

from ._dispatch import ExtensionUnavailableWarning, available_backends
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
from . import _dispatch  # noqa: E402

# Import every backend now, not inside the first op call (which may run under torch.compile); warn once when the
# compiled extension is unavailable.
_dispatch.load_backends()

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
    "ExtensionUnavailableWarning",
    "reference",
]
