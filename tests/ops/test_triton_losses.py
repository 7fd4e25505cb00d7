"""The Triton loss kernels beyond parity with the reference (tests/ops/test_triton_backend.py has that): the
softmax computed once and saved, a backward that reads nothing far from label boundaries, int64 offsets, the
device guard around launches, and NaN for non-finite logits in NL.

Runs under Triton's interpreter on CPU tensors (TRITON_INTERPRET=1, set by tests/conftest.py) or compiled on a GPU.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ripu_kernels as rk
from ripu_kernels import triton as tbackend
from ripu_kernels.reference import _impl

from .test_triton_backend import DEVICE, TOL, _grad_tol, _labels, _logits, _loss_pair, assert_close

_WHY = tbackend.unavailable_reason(DEVICE)
pytestmark = [
    pytest.mark.skipif(_WHY is not None, reason=f"Triton backend unavailable: {_WHY}"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]


def _losses():
    from ripu_kernels.triton import _losses

    return _losses


def _region_labels(b, h, w, seed=0):
    """Labels in 4 x 4 blocks of 2 classes: boundaries along some block edges, large boundary-free areas."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 2, (b, -(-h // 4), -(-w // 4)), generator=g)
    return blocks.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, :h, :w].contiguous().to(DEVICE)


def _record_launches(monkeypatch):
    L = _losses()
    names = []
    real = L.launch

    def launch(kernel, grid, *args, **meta):
        names.append(kernel.__name__ if hasattr(kernel, "__name__") else kernel.fn.__name__)
        return real(kernel, grid, *args, **meta)

    monkeypatch.setattr(L, "launch", launch)
    return names


# ---------------------------------------------------------------------------------------------------- LCR
@pytest.mark.parametrize("kind,neighbors", [("l1", 8), ("kl", 4)])
def test_lcr_softmax_once_saved_for_backward(monkeypatch, kind, neighbors):
    """The forward computes the softmax once (one kernel, one (B, H, W, C) buffer) and the backward reuses it:
    no softmax kernel runs in the backward."""
    names = _record_launches(monkeypatch)
    x = _logits((2, 5, 9, 11)).requires_grad_(True)
    lab = _labels(2, 9, 11, ignore=255)
    loss = rk.local_consistency_loss(x, lab, kind, neighbors, 255, backend="triton")
    forward = list(names)
    loss.backward()
    backward = names[len(forward):]
    assert forward == ["_lcr_softmax_kernel", "_lcr_fwd_kernel"], forward
    assert backward == ["_lcr_gm_kernel", "_lcr_dx_kernel"], backward


def test_lcr_backward_reads_only_near_boundaries(monkeypatch):
    """Poison the saved softmax away from boundaries and the mean-gradient scratch everywhere it is not written:
    the gradient is exactly 0 far from boundaries and finite near them, so neither was read there."""
    L = _losses()
    x = _logits((1, 4, 12, 16), seed=3)
    lab = _region_labels(1, 12, 16)
    loss, count, p, bnd = torch.ops.ripu_triton.local_consistency_loss(x, lab, "kl", 8, 255)
    ref_bnd = _impl.boundary_mask(lab, 8, 255)
    assert torch.equal(bnd.bool(), ref_bnd)
    near = F.max_pool2d(ref_bnd.float()[:, None], 3, stride=1, padding=1)[:, 0] > 0  # boundary or a neighbour
    # pixels whose P a boundary pixel's neighbourhood mean reads: within 1 of a boundary pixel (replicate clamp)
    assert bool(near.any()) and bool((~near).any())
    poisoned = p.clone()
    poisoned[~near] = float("nan")
    real_empty_like = torch.empty_like
    monkeypatch.setattr(L.torch, "empty_like", lambda t, **kw: torch.full_like(t, float("nan"), **kw))
    dx = torch.ops.ripu_triton._local_consistency_loss_backward(
        torch.tensor(1.0, device=DEVICE), poisoned, bnd, count, "kl", 8, torch.float32, False)
    monkeypatch.setattr(L.torch, "empty_like", real_empty_like)
    far = ~near
    assert torch.equal(dx.permute(0, 2, 3, 1)[far], torch.zeros_like(dx.permute(0, 2, 3, 1)[far]))
    assert bool(torch.isfinite(dx).all()), "a poisoned value was read"
    clean = torch.ops.ripu_triton._local_consistency_loss_backward(
        torch.tensor(1.0, device=DEVICE), p, bnd, count, "kl", 8, torch.float32, False)
    assert torch.equal(dx, clean)


@pytest.mark.parametrize("where", ["boundary", "far"])
def test_lcr_nonfinite_logits_as_the_reference(where):
    """A NaN/+inf logit reaches the loss only through a boundary pixel's neighbourhood, as in the reference;
    loss and gradient NaN patterns agree (docs/ops.md: the gradient is exactly 0 at pixels the loss never
    reads, on every backend)."""
    x = _logits((1, 3, 12, 16), seed=5)
    lab = _region_labels(1, 12, 16)
    bnd = _impl.boundary_mask(lab, 8, 255)[0]
    far = F.max_pool2d(bnd.float()[None, None], 5, stride=1, padding=2)[0, 0] == 0
    i, j = (bnd if where == "boundary" else far).nonzero()[0].tolist()
    x[0, 1, i, j] = float("nan")
    x[0, 2, i, (j + 1) % 16] = float("inf")
    la, lb, ga, gb = _loss_pair(rk.local_consistency_loss, x, lab, "l1", 8, 255)
    assert math.isnan(la.item()) == (where == "boundary") == math.isnan(lb.item())
    if where == "far":
        # the loss does not depend on these pixels: both backends give exactly 0 there
        bad = ~torch.isfinite(x).all(dim=1, keepdim=True).expand_as(x)
        assert torch.equal(ga[bad], torch.zeros_like(ga[bad])) and torch.equal(gb[bad], torch.zeros_like(gb[bad]))
    assert_close(ga, gb, *_grad_tol(torch.float32, gb.nan_to_num()), "grad")


