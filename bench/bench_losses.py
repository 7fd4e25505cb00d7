"""The RIPU regularisers, forward + backward: ``local_consistency_loss`` (l1 and kl, 8 neighbours) and
``negative_learning_loss`` (threshold 0.05), one table each.

The ``reference`` rows are autograd through the pure-PyTorch reference; ``authors`` are the published modules'
structure (depthwise mean convolution, Laplacian boundary convolution, boolean indexing).
"""
from __future__ import annotations

import pytest
import torch

from . import authors
from ._harness import (AUTHORS, Case, label_map, logits_nbytes, main_shape, pytest_params, pytest_run,
                       smooth_logits)

LCR, NL = "local_consistency_loss", "negative_learning_loss"
CASES = ((LCR, "l1 n8"), (LCR, "kl n8"), (NL, "t=0.05"))


def _case(shape, op: str, name: str) -> Case:
    b, c, h, w = shape
    lcr = op == LCR
    kind = name.split()[0] if lcr else None

    def setup(device):
        x = smooth_logits(shape, device).requires_grad_(True)
        return {"x": x, "labels": label_map(shape, device) if lcr else None}

    def bind(inputs, backend):
        x, labels = inputs["x"], inputs["labels"]
        if backend == AUTHORS:
            if lcr:
                def loss():
                    return authors.local_consistency_loss(x, labels, kind=kind, neighbors=8)
            else:
                def loss():
                    return authors.negative_learning_loss(x, 0.05)
        else:
            import ripu_kernels
            if lcr:
                def loss():
                    return ripu_kernels.local_consistency_loss(x, labels, kind=kind, neighbors=8, backend=backend)
            else:
                def loss():
                    return ripu_kernels.negative_learning_loss(x, 0.05, backend=backend)

        def step():
            x.grad = None
            value = loss()
            value.backward()
            return value.detach()

        return step

    # bytes: logits read in the forward and again in the backward, the gradient written; labels (int64) read
    nbytes = 3 * logits_nbytes(shape) + (b * h * w * 8 if lcr else 0)
    params = {"kind": kind, "neighbors": 8} if lcr else {"threshold": 0.05}
    return Case(op, name, tuple(shape), setup, bind, params=params, nbytes=nbytes)


def lcr_cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    shape = main_shape(device, quick, shape)
    return [_case(shape, op, name) for op, name in CASES if op == LCR]


def nl_cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    shape = main_shape(device, quick, shape)
    return [_case(shape, op, name) for op, name in CASES if op == NL]


_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("case,backend", pytest_params([_case((1, 19, 128, 256), op, n) for op, n in CASES],
                                                       _DEVICE))
def test_losses(benchmark, case, backend):
    pytest_run(benchmark, case, backend, _DEVICE)
