"""The pure-PyTorch reference backend, with the public signatures of ``ripu_kernels``.

``ripu_kernels.reference.region_scores(x)`` is ``ripu_kernels.region_scores(x, backend="reference")``.
"""
from __future__ import annotations

import functools

from .. import ops as _ops

__all__ = list(_ops.__all__)


def _pin(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "backend" in kwargs:
            raise TypeError(f"ripu_kernels.reference.{fn.__name__}() takes no backend argument")
        return fn(*args, backend="reference", **kwargs)

    return wrapper


pixel_entropy = _pin(_ops.pixel_entropy)
region_scores = _pin(_ops.region_scores)
pixel_scores = _pin(_ops.pixel_scores)
select_regions = _pin(_ops.select_regions)
local_consistency_loss = _pin(_ops.local_consistency_loss)
negative_learning_loss = _pin(_ops.negative_learning_loss)
