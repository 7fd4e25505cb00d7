"""The compiled CPU backend (``backend="cpu"``, ``torch.ops.ripu.*``) against the reference.

Complements the per-op parity tests with the cases the C++ kernels branch on: every dtype x layout x window size,
fused resizing up and down, the column-histogram and the per-label impurity paths, selection over several
candidate chunks, losses with every kind/neighbourhood/label dtype, gradcheck through the registered ops, and the
extension's own argument checks.
"""
from __future__ import annotations

import math

import pytest
import torch

import ripu_kernels as rk
from ripu_kernels import _dispatch

from ._score_checks import check_parity, with_nonfinite
from ._tol import assert_close_verbose, tol
from ._loss_checks import check_loss_parity
from .conftest import LAYOUTS, layout, random_logits

pytestmark = pytest.mark.skipif(_dispatch.unavailable_reason("cpu", torch.device("cpu")) is not None,
                                reason=f"cpu backend: {_dispatch.unavailable_reason('cpu', torch.device('cpu'))}")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SCORE_OPS = ["region_scores", "pixel_scores"]


# ------------------------------------------------------------------------------------------------- scores
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LAYOUTS)
def test_pixel_entropy_dtypes_layouts(dtype, name, gen):
    x = layout(random_logits((2, 5, 9, 13), dtype=dtype, generator=gen), name)
    got, ref = rk.pixel_entropy(x, backend="cpu"), rk.pixel_entropy(x, backend="reference")
    assert got.dtype == ref.dtype
    assert_close_verbose(got, ref, name="pixel_entropy", **tol(dtype))


