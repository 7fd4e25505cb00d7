"""``torch.library.opcheck`` on every registered ``ripu::`` op (schema, fake kernel, autograd registration, AOT
dispatch) and one ``torch.compile(fullgraph=True)`` test through scores, selection and a loss with backward."""
from __future__ import annotations

import pytest
import torch

import ripu_kernels as rk
from ripu_kernels import _dispatch

pytestmark = pytest.mark.skipif(_dispatch.unavailable_reason("cpu", torch.device("cpu")) is not None,
                                reason="the compiled extension ripu_kernels._C is not built")


def _logits(dtype=torch.float32, shape=(2, 4, 6, 7), grad=False, seed=0):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    return x.requires_grad_(grad)


def _labels(shape=(2, 6, 7)):
    return torch.randint(0, 3, shape, generator=torch.Generator().manual_seed(1))


def _samples():
    cl = _logits().contiguous(memory_format=torch.channels_last)
    score = torch.rand(2, 6, 7, generator=torch.Generator().manual_seed(2))
    yield "pixel_entropy", (_logits(),)
    yield "pixel_entropy", (_logits(torch.float16),)
    yield "region_scores", (_logits(), 1, None, True)
    yield "region_scores", (cl, 2, [9, 5], False)
    yield "region_scores", (_logits(torch.float64), 0, None, True)
    yield "pixel_scores", (_logits(), 3, None, True)
    yield "pixel_scores", (_logits(torch.bfloat16), 1, [4, 11], True)
    yield "select_regions", (score, torch.tensor([3, 1]), 3, 1, 2, None)
    yield "select_regions", (score.double(), torch.tensor([2, 0]), 2, 0, 1, torch.rand(2, 6, 7) < 0.3)
    for kind, nb in (("l1", 8), ("kl", 4)):
        yield "local_consistency_loss", (_logits(grad=True), _labels(), kind, nb, 255)
        yield "local_consistency_loss", (_logits(torch.float64, grad=True), _labels(), kind, nb, 2)
        yield "_local_consistency_loss_backward", (torch.tensor(1.5), _logits(), _labels(), kind, nb, 255)
    yield "negative_learning_loss", (_logits(grad=True), 0.2)
    yield "negative_learning_loss", (_logits(torch.float64, grad=True), 0.05)
    yield "_negative_learning_loss_backward", (torch.tensor(0.5), _logits(), 0.2)


SAMPLES = list(_samples())


@pytest.mark.parametrize("op,args", SAMPLES, ids=[f"{op}-{i}" for i, (op, _) in enumerate(SAMPLES)])
def test_opcheck(op, args):
    torch.library.opcheck(getattr(torch.ops.ripu, op).default, args)


def test_every_registered_op_is_checked():
    checked = {op for op, _ in SAMPLES}
    expected = {"pixel_entropy", "region_scores", "pixel_scores", "select_regions", "local_consistency_loss",
                "_local_consistency_loss_backward", "negative_learning_loss", "_negative_learning_loss_backward"}
    assert checked == expected
    for op in expected:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"ripu::{op}", "CPU"), op


def test_torch_compile_fullgraph_scores_selection_and_loss():
    """The public ops trace into one graph (fake kernels, cached dispatch) and the loss backward runs the compiled
    backward ops; results equal eager mode."""

    def step(logits, labels):
        scores = rk.region_scores(logits.detach(), k=1, backend="cpu")
        sel = rk.select_regions(scores.score, 3, radius=1, mask_radius=2, backend="cpu")
        loss = (rk.local_consistency_loss(logits, labels, kind="kl", backend="cpu")
                + rk.negative_learning_loss(logits, threshold=0.1, backend="cpu"))
        return scores.score, sel.centers, sel.selected, loss

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    x_eager, x_comp = _logits(grad=True), _logits(grad=True)
    labels = _labels()
    ref = step(x_eager, labels)  # eager first: also warms the backend lookup
    got = compiled(x_comp, labels)
    for a, b in zip(got[:3], ref[:3]):
        assert torch.equal(a, b)
    torch.testing.assert_close(got[3], ref[3])
    ref[3].backward()
    got[3].backward()
    torch.testing.assert_close(x_comp.grad, x_eager.grad)
