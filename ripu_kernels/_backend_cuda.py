"""Backend ``cuda``: the compiled ``torch.ops.ripu.*`` ops (see ``_backend_cpp``) on CUDA tensors.

The ops, fake kernels and autograd formulas are shared with the ``cpu`` backend; only availability differs.
"""
from __future__ import annotations

from ._backend_cpp import (  # noqa: F401
    local_consistency_loss,
    negative_learning_loss,
    pixel_entropy,
    pixel_scores,
    region_scores,
    select_regions,
)
from ._backend_cpp import cuda_unavailable_reason as unavailable_reason  # noqa: F401