# ----------------------------------------------------------------------------------------------------- NL
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nl_nonfinite_logit_gives_nan(value):
    """docs/ops.md: NL follows the softmax, as cross-entropy does: NaN when a pixel has a NaN or +inf logit (its
    probabilities are NaN), finite for a -inf logit (an exact probability 0); the same on every backend."""
    x = _logits((2, 4, 5, 6), seed=1)
    x[1, 2, 3, 4] = value
    loss = rk.negative_learning_loss(x, 0.05, backend="triton")
    ref = rk.negative_learning_loss(x, 0.05, backend="reference")
    assert math.isnan(loss.item()) == math.isnan(ref.item()) == (value != float("-inf"))
    if value == float("-inf"):
        assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    clean = rk.negative_learning_loss(_logits((2, 4, 5, 6), seed=1), 0.05, backend="triton")
    assert math.isfinite(clean.item())


# ------------------------------------------------------------------------------------------ offsets, guard
def test_offsets_past_2_31_are_int64():
    """(b * H * W + pixel) * C exceeds 2^31 at e.g. 8 x 1024 x 2048 x 19 (and one image of 16 k x 16 k x 19):
    the offset helper computes in int64. Checked on the helper itself: under the interpreter int32 arithmetic
    would wrap (or trip Triton's overflow check), on a GPU the compiled helper is the same code."""
    import triton
    import triton.language as tl

    global _plane_offset  # a jit function sees module globals only
    _plane_offset = _losses()._plane_offset

    @triton.jit
    def kernel(b_ptr, pix_ptr, out_ptr, HW, C, N: tl.constexpr):
        i = tl.arange(0, N)
        b = tl.load(b_ptr + i)
        pix = tl.load(pix_ptr + i)
        tl.store(out_ptr + i, _plane_offset(b, pix, HW, C))

    hw, c = 16384 * 16384, 19
    b = torch.tensor([0, 7, 1, 3], dtype=torch.int32, device=DEVICE)
    pix = torch.tensor([hw - 1, 2 ** 21, 5, hw - 7], dtype=torch.int32, device=DEVICE)
    out = torch.empty(4, dtype=torch.int64, device=DEVICE)
    kernel[(1,)](b, pix, out, hw, c, N=4)
    expected = [(int(bi) * hw + int(pi)) * c for bi, pi in zip(b.tolist(), pix.tolist())]
    assert out.tolist() == expected and max(expected) > 2 ** 31


def test_launch_enters_the_tensors_cuda_device(monkeypatch):
    """Triton launches on the current CUDA device: launch() enters torch.cuda.device(tensor.device) first, so a
    tensor on cuda:1 runs on cuda:1 when the current device is 0. Checked without a GPU by standing in for
    torch.cuda.device and the launcher; with 2+ GPUs, test_ops_on_a_second_gpu runs it for real."""
    from ripu_kernels.triton import _common as C

    entered = []

    class Device:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            entered.append(str(self.device))

        def __exit__(self, *exc):
            entered.append("exit")

    class FakeCuda:
        def __init__(self):
            self.device = torch.device("cuda", 1)

    seen = []
    monkeypatch.setattr(C.torch.cuda, "device", Device)
    monkeypatch.setattr(C, "wrap_triton", lambda k: {(1,): lambda *a, **m: seen.append(list(entered))})
    monkeypatch.setattr(C, "INTERPRET", False)
    guard = C.device_guard([torch.zeros(1), FakeCuda()])
    with guard:
        pass
    assert entered == ["cuda:1", "exit"]
    entered.clear()
    monkeypatch.setattr(C, "device_guard", lambda tensors: Device(torch.device("cuda", 1)))
    C.launch("kernel", (1,), torch.zeros(1))
    assert seen == [["cuda:1"]] and entered == ["cuda:1", "exit"]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_ops_on_a_second_gpu():
    dev = torch.device("cuda", 1)
    torch.cuda.set_device(0)
    x = _logits((1, 4, 9, 11)).to(dev).requires_grad_(True)
    lab = _labels(1, 9, 11).to(dev)
    s = rk.region_scores(x.detach(), k=1, backend="triton")
    ref = rk.region_scores(x.detach(), k=1, backend="reference")
    assert_close(s.score, ref.score, *TOL[torch.float32], "score on cuda:1")
    loss = rk.local_consistency_loss(x, lab, "l1", 8, 255, backend="triton")
    loss.backward()
    assert x.grad.device == dev


@pytest.mark.parametrize("op", ["local_consistency_loss", "negative_learning_loss"])
def test_double_backward_raises_naming_the_op(op):
    """The gradient is not itself differentiable on this backend: differentiating it again says so, naming the
    public op (instead of autograd's message about an internal backward op)."""
    x = _logits((1, 3, 5, 6)).requires_grad_(True)
    args = (_labels(1, 5, 6),) if op == "local_consistency_loss" else (0.3,)
    loss = getattr(rk, op)(x, *args, backend="triton")
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match=f"ripu::{op}: double backward .* not supported by the triton backend"):
        torch.autograd.grad(g.sum(), x)
