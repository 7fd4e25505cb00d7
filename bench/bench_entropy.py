"""pixel_entropy: normalised softmax entropy per pixel.

``cases(device, quick, shape)`` for ``python -m bench``; ``pytest bench/bench_entropy.py --benchmark-only`` runs a
small case per backend under pytest-benchmark.
"""
from __future__ import annotations

import pytest
import torch

from . import authors
from ._harness import (AUTHORS, Case, logits_nbytes, main_shape, map_nbytes, backend_call, pytest_params,
                       pytest_run, smooth_logits)

OP = "pixel_entropy"


def _case(shape) -> Case:
    def setup(device):
        return {"x": smooth_logits(shape, device)}

    def bind(inputs, backend):
        if backend == AUTHORS:
            return lambda: authors.pixel_entropy(inputs["x"])
        return backend_call(OP, backend, inputs["x"])

    return Case(OP, "entropy", tuple(shape), setup, bind,
                nbytes=logits_nbytes(shape) + map_nbytes(shape, 1))


def cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    return [_case(main_shape(device, quick, shape))]


_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("case,backend", pytest_params([_case((1, 19, 128, 256))], _DEVICE))
def test_pixel_entropy(benchmark, case, backend):
    pytest_run(benchmark, case, backend, _DEVICE)
