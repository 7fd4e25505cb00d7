import math

import pytest
import torch

import ripu_kernels as rk

from . import _oracle
from ._tol import assert_close_verbose, tol
from .conftest import LAYOUTS, backend_params, layout, random_logits


def test_reference_matches_loop_oracle(gen):
    x = random_logits((2, 7, 5, 6), generator=gen)
    x[0, :, 0, 0] = 0.0                    # uniform: entropy exactly 1
    x[0, 3, 1, 1] = 1e4                    # one-hot: entropy 0 (0 log 0 = 0)
    x[1, 2, 2, 2] = float("nan")
    x[1, 0, 3, 3] = float("-inf")
    out = rk.pixel_entropy(x, backend="reference")
    expected = torch.tensor([[[_oracle.pixel(x, b, i, j)[0] for j in range(6)] for i in range(5)] for b in range(2)])
    assert_close_verbose(out.double(), expected.double(), name="entropy", **tol(torch.float32))
    assert out[0, 0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert out[0, 1, 1].item() == 0.0
    assert math.isnan(out[1, 2, 2].item()) and math.isnan(out[1, 3, 3].item())


def test_one_class_is_zero_and_empty_batch():
    assert torch.equal(rk.pixel_entropy(torch.randn(2, 1, 3, 4), backend="reference"), torch.zeros(2, 3, 4))
    assert rk.pixel_entropy(torch.empty(0, 4, 3, 5), backend="reference").shape == (0, 3, 5)


def test_no_gradient_is_tracked():
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    assert not rk.pixel_entropy(x).requires_grad


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", LAYOUTS)
def test_parity(backend, device, dtype, name, gen):
    x = random_logits((2, 5, 13, 17), dtype=dtype, generator=gen)
    x[0, 1, 2, 3] = float("nan")
    x = layout(x.to(device), name)
    got = rk.pixel_entropy(x, backend=backend)
    ref = rk.pixel_entropy(x, backend="reference")
    assert got.dtype == ref.dtype and got.device == x.device
    assert_close_verbose(got.cpu(), ref.cpu(), name=f"{backend} pixel_entropy", **tol(dtype))


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("shape", [(1, 1, 3, 3), (0, 3, 4, 4), (1, 19, 1, 37), (3, 2, 5, 1)])
def test_parity_shapes(backend, device, shape, gen):
    x = random_logits(shape, generator=gen).to(device)
    assert_close_verbose(rk.pixel_entropy(x, backend=backend).cpu(), rk.pixel_entropy(x, backend="reference").cpu(),
                         name=f"{backend} pixel_entropy {shape}", **tol(torch.float32))
