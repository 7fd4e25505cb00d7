import pytest
import torch

import ripu_kernels as rk

from ._score_checks import check_against_oracle, check_parity, with_nonfinite
from .conftest import LAYOUTS, backend_params, layout, random_logits

OP = "region_scores"


@pytest.mark.parametrize("shape,k", [((2, 5, 7, 9), 1), ((1, 3, 37, 41), 2), ((1, 4, 6, 5), 0),
                                     ((1, 3, 5, 4), 10), ((2, 19, 9, 11), 1)])
def test_reference_matches_loop_oracle(shape, k, gen):
    check_against_oracle(OP, random_logits(shape, generator=gen), k)


@pytest.mark.parametrize("size,align_corners", [((13, 17), True), ((13, 17), False), ((4, 5), True), ((4, 5), False)])
def test_reference_resize_matches_oracle(size, align_corners, gen):
    check_against_oracle(OP, random_logits((2, 4, 7, 9), generator=gen), 1, size, align_corners)


def test_reference_ties_pick_lowest_class(gen):
    x = random_logits((1, 4, 8, 8), generator=gen, classes_tied=True)
    out = check_against_oracle(OP, x, 1)
    assert torch.isfinite(out.score).all()


def test_reference_one_class_is_zero(gen):
    out = check_against_oracle(OP, random_logits((2, 1, 6, 7), generator=gen), 1)
    assert torch.equal(out.score, torch.zeros_like(out.score))
    assert torch.equal(out.impurity, torch.zeros_like(out.impurity))


def test_reference_nonfinite_spreads_nan_over_windows(gen):
    x = with_nonfinite(random_logits((2, 3, 8, 9), generator=gen))
    out = check_against_oracle(OP, x, 1, pixels={(b, i, j) for b in range(2) for i in range(8) for j in range(9)})
    # (0, 1, 2) is NaN: its 3x3 neighbourhood is NaN, a pixel two away is not.
    assert torch.isnan(out.score[0, 0:3, 1:4]).all() and not torch.isnan(out.score[0, 4, 5])


def test_reference_uniform_map_has_zero_impurity():
    x = torch.zeros(1, 3, 5, 5)
    x[:, 2] = 1.0
    out = rk.region_scores(x, backend="reference")
    assert torch.equal(out.impurity, torch.zeros(1, 5, 5))
    assert torch.all(out.uncertainty > 0)


def test_float64_stays_float64_and_half_computes_in_float32(gen):
    x = random_logits((1, 3, 6, 7), generator=gen)
    assert rk.region_scores(x.double(), backend="reference").score.dtype == torch.float64
    half = rk.region_scores(x.half(), backend="reference")
    assert half.score.dtype == torch.float32
    torch.testing.assert_close(half.score, rk.region_scores(x.half().float(), backend="reference").score)


@pytest.mark.parametrize("name", LAYOUTS)
def test_reference_layouts_agree(name, gen):
    x = random_logits((2, 5, 9, 10), generator=gen)
    base = rk.region_scores(x, k=2, backend="reference")
    other = rk.region_scores(layout(x, name), k=2, backend="reference")
    for a, b in zip(other, base):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_empty_batch():
    out = rk.region_scores(torch.empty(0, 3, 5, 6), backend="reference")
    assert out.score.shape == (0, 5, 6)
    out = rk.region_scores(torch.empty(0, 3, 5, 6), size=(7, 8), backend="reference")
    assert out.score.shape == (0, 7, 8)


def test_k_cost_is_not_a_stencil():
    """k beyond the image equals one window over everything: impurity is then the whole-image class mix."""
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    out = rk.region_scores(x, k=1000, backend="reference")
    assert torch.allclose(out.impurity, out.impurity[0, 0, 0].expand_as(out.impurity))


# ------------------------------------------------------------------------------------------- backend parity
@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", LAYOUTS)
def test_parity_dtypes_layouts(backend, device, dtype, name, gen):
    x = layout(random_logits((2, 5, 13, 17), dtype=dtype, generator=gen).to(device), name)
    check_parity(OP, backend, x, 1)


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("shape,k", [((1, 3, 37, 41), 1), ((1, 3, 37, 41), 5), ((2, 19, 16, 24), 0),
                                     ((1, 2, 1, 1), 1), ((1, 4, 3, 50), 4), ((3, 1, 5, 7), 1), ((0, 3, 5, 6), 1)])
def test_parity_shapes(backend, device, shape, k, gen):
    check_parity(OP, backend, random_logits(shape, generator=gen).to(device), k)


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("size", [(23, 29), (5, 6), (13, 17)])
@pytest.mark.parametrize("align_corners", [True, False])
def test_parity_resize(backend, device, size, align_corners, gen):
    x = random_logits((2, 4, 13, 17), generator=gen).to(device)
    check_parity(OP, backend, layout(x, "channels_last"), 1, size, align_corners)


@pytest.mark.parametrize("backend,device", backend_params())
def test_parity_ties_and_nonfinite(backend, device, gen):
    check_parity(OP, backend, random_logits((2, 4, 9, 11), generator=gen, classes_tied=True).to(device), 1)
    check_parity(OP, backend, with_nonfinite(random_logits((2, 3, 9, 11), generator=gen)).to(device), 2)
