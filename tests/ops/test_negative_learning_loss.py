import pytest
import torch

import ripu_kernels as rk

from . import _oracle
from ._loss_checks import check_loss_parity
from .conftest import LAYOUTS, backend_params, layout, random_logits

nl = rk.negative_learning_loss


@pytest.mark.parametrize("threshold", [0.05, 0.3, 1e-9, 1.5])
def test_reference_matches_loop_oracle(threshold, gen):
    x = random_logits((2, 6, 4, 5), generator=gen)
    got = nl(x, threshold=threshold, backend="reference")
    assert got.item() == pytest.approx(_oracle.nl_loss(x, threshold), rel=1e-5, abs=1e-7)


def test_empty_mask_is_zero_with_zero_gradient():
    x = torch.zeros(1, 2, 3, 3, requires_grad=True)   # p = 0.5 everywhere
    loss = nl(x, threshold=0.05, backend="reference")
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_no_gradient_through_the_mask(gen):
    x = random_logits((1, 4, 3, 3), dtype=torch.float64, generator=gen).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: nl(t, 0.05, backend="reference"), (x,))


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", LAYOUTS)
def test_parity(backend, device, dtype, name, gen):
    x = layout(random_logits((2, 7, 9, 10), dtype=dtype, generator=gen).to(device), name)
    check_loss_parity(nl, backend, x, threshold=0.05)


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("shape,threshold", [((1, 1, 4, 4), 0.05), ((0, 3, 4, 4), 0.05), ((1, 19, 3, 1), 0.1),
                                             ((1, 2, 3, 3), 1e-12)])
def test_parity_odd_shapes(backend, device, shape, threshold, gen):
    check_loss_parity(nl, backend, random_logits(shape, generator=gen).to(device), threshold=threshold)


@pytest.mark.parametrize("backend,device", backend_params())
def test_backend_gradcheck(backend, device, gen):
    x = random_logits((1, 4, 3, 5), dtype=torch.float64, generator=gen).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: nl(t, 0.05, backend=backend), (x,))


# --------------------------------------------------------------------------------------- non-finite logits
CPU_BACKENDS = ["reference"] + [p.values[0] for p in backend_params() if p.values[1] == "cpu" and not p.marks]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_nonfinite_logits_give_nan_like_cross_entropy_and_lcr(backend, gen):
    """A pixel with a non-finite logit has NaN probabilities, which the mask counts: NL is NaN, as cross-entropy is
    and as LCR is when the pixel is on a boundary; the other pixels' gradients stay finite."""
    x = random_logits((2, 4, 5, 6), generator=gen)
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[1, 2, 3, 4] = bad
        yg = y.clone().requires_grad_()
        loss = nl(yg, backend=backend)
        assert torch.isnan(loss)
        assert torch.isnan(torch.nn.functional.cross_entropy(y, y.argmax(1).clamp(max=3)))
        loss.backward()
        finite = torch.ones(2, 5, 6, dtype=torch.bool)
        finite[1, 3, 4] = False
        assert torch.isfinite(yg.grad.permute(0, 2, 3, 1)[finite]).all()
        assert torch.isnan(yg.grad[1, :, 3, 4]).all()
    assert torch.isnan(nl(torch.full((1, 3, 2, 2), float("nan")), backend=backend))  # was 0.0: an empty mask
    labels = torch.zeros(2, 5, 6, dtype=torch.long)
    labels[1, 3, 4] = 1
    y = x.clone()
    y[1, 2, 3, 4] = float("nan")
    assert torch.isnan(rk.local_consistency_loss(y, labels, backend=backend))


@pytest.mark.parametrize("backend,device", backend_params())
def test_nonfinite_parity(backend, device, gen):
    x = random_logits((2, 5, 6, 7), generator=gen)
    x[0, 1, 2, 3] = float("nan")
    x[1, :, 4, 5] = float("-inf")
    x[1, 2, 0, 6] = float("inf")
    check_loss_parity(nl, backend, x.to(device), threshold=0.05)


# ------------------------------------------------------------------------------------------ double backward
def test_reference_double_backward(gen):
    x = random_logits((1, 3, 3, 4), dtype=torch.float64, generator=gen).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: nl(t, 0.2, backend="reference"), (x,))


@pytest.mark.parametrize("backend,device", backend_params())
def test_compiled_double_backward_raises_naming_the_op(backend, device, gen):
    if backend == "triton":
        pytest.skip("the Triton backend's double backward is the Triton engineer's")
    x = random_logits((1, 3, 4, 5), generator=gen).to(device).requires_grad_(True)
    (g,) = torch.autograd.grad(nl(x, 0.2, backend=backend), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"ripu::negative_learning_loss: double backward .* not implemented"):
        g.sum().backward()
