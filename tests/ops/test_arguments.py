"""Argument edges of the public ops: NumPy integers wherever ints are taken, the width of ``centers``, ``n_max``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ripu_kernels as rk
from ripu_kernels.ops import max_picks

from . import _oracle
from .conftest import backend_params, random_logits

CPU_BACKENDS = ["reference"] + [p.values[0] for p in backend_params() if p.values[1] == "cpu" and not p.marks]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("np_int", [np.int64, np.int32, np.int16, np.uint8])
def test_numpy_integers_are_accepted_wherever_ints_are(backend, np_int, gen):
    x = random_logits((2, 3, 6, 7), generator=gen)
    ref = rk.region_scores(x, k=2, size=(9, 5), backend=backend)
    got = rk.region_scores(x, k=np_int(2), size=(np_int(9), np_int(5)), backend=backend)
    assert torch.equal(got.score, ref.score)
    assert torch.equal(rk.pixel_scores(x, k=np_int(1), backend=backend).score,
                       rk.pixel_scores(x, k=1, backend=backend).score)
    score = ref.score
    a = rk.select_regions(score, np_int(3), radius=np_int(1), mask_radius=np_int(2), backend=backend)
    b = rk.select_regions(score, 3, radius=1, mask_radius=2, backend=backend)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = rk.select_regions(score, torch.tensor([3, 1]), n_max=np_int(3), backend=backend)
    assert c.centers.shape[1] == 3
    labels = torch.randint(0, 3, (2, 6, 7), generator=gen)
    l1 = rk.local_consistency_loss(x, labels, neighbors=np_int(4), ignore_index=np_int(2), backend=backend)
    l2 = rk.local_consistency_loss(x, labels, neighbors=4, ignore_index=2, backend=backend)
    assert torch.equal(l1, l2)
    assert torch.equal(rk.negative_learning_loss(x, threshold=np.float32(0.25), backend=backend),
                       rk.negative_learning_loss(x, threshold=0.25, backend=backend))


@pytest.mark.parametrize("call,error,match", [
    (lambda x, s: rk.region_scores(x, k=np.bool_(True)), TypeError, r"k must be an int, got bool"),
    (lambda x, s: rk.region_scores(x, k=True), TypeError, r"k must be an int, got bool"),
    (lambda x, s: rk.region_scores(x, k=np.float64(1.0)), TypeError, r"k must be an int, got float64"),
    (lambda x, s: rk.region_scores(x, size=(np.float32(4), 5)), ValueError, r"size must be None or a pair of ints"),
    (lambda x, s: rk.select_regions(s, np.int64(-1)), ValueError, r"n must be >= 0, got -1"),
    (lambda x, s: rk.select_regions(s, 2, n_max=-1), ValueError, r"n_max must be >= 0, got -1"),
    (lambda x, s: rk.select_regions(s, 2, n_max=1.5), TypeError, r"n_max must be an int, got float"),
    (lambda x, s: rk.local_consistency_loss(x, torch.zeros(1, 4, 5, dtype=torch.long), neighbors=8.0),
     ValueError, r"neighbors must be 4 or 8, got 8.0"),
    (lambda x, s: rk.local_consistency_loss(x, torch.zeros(1, 4, 5, dtype=torch.long), neighbors=np.int64(6)),
     ValueError, r"neighbors must be 4 or 8, got 6"),
    (lambda x, s: rk.negative_learning_loss(x, threshold=np.float64("nan")), ValueError, r"threshold must be a finite"),
])
def test_non_integers_are_refused_naming_the_argument(call, error, match):
    x, s = torch.randn(1, 3, 4, 5), torch.rand(1, 4, 5)
    with pytest.raises(error, match=match):
        call(x, s)


# ----------------------------------------------------------------------------------------- centers' width
@pytest.mark.parametrize("h,w,m", [(4, 6, 0), (5, 5, 1), (7, 3, 2), (1, 9, 3), (6, 6, 10)])
def test_packing_bound_is_reached_by_a_grid_of_picks(h, w, m):
    """max_picks is exact: scores that favour a grid of step m + 1 make the greedy loop take that many centres."""
    i = torch.arange(h)[:, None]
    j = torch.arange(w)[None, :]
    score = (((i % (m + 1)) == 0) & ((j % (m + 1)) == 0)).float()[None] + 0.5
    sel = rk.select_regions(score, 10**6, radius=0, mask_radius=m, backend="reference")
    assert sel.centers.shape == (1, max_picks(h, w, m), 2)
    assert int(sel.counts[0]) == max_picks(h, w, m) and (sel.centers >= 0).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_huge_n_allocates_only_what_can_be_picked(backend):
    score = torch.rand(2, 64, 96, generator=torch.Generator().manual_seed(0))
    sel = rk.select_regions(score, 10**7, radius=1, backend=backend)  # (2, 10**7, 2) int64 would be 320 MB
    assert sel.centers.shape == (2, max_picks(64, 96, 2), 2) == (2, 22 * 32, 2)
    ref = _oracle.naive_select(score[:1, :9, :11], 10**7, 1, 2)
    got = rk.select_regions(score[:1, :9, :11], 10**7, radius=1, backend=backend)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_tensor_n_with_n_max_is_clamped_without_reading_n(backend):
    g = torch.Generator().manual_seed(1)
    score = torch.rand(3, 10, 12, generator=g)
    n = torch.tensor([7, 0, 2])
    got = rk.select_regions(score, n, radius=0, mask_radius=1, n_max=4, backend=backend)
    assert got.centers.shape == (3, 4, 2) and got.counts.tolist() == [4, 0, 2]
    ref = rk.select_regions(score, torch.tensor([4, 0, 2]), radius=0, mask_radius=1, backend=backend)
    assert torch.equal(got.centers, ref.centers[:, :4]) and torch.equal(got.active, ref.active)
    # without n_max the width is max(n) (a host read), and negative budgets are refused
    assert rk.select_regions(score, n, radius=0, mask_radius=1, backend=backend).centers.shape == (3, 7, 2)
    with pytest.raises(ValueError, match=r"n must be >= 0, got -1"):
        rk.select_regions(score, torch.tensor([1, -1, 0]), backend=backend)
    # an int n below n_max: n wins
    assert rk.select_regions(score, 2, n_max=5, backend=backend).centers.shape == (3, 2, 2)
