import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ripu_kernels as rk

from . import _oracle
from .conftest import backend_params

VALUES = [0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 2.0, -0.0, float("nan"), float("-inf"), float("inf")]


def assert_same_selection(got, expected, where=""):
    names = ("centers", "counts", "active", "selected")
    for name, a, e in zip(names, got, expected):
        assert a.dtype == e.dtype, f"{where}{name}: dtype {a.dtype} != {e.dtype}"
        assert torch.equal(a.cpu(), e.cpu()), f"{where}{name} differs:\n got {a.cpu()}\n expected {e.cpu()}"


@st.composite
def selection_case(draw):
    b = draw(st.integers(0, 3))
    h = draw(st.integers(1, 7))
    w = draw(st.integers(1, 7))
    vals = draw(st.lists(st.sampled_from(VALUES), min_size=b * h * w, max_size=b * h * w))
    score = torch.tensor(vals, dtype=torch.float32).reshape(b, h, w)
    radius = draw(st.integers(0, 2))
    mask_radius = draw(st.one_of(st.none(), st.integers(0, 3)))
    if draw(st.booleans()):
        n = draw(st.integers(0, h * w + 1))
    else:
        n = torch.tensor(draw(st.lists(st.integers(0, h * w), min_size=b, max_size=b)), dtype=torch.int64)
    active = None
    if draw(st.booleans()):
        bits = draw(st.lists(st.booleans(), min_size=b * h * w, max_size=b * h * w))
        active = torch.tensor(bits, dtype=torch.bool).reshape(b, h, w)
    return score, n, radius, mask_radius, active


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(selection_case())
def test_reference_equals_naive_greedy(case):
    score, n, radius, mask_radius, active = case
    m = 2 * radius if mask_radius is None else mask_radius
    active_before = None if active is None else active.clone()
    got = rk.select_regions(score, n, radius=radius, mask_radius=mask_radius, active=active, backend="reference")
    assert_same_selection(got, _oracle.naive_select(score, n, radius, m, active))
    if active is not None:
        assert torch.equal(active, active_before), "the input active mask was modified"


def test_ties_break_to_smallest_flat_index():
    score = torch.zeros(1, 4, 6)
    sel = rk.select_regions(score, 3, radius=0, mask_radius=0, backend="reference")
    assert sel.centers[0].tolist() == [[0, 0], [0, 1], [0, 2]]
    # Row-major, not column-major: (1, 0) comes after (0, 5).
    score[0, 1, 0] = 1.0
    score[0, 0, 5] = 1.0
    sel = rk.select_regions(score, 2, radius=0, mask_radius=0, backend="reference")
    assert sel.centers[0].tolist() == [[0, 5], [1, 0]]


def test_early_stop_and_padding():
    score = torch.full((2, 3, 3), float("nan"))
    score[0, 1, 1] = 0.3
    sel = rk.select_regions(score, 4, radius=1, mask_radius=0, backend="reference")
    assert sel.counts.tolist() == [1, 0]
    assert sel.centers.tolist() == [[[1, 1], [-1, -1], [-1, -1], [-1, -1]], [[-1, -1]] * 4]
    assert sel.selected[0].all() and not sel.selected[1].any()


def test_inf_is_available_minus_inf_is_not():
    score = torch.tensor([[[float("-inf"), 0.1, float("inf")]]])
    sel = rk.select_regions(score, 3, radius=0, mask_radius=0, backend="reference")
    assert sel.centers[0].tolist() == [[0, 2], [0, 1], [-1, -1]]


def test_per_image_budgets_and_empty_inputs():
    score = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(0))
    sel = rk.select_regions(score, torch.tensor([0, 2, 1]), radius=0, mask_radius=0, backend="reference")
    assert sel.centers.shape == (3, 2, 2) and sel.counts.tolist() == [0, 2, 1]
    empty = rk.select_regions(torch.empty(0, 4, 4), 5, backend="reference")
    assert empty.centers.shape == (0, 4, 2) and empty.counts.shape == (0,)  # 4 = ceil(4/3) * ceil(4/3) picks at most
    zero = rk.select_regions(score, 0, backend="reference")
    assert zero.centers.shape == (3, 0, 2) and not zero.selected.any()


def test_ra_round_at_paper_budget_is_exact_on_a_larger_map():
    g = torch.Generator().manual_seed(3)
    score = torch.rand(1, 40, 60, generator=g).round(decimals=1)  # many ties
    n = math.ceil(40 * 60 * 0.05 / 9)
    got = rk.select_regions(score, n, radius=1, backend="reference")
    assert_same_selection(got, _oracle.naive_select(score, n, 1, 2))


def test_float64_scores():
    score = torch.rand(2, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert_same_selection(rk.select_regions(score, 4, radius=1, backend="reference"),
                          _oracle.naive_select(score, 4, 1, 2))


@pytest.mark.parametrize("backend,device", backend_params())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=selection_case())
def test_backend_equals_reference(backend, device, case):
    score, n, radius, mask_radius, active = case
    score = score.to(device)
    active = None if active is None else active.to(device)
    n = n.to(device) if isinstance(n, torch.Tensor) else n
    got = rk.select_regions(score, n, radius=radius, mask_radius=mask_radius, active=active, backend=backend)
    ref = rk.select_regions(score, n, radius=radius, mask_radius=mask_radius, active=active, backend="reference")
    assert_same_selection(got, ref, where=f"{backend}: ")
    assert all(t.device == score.device for t in got)


@pytest.mark.parametrize("backend,device", backend_params())
def test_backend_on_realistic_scores(backend, device):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 19, 64, 96, generator=g)
    score = rk.region_scores(x, k=1, backend="reference").score.to(device)
    n = math.ceil(64 * 96 * 0.05 / 9)
    for r, m in ((1, 2), (0, 3)):
        assert_same_selection(rk.select_regions(score, n, r, m, backend=backend),
                              rk.select_regions(score, n, r, m, backend="reference"), where=f"{backend} r={r}: ")
