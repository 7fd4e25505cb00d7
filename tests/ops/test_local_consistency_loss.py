import pytest
import torch

import ripu_kernels as rk
from ripu_kernels.reference._impl import boundary_mask

from . import _oracle
from ._loss_checks import check_loss_parity
from .conftest import LAYOUTS, backend_params, layout, random_logits

lcr = rk.local_consistency_loss


def blocky_labels(b, h, w, classes=4, seed=0, ignore_frac=0.1):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (b, 1, (h + 2) // 3, (w + 2) // 3), generator=g).float()
    labels = torch.nn.functional.interpolate(coarse, scale_factor=3, mode="nearest")[:, 0, :h, :w].long()
    labels[torch.rand(b, h, w, generator=g) < ignore_frac] = 255
    return labels


@pytest.mark.parametrize("kind", ["l1", "kl"])
@pytest.mark.parametrize("neighbors", [8, 4])
def test_reference_matches_loop_oracle(kind, neighbors, gen):
    x = random_logits((2, 3, 6, 7), generator=gen)
    y = blocky_labels(2, 6, 7)
    got = lcr(x, y, kind=kind, neighbors=neighbors, backend="reference")
    assert got.item() == pytest.approx(_oracle.lcr_loss(x, y, kind, neighbors), rel=1e-5, abs=1e-6)


def test_boundary_is_laplacian_nonzero_not_ignored():
    y = torch.zeros(1, 5, 5, dtype=torch.long)
    y[0, 2, 2] = 1
    b8 = boundary_mask(y, 8, 255)[0]
    # Zero padding: the label map's border is a "boundary" where labels are non-zero; here only around (2, 2).
    assert b8.sum() == 9 and b8[1:4, 1:4].all()
    b4 = boundary_mask(y, 4, 255)[0]
    assert b4.sum() == 5 and b4[2, 2] and b4[1, 2] and b4[2, 1] and not b4[1, 1]
    y[0, 2, 2] = 255
    assert not boundary_mask(y, 8, 255)[0, 2, 2] and boundary_mask(y, 8, 255)[0, 1, 1]


def test_no_boundary_gives_zero_with_zero_gradient(gen):
    x = random_logits((2, 3, 5, 5), generator=gen).requires_grad_(True)
    y = torch.zeros(2, 5, 5, dtype=torch.long)   # constant 0: Laplacian 0 everywhere (zero padding)
    loss = lcr(x, y, backend="reference")
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))
    z = random_logits((0, 3, 5, 5), generator=gen).requires_grad_(True)
    assert lcr(z, torch.zeros(0, 5, 5, dtype=torch.long), backend="reference").item() == 0.0


@pytest.mark.parametrize("kind", ["l1", "kl"])
@pytest.mark.parametrize("neighbors", [8, 4])
def test_reference_gradcheck(kind, neighbors, gen):
    x = random_logits((1, 3, 5, 6), dtype=torch.float64, generator=gen).requires_grad_(True)
    y = blocky_labels(1, 5, 6, classes=3, seed=1)
    assert torch.autograd.gradcheck(lambda t: lcr(t, y, kind=kind, neighbors=neighbors, backend="reference"), (x,))


def test_half_input_computes_in_float32(gen):
    x = random_logits((1, 3, 6, 6), generator=gen).half().requires_grad_(True)
    y = blocky_labels(1, 6, 6)
    loss = lcr(x, y, backend="reference")
    assert loss.dtype == torch.float32
    loss.backward()
    assert x.grad.dtype == torch.float16


