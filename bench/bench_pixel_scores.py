"""pixel_scores (PA): window impurity x the pixel's own entropy; the paper's PA uses k=32 (a 65x65 window)."""
from __future__ import annotations

import pytest
import torch

from . import authors
from ._harness import (AUTHORS, Case, authors_box_macs, backend_call, logits_nbytes, main_shape, map_nbytes,
                       pytest_params, pytest_run, smooth_logits)

OP = "pixel_scores"


def _case(shape, k: int, required: bool = False) -> Case:
    def setup(device):
        return {"x": smooth_logits(shape, device)}

    def bind(inputs, backend):
        if backend == AUTHORS:
            return lambda: authors.pixel_scores(inputs["x"], k=k)
        return backend_call(OP, backend, inputs["x"], k=k)

    return Case(OP, f"k={k}", tuple(shape), setup, bind, params={"k": k},
                nbytes=logits_nbytes(shape) + map_nbytes(shape, 3),
                authors_macs=authors_box_macs(shape, k, entropy_conv=False), authors_required=required)


def cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    shape = main_shape(device, quick, shape)
    # k=32 is the paper's PA and a headline target: the authors' 65x65 convolution runs even where it is slow.
    return [_case(shape, 1), _case(shape, 32, required=True)]


_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("case,backend", pytest_params([_case((1, 19, 64, 128), k) for k in (1, 32)], _DEVICE))
def test_pixel_scores(benchmark, case, backend):
    pytest_run(benchmark, case, backend, _DEVICE)
