"""select_regions: one acquisition round of exact greedy selection.

- ``RA k=1``: the paper's region budget, 5% of the pixels over 5 rounds, so one round labels 1%:
  ``n = ceil(H*W*0.01 / 9)`` 3x3 regions (2,331 at 1024x2048), radius 1, mask radius 2, on the RA k=1 scores.
- ``PA k=32``: the paper's 40 pixels per image over 5 rounds, counted at 1280x640:
  ``n = ceil(8 * H*W / (1280*640))`` (21 at 1024x2048), radius 0, mask radius 32, on the PA k=32 scores.
Scores come from the reference backend once per case (all backends must agree on them).
"""
from __future__ import annotations

import math

import pytest
import torch

import ripu_kernels

from . import authors
from ._harness import AUTHORS, Case, backend_call, main_shape, pytest_params, pytest_run, smooth_logits

OP = "select_regions"
RA_RATIO_TOTAL, ROUNDS = 0.05, 5
PA_PIXELS_TOTAL = 40


def ra_budget(h: int, w: int, k: int = 1) -> int:
    """Regions per image in one RA round (SPEC budget with the paper's 5% over 5 rounds)."""
    return math.ceil(h * w * (RA_RATIO_TOTAL / ROUNDS) / (2 * k + 1) ** 2)


def pa_budget(h: int, w: int) -> int:
    """Pixels per image in one PA round (the paper's 40 pixels over 5 rounds, counted at 1280x640)."""
    return math.ceil((PA_PIXELS_TOTAL / ROUNDS) * h * w / (1280 * 640))


def _case(shape, setting: str) -> Case:
    b, c, h, w = shape
    if setting == "RA":
        k, n, r, m, score_op = 1, ra_budget(h, w, 1), 1, 2, "region_scores"
    else:
        k, n, r, m, score_op = 32, pa_budget(h, w), 0, 32, "pixel_scores"

    def setup(device):
        x = smooth_logits(shape, device)
        return {"score": getattr(ripu_kernels, score_op)(x, k=k, backend="reference").score}

    def bind(inputs, backend):
        if backend == AUTHORS:
            return lambda: authors.select_regions(inputs["score"], n, radius=r, mask_radius=m)
        return backend_call(OP, backend, inputs["score"], n, radius=r, mask_radius=m)

    # bytes: the score map read, the active and selected masks written (bool)
    return Case(OP, f"{setting} k={k}", (b, h, w), setup, bind, params={"n": n, "radius": r, "mask_radius": m},
                nbytes=b * h * w * (4 + 1 + 1))


def cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    shape = main_shape(device, quick, shape)
    return [_case(shape, "RA"), _case(shape, "PA")]


_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("case,backend", pytest_params([_case((1, 19, 128, 256), s) for s in ("RA", "PA")],
                                                       _DEVICE))
def test_select_regions(benchmark, case, backend):
    pytest_run(benchmark, case, backend, _DEVICE)
