"""The RIPU regularisers, forward + backward: LCR (l1 and kl, 8 neighbours) and NL (threshold 0.05).

The ``reference`` rows are autograd through the pure-PyTorch reference; ``authors`` are the published modules'
structure (depthwise mean convolution, Laplacian boundary convolution, boolean indexing).
"""
from __future__ import annotations

import pytest
import torch

from . import authors
from ._harness import (AUTHORS, Case, label_map, logits_nbytes, main_shape, pytest_params, pytest_run,
                       smooth_logits)

OP = "losses"


def _case(shape, name: str) -> Case:
    b, c, h, w = shape
    lcr = name.startswith("lcr")
    kind = name.split()[1] if lcr else None

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
    return Case(OP, name, tuple(shape), setup, bind, params=params, nbytes=nbytes)


def cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    shape = main_shape(device, quick, shape)
    return [_case(shape, "lcr l1 n8"), _case(shape, "lcr kl n8"), _case(shape, "nl")]


_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("case,backend", pytest_params([_case((1, 19, 128, 256), n) for n in
                                                        ("lcr l1 n8", "lcr kl n8", "nl")], _DEVICE))
def test_losses(benchmark, case, backend):
    pytest_run(benchmark, case, backend, _DEVICE)