@pytest.mark.parametrize("op", SCORE_OPS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("k", [0, 1, 5])
def test_scores_dtypes_layouts_windows(op, dtype, name, k, gen):
    check_parity(op, "cpu", layout(random_logits((2, 4, 11, 14), dtype=dtype, generator=gen), name), k)


@pytest.mark.parametrize("op", SCORE_OPS)
@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("size", [(23, 31), (6, 5), (1, 1), (11, 40)])
@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_scores_fused_resize(op, name, size, align_corners, dtype, gen):
    x = layout(random_logits((2, 3, 11, 14), dtype=dtype, generator=gen), name)
    check_parity(op, "cpu", x, 1, size, align_corners)


@pytest.mark.parametrize("op", SCORE_OPS)
@pytest.mark.parametrize("shape,k", [
    ((1, 3, 37, 41), 1), ((1, 3, 37, 41), 12),   # column histograms (4 (2k+1) > C)
    ((1, 25, 9, 30), 2), ((1, 19, 20, 23), 1),   # per-label window updates (4 (2k+1) <= C)
    ((1, 19, 20, 23), 0), ((1, 25, 9, 30), 13),
    ((2, 1, 6, 7), 2),                           # one class
    ((1, 2, 1, 1), 3), ((1, 3, 1, 23), 2), ((1, 3, 19, 1), 4),  # degenerate maps
    ((1, 4, 6, 9), 1000),                        # a window larger than the image
    ((0, 3, 5, 6), 1),                           # empty batch
])
def test_scores_odd_shapes(op, shape, k, gen):
    check_parity(op, "cpu", random_logits(shape, generator=gen), k)


def test_empty_batch_with_size():
    out = rk.region_scores(torch.empty(0, 3, 5, 6), size=(7, 8), backend="cpu")
    assert out.score.shape == (0, 7, 8) and out.score.dtype == torch.float32


@pytest.mark.parametrize("op", SCORE_OPS)
@pytest.mark.parametrize("name", LAYOUTS)
def test_scores_ties_and_nonfinite(op, name, gen):
    tied = random_logits((2, 4, 9, 11), generator=gen, classes_tied=True)
    check_parity(op, "cpu", layout(tied, name), 1)
    check_parity(op, "cpu", layout(with_nonfinite(random_logits((2, 3, 9, 11), generator=gen)), name), 2)
    check_parity(op, "cpu", layout(with_nonfinite(random_logits((2, 3, 9, 11), generator=gen)), name), 6)


def test_nonfinite_through_resize(gen):
    x = with_nonfinite(random_logits((2, 3, 9, 11), generator=gen))
    for ac in (True, False):
        check_parity("region_scores", "cpu", x, 1, (17, 7), ac)


def test_confident_pixels_have_exactly_zero_entropy():
    x = torch.zeros(1, 3, 4, 4)
    x[:, 0] = 200.0  # the other classes underflow to probability 0
    out = rk.pixel_scores(x, k=1, backend="cpu")
    assert torch.equal(out.uncertainty, torch.zeros(1, 4, 4)) and torch.equal(out.score, torch.zeros(1, 4, 4))


def test_uniform_map_has_exactly_zero_impurity(gen):
    x = random_logits((1, 3, 12, 12), generator=gen)
    x[:, 1] += 100.0
    for k in (1, 7):  # both impurity paths
        out = rk.region_scores(x, k=k, backend="cpu")
        assert torch.equal(out.impurity, torch.zeros_like(out.impurity))


# ---------------------------------------------------------------------------------------------- selection
def _same_selection(got, ref):
    for name, a, b in zip(("centers", "counts", "active", "selected"), got, ref):
        assert a.dtype == b.dtype and torch.equal(a, b), f"select_regions.{name} differs from the reference"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_selection_ties_nan_inf_active(dtype):
    g = torch.Generator().manual_seed(11)
    score = torch.randint(0, 4, (3, 17, 23), generator=g).to(dtype)
    score[0, 2, 3] = float("nan")
    score[1, 4, 4] = float("-inf")
    score[2, 5, 6] = float("inf")
    active = torch.rand(3, 17, 23, generator=g) < 0.2
    before = active.clone()
    n = torch.tensor([9, 0, 40])
    for r, m in ((0, 0), (1, 2), (2, 1), (0, 3)):
        got = rk.select_regions(score, n, r, m, active=active, backend="cpu")
        _same_selection(got, rk.select_regions(score, n, r, m, active=active, backend="reference"))
        assert torch.equal(active, before), "select_regions modified its active input"
        assert (got.active | ~before).all()


def test_selection_spans_several_candidate_chunks():
    """A smooth ramp with large suppression windows exhausts the first candidate chunk many times over."""
    i = torch.arange(120, dtype=torch.float32)[:, None]
    j = torch.arange(150, dtype=torch.float32)[None, :]
    score = (-(i - 60).abs() - (j - 75).abs()).round()[None]  # diamond with many ties
    for n, r, m in ((200, 1, 6), (30, 3, 12), (5000, 0, 1)):
        _same_selection(rk.select_regions(score, n, r, m, backend="cpu"),
                        rk.select_regions(score, n, r, m, backend="reference"))


@pytest.mark.parametrize("n,r,m", [(20, 1, 2), (40, 1, 30), (3000, 0, 0)])
def test_selection_on_large_maps(n, r, m):
    """Maps large enough for the sampled-threshold head; (40, 1, 30) exhausts the head and falls back to the rest."""
    g = torch.Generator().manual_seed(9)
    i = torch.arange(200, dtype=torch.float32)[:, None]
    j = torch.arange(260, dtype=torch.float32)[None, :]
    score = (100 - (i - 90).abs() * 0.7 - (j - 130).abs() * 0.4).round()[None].repeat(2, 1, 1)
    score += (torch.rand(2, 200, 260, generator=g) < 0.05) * 0.5
    score[1, 3, 4] = float("nan")
    _same_selection(rk.select_regions(score, n, r, m, backend="cpu"),
                    rk.select_regions(score, n, r, m, backend="reference"))


def test_selection_realistic_ra_round(gen):
    x = random_logits((1, 19, 96, 128), generator=gen)
    score = rk.region_scores(x, k=1, backend="cpu").score
    n = math.ceil(96 * 128 * 0.05 / 9)
    _same_selection(rk.select_regions(score, n, 1, 2, backend="cpu"),
                    rk.select_regions(score, n, 1, 2, backend="reference"))


def test_selection_empty_inputs():
    _same_selection(rk.select_regions(torch.empty(0, 4, 4), 3, backend="cpu"),
                    rk.select_regions(torch.empty(0, 4, 4), 3, backend="reference"))
    s = torch.rand(2, 3, 3)
    _same_selection(rk.select_regions(s, 0, backend="cpu"), rk.select_regions(s, 0, backend="reference"))
    nan = torch.full((1, 3, 3), float("nan"))
    got = rk.select_regions(nan, 4, backend="cpu")
    assert got.counts.tolist() == [0] and (got.centers == -1).all() and not got.active.any()


# ------------------------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("kind,neighbors", [("l1", 8), ("kl", 4), ("kl", 8), ("l1", 4)])
def test_lcr_parity(dtype, name, kind, neighbors, gen):
    x = layout(random_logits((2, 4, 9, 11), dtype=dtype, generator=gen, scale=1.0), name)
    labels = torch.randint(0, 3, (2, 9, 11), generator=gen)
    labels[0, :2] = 255
    check_loss_parity(rk.local_consistency_loss, "cpu", x, labels, kind=kind, neighbors=neighbors)


@pytest.mark.parametrize("label_dtype", [torch.uint8, torch.int32, torch.int64])
def test_lcr_label_dtypes_and_ignore(label_dtype, gen):
    x = random_logits((1, 3, 8, 10), generator=gen, scale=1.0)
    labels = torch.randint(0, 2, (1, 8, 10), generator=gen).to(label_dtype)
    check_loss_parity(rk.local_consistency_loss, "cpu", x, labels, ignore_index=1)
    check_loss_parity(rk.local_consistency_loss, "cpu", x, labels.fill_(255), ignore_index=255)  # no boundary


def test_lcr_no_boundary_is_zero_with_zero_gradient(gen):
    x = random_logits((2, 3, 5, 6), generator=gen).requires_grad_(True)
    labels = torch.full((2, 5, 6), 255, dtype=torch.long)  # every pixel ignored (the image border is a Laplacian edge)
    loss = rk.local_consistency_loss(x, labels, ignore_index=255, backend="cpu")
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 2, 1, 7), (2, 1, 4, 5), (0, 3, 4, 5)])
def test_losses_odd_shapes(shape, gen):
    x = random_logits(shape, generator=gen, scale=1.0)
    labels = torch.randint(0, 3, (shape[0], *shape[2:]), generator=gen)
    check_loss_parity(rk.local_consistency_loss, "cpu", x, labels)
    check_loss_parity(rk.negative_learning_loss, "cpu", x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("threshold", [0.05, 0.3, 1e-9])
def test_nl_parity(dtype, name, threshold, gen):
    x = layout(random_logits((2, 6, 7, 9), dtype=dtype, generator=gen, scale=2.0), name)
    check_loss_parity(rk.negative_learning_loss, "cpu", x, threshold=threshold)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_losses_wide_rows_and_nonfinite_logits(dtype, gen):
    # Rows wider than a vector register (the kernels run pixel-inner), then NaN, +inf and all -inf pixels: their NaN
    # probabilities are masked, so NL is NaN (as cross-entropy), and their gradients are NaN as with autograd.
    x = random_logits((2, 5, 6, 37), dtype=dtype, generator=gen, scale=2.0)
    labels = torch.randint(0, 3, (2, 6, 37), generator=gen)
    for kind, neighbors in [("l1", 8), ("kl", 4)]:
        check_loss_parity(rk.local_consistency_loss, "cpu", x, labels, kind=kind, neighbors=neighbors)
    check_loss_parity(rk.negative_learning_loss, "cpu", x)
    x[0, 1, 2, 3] = float("nan")
    x[1, :, 4, 5] = float("-inf")
    x[1, 2, 0, 30] = float("inf")
    check_loss_parity(rk.negative_learning_loss, "cpu", x)


@pytest.mark.parametrize("kind,neighbors", [("l1", 8), ("kl", 4)])
def test_gradcheck_lcr(kind, neighbors):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    labels = torch.randint(0, 2, (1, 5, 6), generator=g)
    fn = lambda t: torch.ops.ripu.local_consistency_loss(t, labels, kind, neighbors, 255)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_gradcheck_nl():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 5, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: torch.ops.ripu.negative_learning_loss(t, 0.2), (x,), eps=1e-7, atol=1e-6)


