"""The GPU backends (``cuda``, ``triton``) at the paper's sizes against the reference run on the same GPU.

Every test here needs a CUDA device (``pytest -m gpu`` selects them; ``make gpu-check`` runs them). Without one they
skip. The batch is 2 images of 19 x 1024 x 2048 logits by default; ``RIPU_GPU_CHECK_BATCH=8`` runs the paper's 8.

Checked: scores in NCHW and channels-last, the fused resize from 1/8 resolution (the driver's path), pure windows
exactly 0 and the selection past the impure windows equal to the reference's (row-major order among the zeros), one
RA round of selection bit for bit, the losses forward and backward, non-finite logits through a resize that leaves
one axis alone, no host synchronisation, ``torch.compile``.
"""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

import ripu_kernels as rk
from ripu_kernels import _dispatch

from ._score_checks import check_parity, near_tie_windows, with_nonfinite
from ._tol import assert_close_verbose, tol

BATCH = int(os.environ.get("RIPU_GPU_CHECK_BATCH", "2"))
C, H, W = 19, 1024, 2048


def _why(backend: str) -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device"
    return _dispatch.unavailable_reason(backend, torch.device("cuda"))


BACKENDS = [pytest.param(b, id=b, marks=pytest.mark.skipif(_why(b) is not None, reason=f"{b}: {_why(b)}"))
            for b in ("cuda", "triton")]
LAYOUTS = ["contiguous", "channels_last"]
pytestmark = pytest.mark.gpu


def _layout(x: torch.Tensor, name: str) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if name == "channels_last" else x.contiguous()