# ------------------------------------------------------------------------------------------- backend parity
@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("kind", ["l1", "kl"])
@pytest.mark.parametrize("neighbors", [8, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity(backend, device, kind, neighbors, dtype, gen):
    x = random_logits((2, 5, 11, 13), dtype=dtype, generator=gen).to(device)
    y = blocky_labels(2, 11, 13).to(device)
    check_loss_parity(lcr, backend, x, y, kind=kind, neighbors=neighbors)


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_parity_layouts_half(backend, device, name, dtype, gen):
    x = layout(random_logits((2, 4, 9, 10), dtype=dtype, generator=gen).to(device), name)
    check_loss_parity(lcr, backend, x, blocky_labels(2, 9, 10, seed=2).to(device))


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("shape", [(1, 1, 5, 5), (0, 3, 4, 4), (1, 3, 1, 9), (3, 2, 1, 1)])
def test_parity_odd_shapes(backend, device, shape, gen):
    b, _, h, w = shape
    check_loss_parity(lcr, backend, random_logits(shape, generator=gen).to(device), blocky_labels(b, h, w).to(device))


@pytest.mark.parametrize("backend,device", backend_params())
def test_parity_all_ignore_and_ignore_index(backend, device, gen):
    x = random_logits((1, 3, 6, 6), generator=gen).to(device)
    check_loss_parity(lcr, backend, x, torch.full((1, 6, 6), 255, dtype=torch.long, device=device))
    y = blocky_labels(1, 6, 6).to(device)
    check_loss_parity(lcr, backend, x, y, ignore_index=2)
    check_loss_parity(lcr, backend, x, y.to(torch.uint8))


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("kind", ["l1", "kl"])
def test_backend_gradcheck(backend, device, kind, gen):
    x = random_logits((1, 3, 5, 6), dtype=torch.float64, generator=gen).to(device).requires_grad_(True)
    y = blocky_labels(1, 5, 6, classes=3, seed=1).to(device)
    assert torch.autograd.gradcheck(lambda t: lcr(t, y, kind=kind, backend=backend), (x,))


# ------------------------------------------------------------------- pixels the loss does not read, double backward
@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("neighbors", [8, 4])
def test_unread_nonfinite_logits_get_zero_gradient(backend, device, neighbors, gen):
    """The gradient is exactly 0 at pixels the loss never reads (more than one offset from every boundary pixel),
    even where their logits are not finite; where the loss reads a non-finite logit the loss is NaN."""
    x = random_logits((1, 3, 9, 10), generator=gen)
    labels = torch.zeros(1, 9, 10, dtype=torch.long)
    labels[0, 6:, 7:] = 1
    x[0, :, 0, 0] = float("nan")
    x[0, 1, 2, 2] = float("inf")
    if neighbors == 4:
        x[0, 0, 5, 5] = float("nan")  # only diagonal to a boundary pixel, (6, 6): read by the 3x3 mean only
    check_loss_parity(lcr, backend, x.to(device), labels.to(device), neighbors=neighbors)
    xg = x.to(device).requires_grad_()
    loss = lcr(xg, labels.to(device), neighbors=neighbors, backend=backend)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(xg.grad).all()
    assert xg.grad[0, :, 0, 0].eq(0).all() and xg.grad[0, :, 2, 2].eq(0).all()
    if neighbors == 4:
        assert xg.grad[0, :, 5, 5].eq(0).all()
    y = x.clone()
    y[0, 2, 6, 7] = float("nan")  # a boundary pixel
    assert torch.isnan(lcr(y.to(device), labels.to(device), neighbors=neighbors, backend=backend))


@pytest.mark.parametrize("kind", ["l1", "kl"])
def test_reference_double_backward(kind, gen):
    x = random_logits((1, 2, 3, 4), dtype=torch.float64, generator=gen, scale=1.0).requires_grad_(True)
    y = blocky_labels(1, 3, 4, classes=2, seed=3, ignore_frac=0.0)
    assert torch.autograd.gradgradcheck(lambda t: lcr(t, y, kind=kind, backend="reference"), (x,))


@pytest.mark.parametrize("backend,device", backend_params())
def test_compiled_double_backward_raises_naming_the_op(backend, device, gen):
    if backend == "triton":
        pytest.skip("the Triton backend's double backward is the Triton engineer's")
    x = random_logits((1, 3, 6, 7), generator=gen).to(device).requires_grad_(True)
    y = blocky_labels(1, 6, 7).to(device)
    (g,) = torch.autograd.grad(lcr(x, y, backend=backend), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"ripu::local_consistency_loss: double backward .* not implemented"):
        (g * g).sum().backward()
