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