@pytest.fixture(scope="module")
def low_res():
    """Logits at 1/8 resolution shaped like a segmentation network's: smooth class fields, so most 3x3 windows are
    pure and the impure ones follow class boundaries."""
    g = torch.Generator().manual_seed(2022)
    coarse = torch.randn(BATCH, C, H // 64, W // 64, generator=g) * 4
    x = F.interpolate(coarse, size=(H // 8, W // 8), mode="bicubic", align_corners=False)
    x = x + 0.3 * torch.randn(x.shape, generator=g)
    return x.cuda()


@pytest.fixture(scope="module")
def full_res(low_res):
    return F.interpolate(low_res, size=(H, W), mode="bilinear", align_corners=True).contiguous()


# ------------------------------------------------------------------------------------------------- scores
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LAYOUTS)
def test_region_scores_real_size(backend, name, full_res):
    check_parity("region_scores", backend, _layout(full_res, name), 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LAYOUTS)
def test_pixel_scores_real_size(backend, name, full_res):
    check_parity("pixel_scores", backend, _layout(full_res, name), 32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["region_scores", "pixel_scores"])
@pytest.mark.parametrize("align_corners", [True, False])
def test_scores_size_path_from_eighth_resolution(backend, op, align_corners, low_res):
    check_parity(op, backend, _layout(low_res, "channels_last"), 1 if op == "region_scores" else 8, (H, W),
                 align_corners)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [0, 3, 17, 64, 300])
def test_region_scores_k_sweep(backend, k, full_res):
    check_parity("region_scores", backend, full_res[:1, :, :256, :], k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pixel_entropy_real_size(backend, full_res):
    for name in LAYOUTS:
        x = _layout(full_res, name)
        assert_close_verbose(rk.pixel_entropy(x, backend=backend), rk.pixel_entropy(x, backend="reference"),
                             name=f"{backend} pixel_entropy {name}", **tol(torch.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["region_scores", "pixel_scores"])
@pytest.mark.parametrize("size", [(61, 47), (40, 93)])  # one axis resized, the other left alone (47 / 40)
def test_scores_nonfinite_through_resize_with_one_axis_unchanged(backend, op, size):
    """A zero-weight tap must not turn an inf on the unresized axis into a NaN next to it (the CPU semantics of
    F.interpolate, which the reference follows on every device)."""
    g = torch.Generator().manual_seed(5)
    x = with_nonfinite(torch.randn(2, 5, 40, 47, generator=g) * 3).cuda()
    check_parity(op, backend, x, 1, size, True)
    check_parity(op, backend, x, 1, size, False)


# ---------------------------------------------------------------------------------------------- selection
@pytest.mark.parametrize("backend", BACKENDS)
def test_select_regions_pure_windows_exactly_zero_and_taken_in_row_major_order(backend, full_res):
    """Pure windows score exactly 0 on the backend as in the reference; once the impure windows are used up the
    selection takes the zeros in row-major order, so it equals the reference's on the reference's scores."""
    got = rk.region_scores(full_res, k=1, backend=backend)
    ref = rk.region_scores(full_res, k=1, backend="reference")
    pure = ref.impurity == 0
    assert pure.float().mean() > 0.3, "the test maps should have many pure windows"
    assert torch.equal(got.impurity == 0, pure), "pure windows differ between backend and reference"
    assert torch.equal(got.score[pure], torch.zeros_like(got.score[pure]))
    # every impure window already taken (active): the budget goes to the exact zeros
    active = ref.score != 0
    n = 500
    for sel_backend in (backend, "reference"):
        a = rk.select_regions(got.score, n, radius=1, active=active, backend=sel_backend)
        b = rk.select_regions(ref.score, n, radius=1, active=active, backend="reference")
        for name in ("centers", "counts", "active", "selected"):
            assert torch.equal(getattr(a, name).cpu(), getattr(b, name).cpu()), f"{name} ({sel_backend})"


@pytest.mark.parametrize("backend", BACKENDS)
def test_select_regions_one_ra_round_equals_reference(backend, full_res):
    """One RA 5 % round (k = 1: 3x3 regions, mask radius 2) on the reference's scores: bit for bit; then PA."""
    score = rk.region_scores(full_res, k=1, backend="reference").score
    n = math.ceil(H * W * 0.05 / 9)
    active = torch.rand(score.shape, generator=torch.Generator().manual_seed(1)).cuda() < 0.02
    for radius, mask_radius, budget in ((1, 2, n), (0, 32, 200)):
        a = rk.select_regions(score, budget, radius=radius, mask_radius=mask_radius, active=active, backend=backend)
        b = rk.select_regions(score, budget, radius=radius, mask_radius=mask_radius, active=active,
                              backend="reference")
        for name in ("centers", "counts", "active", "selected"):
            assert torch.equal(getattr(a, name).cpu(), getattr(b, name).cpu()), f"{name} r={radius} m={mask_radius}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_select_regions_many_exact_zeros(backend):
    """A map that is mostly exact zeros (pure windows) with a budget reaching into them: the candidate threshold
    lands inside the zero bin (tools/gpu_timings.py times this case)."""
    g = torch.Generator().manual_seed(3)
    score = torch.rand(BATCH, H, W, generator=g)
    score[torch.rand(BATCH, H, W, generator=g) < 0.9] = 0.0
    score = score.cuda()
    n = math.ceil(H * W * 0.05 / 9)
    a = rk.select_regions(score, n, radius=1, backend=backend)
    b = rk.select_regions(score, n, radius=1, backend="reference")
    for name in ("centers", "counts", "active", "selected"):
        assert torch.equal(getattr(a, name).cpu(), getattr(b, name).cpu()), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_select_regions_no_host_sync(backend, full_res):
    """Scores, selection (int n, and a tensor n with n_max) and the losses' forward and backward without one host
    synchronisation."""
    x = full_res[:, :, :256, :512].clone().requires_grad_()
    labels = x.detach().argmax(1)
    score = rk.region_scores(x.detach(), k=1, backend=backend).score
    n = torch.full((x.shape[0],), 50, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        rk.region_scores(x.detach(), k=1, size=(512, 1024), backend=backend)
        rk.select_regions(score, 50, radius=1, backend=backend)
        rk.select_regions(score, n, radius=1, n_max=64, backend=backend)
        loss = rk.local_consistency_loss(x, labels, backend=backend) + rk.negative_learning_loss(x, backend=backend)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ------------------------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", ["local_consistency_loss", "negative_learning_loss"])
def test_losses_real_size_forward_backward(backend, loss, full_res):
    x = full_res[:1]
    labels = x.argmax(1)
    labels[:, :8] = 255
    fn = getattr(rk, loss)
    kwargs = [dict(kind="l1"), dict(kind="kl", neighbors=4)] if loss == "local_consistency_loss" else [dict()]
    for kw in kwargs:
        args = (labels,) if loss == "local_consistency_loss" else ()
        a = x.clone().requires_grad_()
        b = x.clone().requires_grad_()
        la = fn(a, *args, backend=backend, **kw)
        lb = fn(b, *args, backend="reference", **kw)
        assert_close_verbose(la.detach(), lb.detach(), name=f"{backend} {loss} {kw}", **tol(torch.float32))
        la.backward()
        lb.backward()
        assert_close_verbose(a.grad, b.grad, name=f"{backend} d {loss} {kw}", **tol(torch.float32, grad=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_learning_loss_nonfinite_is_nan(backend):
    x = torch.randn(2, 5, 8, 9, device="cuda")
    x[1, 2, 3, 4] = float("nan")
    assert torch.isnan(rk.negative_learning_loss(x, backend=backend))
    assert torch.isnan(rk.negative_learning_loss(torch.full_like(x, float("nan")), backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_local_consistency_loss_unread_nonfinite_logit_has_zero_gradient(backend):
    x = torch.randn(1, 3, 16, 16, device="cuda")
    x[0, :, 0, 0] = float("nan")
    labels = torch.zeros(1, 16, 16, dtype=torch.long, device="cuda")
    labels[0, 10:, 10:] = 1
    for b_ in (backend, "reference"):
        xg = x.clone().requires_grad_()
        loss = rk.local_consistency_loss(xg, labels, backend=b_)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(xg.grad).all() and xg.grad[0, :, 0, 0].eq(0).all(), b_


# ----------------------------------------------------------------------------------------------- compile
@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 5, 24, 31, generator=g) * 3).cuda().requires_grad_()
    labels = torch.randint(0, 5, (2, 24, 31), generator=g).cuda()
    n = torch.tensor([4, 2], device="cuda")

    def step(logits):
        s = rk.region_scores(logits.detach(), k=1, size=(48, 62), backend=backend)
        sel = rk.select_regions(s.score, n, radius=1, n_max=4, backend=backend)
        loss = rk.local_consistency_loss(logits, labels, backend=backend) + rk.negative_learning_loss(logits,
                                                                                                    backend=backend)
        return s.score, sel.centers, loss

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")  # inductor: test_triton_backend.py
    got, ref = compiled(x), step(x)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    torch.testing.assert_close(got[2], ref[2])
