"""pixel_scores (PA): window impurity x the pixel's own entropy; the paper's PA uses k=32 (a 65x65 window).

Rows at k=1, k=32, and k=32 through ``size=`` (logits at 1/8 of the label size scored at label size, the path the
training driver takes).
"""
from __future__ import annotations

import pytest
import torch

from . import authors
from ._harness import (AUTHORS, Case, authors_box_macs, backend_call, logits_nbytes, main_shape, map_nbytes,
                       pytest_params, pytest_run, resize, smooth_logits)

OP = "pixel_scores"


def _case(shape, k: int, required: bool = False, size=None, label: str | None = None, table: str = OP) -> Case:
    """pixel_scores at radius k; with ``size`` the logits ``shape`` are scored at ``size`` (the fused resize)."""
    out_shape = tuple(shape) if size is None else (*shape[:2], *size)

    def setup(device):
        return {"x": smooth_logits(shape, device)}

    def bind(inputs, backend):
        if backend == AUTHORS:
            if size is not None:
                return lambda: authors.pixel_scores(resize(inputs["x"], size), k=k)
            return lambda: authors.pixel_scores(inputs["x"], k=k)
        return backend_call(OP, backend, inputs["x"], k=k, size=size)

    return Case(OP, label or f"k={k}", tuple(shape), setup, bind, params={"k": k, "size": size}, table=table,
                nbytes=logits_nbytes(shape) + map_nbytes(out_shape, 3),
                authors_macs=authors_box_macs(out_shape, k, entropy_conv=False), authors_required=required)


def size_case(shape, k: int, table: str = OP) -> Case:
    """The driver's path: logits at 1/8 of the label size, scored at label size through ``size=``."""
    b, c, h, w = shape
    small = (b, c, max(1, h // 8), max(1, w // 8))
    return _case(small, k, size=(h, w), label=f"k={k} size={h}x{w} from {small[2]}x{small[3]}", table=table)


def cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    shape = main_shape(device, quick, shape)
    # k=32 is the paper's PA and a headline target: the authors' 65x65 convolution runs even where it is slow.
    return [_case(shape, 1), _case(shape, 32, required=True), size_case(shape, 32)]


_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("case,backend", pytest_params([_case((1, 19, 64, 128), k) for k in (1, 32)], _DEVICE))
def test_pixel_scores(benchmark, case, backend):
    pytest_run(benchmark, case, backend, _DEVICE)