def test_half_gradient_comes_back_in_half(gen):
    x = random_logits((1, 3, 6, 7), dtype=torch.float16, generator=gen).requires_grad_(True)
    labels = torch.randint(0, 2, (1, 6, 7), generator=gen)
    (rk.local_consistency_loss(x, labels, backend="cpu") + rk.negative_learning_loss(x, backend="cpu")).backward()
    assert x.grad.dtype == torch.float16 and torch.isfinite(x.grad.float()).all()


# ------------------------------------------------------------------------------------ the extension's checks
@pytest.mark.parametrize("call,match", [
    (lambda: torch.ops.ripu.region_scores(torch.randn(1, 3, 4, 4), -1, None, True), r"ripu::region_scores: k must be >= 0"),
    (lambda: torch.ops.ripu.pixel_scores(torch.randn(3, 4, 4), 1, None, True), r"ripu::pixel_scores: logits must be a 4-D"),
    (lambda: torch.ops.ripu.pixel_entropy(torch.ones(1, 3, 4, 4, dtype=torch.int32)), r"ripu::pixel_entropy: logits must be float16"),
    (lambda: torch.ops.ripu.region_scores(torch.randn(1, 3, 4, 4), 1, [0, 3], True), r"ripu::region_scores: size must be positive"),
    (lambda: torch.ops.ripu.select_regions(torch.rand(1, 4, 4), torch.tensor([1]), 1, 1, 2, torch.zeros(1, 4, 4)),
     r"ripu::select_regions: active must be a bool tensor"),
    (lambda: torch.ops.ripu.local_consistency_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4), "l1", 8, 255),
     r"ripu::local_consistency_loss: labels must have an integer dtype"),
    (lambda: torch.ops.ripu.local_consistency_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long),
                                                  "l1", 8, 255), r"labels must have shape \(B, H, W\) = \(1, 4, 4\)"),
    (lambda: torch.ops.ripu.local_consistency_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long),
                                                  "l2", 8, 255), r"kind must be 'l1' or 'kl', got 'l2'"),
    (lambda: torch.ops.ripu.local_consistency_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long),
                                                  "l1", 6, 255), r"neighbors must be 4 or 8, got 6"),
])
def test_extension_errors_name_op_and_argument(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


def test_select_op_clamps_n_to_n_max():
    """The registered op clamps n[b] to [0, n_max] (as the CUDA kernel must: reading n to check it would sync)."""
    score = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(0))
    got = torch.ops.ripu.select_regions(score, torch.tensor([-2, 1, 9]), 3, 0, 0, None)
    assert got[0].shape == (3, 3, 2) and got[1].tolist() == [0, 1, 3]
    ref = rk.select_regions(score, torch.tensor([0, 1, 3]), radius=0, mask_radius=0, backend="reference")
    assert torch.equal(got[0], ref.centers) and torch.equal(got[2], ref.active)


