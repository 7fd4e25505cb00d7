import pytest
import torch

import ripu_kernels as rk

from ._score_checks import check_against_oracle, check_parity, with_nonfinite
from .conftest import LAYOUTS, backend_params, layout, random_logits

OP = "pixel_scores"


@pytest.mark.parametrize("shape,k", [((2, 5, 7, 9), 1), ((1, 3, 37, 41), 32), ((1, 4, 6, 5), 0), ((2, 19, 9, 11), 3)])
def test_reference_matches_loop_oracle(shape, k, gen):
    check_against_oracle(OP, random_logits(shape, generator=gen), k)


def test_default_window_and_uncertainty_is_entropy(gen):
    x = random_logits((1, 4, 70, 70), generator=gen)
    out = rk.pixel_scores(x, backend="reference")
    torch.testing.assert_close(out.uncertainty, rk.pixel_entropy(x, backend="reference"))
    torch.testing.assert_close(out.impurity, rk.region_scores(x, k=32, backend="reference").impurity)
    torch.testing.assert_close(out.score, out.impurity * out.uncertainty)


@pytest.mark.parametrize("align_corners", [True, False])
def test_reference_resize_matches_oracle(align_corners, gen):
    check_against_oracle(OP, random_logits((1, 4, 7, 9), generator=gen), 2, (15, 11), align_corners)


def test_reference_nonfinite(gen):
    x = with_nonfinite(random_logits((2, 3, 8, 9), generator=gen))
    check_against_oracle(OP, x, 1, pixels={(b, i, j) for b in range(2) for i in range(8) for j in range(9)})


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", LAYOUTS)
def test_parity_dtypes_layouts(backend, device, dtype, name, gen):
    x = layout(random_logits((2, 5, 13, 17), dtype=dtype, generator=gen).to(device), name)
    check_parity(OP, backend, x, 3)


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("shape,k", [((1, 3, 37, 41), 32), ((1, 3, 37, 41), 0), ((0, 3, 5, 6), 2),
                                     ((3, 1, 5, 7), 1), ((1, 2, 1, 1), 32)])
def test_parity_shapes(backend, device, shape, k, gen):
    check_parity(OP, backend, random_logits(shape, generator=gen).to(device), k)


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("align_corners", [True, False])
def test_parity_resize_ties_nonfinite(backend, device, align_corners, gen):
    x = random_logits((2, 4, 13, 17), generator=gen).to(device)
    check_parity(OP, backend, x, 4, (29, 23), align_corners)
    check_parity(OP, backend, random_logits((1, 4, 9, 11), generator=gen, classes_tied=True).to(device), 2)
    check_parity(OP, backend, with_nonfinite(random_logits((2, 3, 9, 11), generator=gen)).to(device), 2)
