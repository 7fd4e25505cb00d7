"""region_scores (RA): impurity x mean entropy over the clipped (2k+1)^2 window.

Main rows at k=1 (the paper's RA) and k=32, and k=1 through ``size=`` (logits at 1/8 of the label size scored at
label size, the path the training driver takes); the k sweep (time against k: must stay flat for the fused kernels,
grows as (2k+1)^2 for the authors' convolutions) and the size sweep (time against the image size at k=1).
"""
from __future__ import annotations

import pytest
import torch

from . import authors
from ._harness import (AUTHORS, Case, authors_box_macs, backend_call, logits_nbytes, main_shape, map_nbytes,
                       pytest_params, pytest_run, resize, smooth_logits)

OP = "region_scores"
K_SWEEP = (0, 1, 2, 4, 8, 16, 32)


def _case(shape, k: int, table: str = OP, label: str | None = None, sweep=None, x=None, size=None) -> Case:
    """region_scores at radius k; with ``size`` the logits ``shape`` are scored at ``size`` (the fused resize)."""
    out_shape = tuple(shape) if size is None else (*shape[:2], *size)

    def setup(device):
        return {"x": smooth_logits(shape, device)}

    def bind(inputs, backend):
        if backend == AUTHORS:
            if size is not None:
                return lambda: authors.region_scores(resize(inputs["x"], size), k=k)
            return lambda: authors.region_scores(inputs["x"], k=k)
        return backend_call(OP, backend, inputs["x"], k=k, size=size)

    return Case(OP, label or f"k={k}", tuple(shape), setup, bind, params={"k": k, "size": size},
                nbytes=logits_nbytes(shape) + map_nbytes(out_shape, 3), sweep=sweep, x=x, table=table,
                authors_macs=authors_box_macs(out_shape, k, entropy_conv=True))


def sweep_sizes(shape, quick: bool) -> list[tuple[int, int]]:
    """(H, W) of the size sweep: the main shape and its halvings (three in quick mode, four otherwise)."""
    _, _, h, w = shape
    steps = 3 if quick else 4
    sizes = [(max(1, h >> i), max(1, w >> i)) for i in range(steps - 1, -1, -1)]
    return sorted(set(sizes))


def cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    shape = main_shape(device, quick, shape)
    return [_case(shape, 1), _case(shape, 32), size_case(shape, 1)]


def size_case(shape, k: int, table: str = OP) -> Case:
    """The driver's path: logits at 1/8 of the label size, scored at label size through ``size=``."""
    b, c, h, w = shape
    small = (b, c, max(1, h // 8), max(1, w // 8))
    return _case(small, k, table=table, label=f"k={k} size={h}x{w} from {small[2]}x{small[3]}", size=(h, w))


def k_sweep_cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    shape = main_shape(device, quick, shape)
    return [_case(shape, k, table="k_sweep", sweep="k", x=k) for k in K_SWEEP]


def size_sweep_cases(device: torch.device, quick: bool = False, shape=None) -> list[Case]:
    b, c, _, _ = shape = main_shape(device, quick, shape)
    return [_case((b, c, h, w), 1, table="size_sweep", label=f"{h}x{w} k=1", sweep="size", x=h * w)
            for h, w in sweep_sizes(shape, quick)]


_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("case,backend", pytest_params([_case((1, 19, 128, 256), k) for k in (1, 8)], _DEVICE))
def test_region_scores(benchmark, case, backend):
    pytest_run(benchmark, case, backend, _DEVICE)