def test_cpu_backend_refuses_other_devices():
    from ripu_kernels import _backend_cpp
    assert _backend_cpp.unavailable_reason(torch.device("cpu")) is None
    assert "CPU tensors only" in _backend_cpp.unavailable_reason(torch.device("meta"))
    assert rk.available_backends("cpu")[0] == "cpu"


@pytest.mark.parametrize("op", SCORE_OPS)
@pytest.mark.parametrize("size", [(17, 11), (9, 23)])  # from 9 x 11: one axis resized, the other left alone
@pytest.mark.parametrize("align_corners", [True, False])
def test_nonfinite_through_resize_with_one_axis_unchanged(op, size, align_corners, gen):
    """Along an axis the resize leaves alone, F.interpolate (CPU) reads each pixel alone: an inf does not turn its
    neighbour into NaN through a zero-weight tap (0 * inf). The kernels share that maths with the CUDA backend."""
    x = random_logits((1, 3, 9, 11), generator=gen)
    x[0, 1, 4, 5] = float("inf")
    check_parity(op, "cpu", x, 0, size, align_corners)
    e = rk.pixel_scores(x, k=0, size=size, align_corners=align_corners, backend="cpu").uncertainty[0]
    if size[1] == 11:  # width unchanged: the NaN stays in column 5
        assert torch.isnan(e[:, 5]).any() and not torch.isnan(e[:, 4]).any() and not torch.isnan(e[:, 6]).any()
    else:              # height unchanged: the NaN stays in row 4
        assert torch.isnan(e[4]).any() and not torch.isnan(e[3]).any() and not torch.isnan(e[5]).any()


@pytest.mark.parametrize("size", [(17, 11), (9, 23), (17, 23)])
@pytest.mark.parametrize("align_corners", [True, False])
def test_reference_resize_off_cpu_keeps_the_cpu_semantics(size, align_corners, gen):
    """On other devices the reference resizes an axis alone when the other is unchanged (F.interpolate's CUDA kernel
    would read a zero-weight neighbour there): the same non-finite pixels as CPU F.interpolate (which may turn an
    inf into a NaN in place: the ops treat both alike), values within an ulp."""
    from ripu_kernels.reference import _impl

    x = random_logits((2, 3, 9, 11), generator=gen)
    x[0, 1, 4, 5] = float("inf")
    want = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    if size[0] == 9:
        got = _impl._linear_along(x, 3, size[1], align_corners)
    elif size[1] == 11:
        got = _impl._linear_along(x, 2, size[0], align_corners)
    else:
        got = want
    finite = torch.isfinite(want)
    assert torch.equal(torch.isfinite(got), finite)
    torch.testing.assert_close(got[finite], want[finite], atol=1e-6, rtol=1e-6)
