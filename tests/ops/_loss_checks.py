"""Forward and backward parity of a loss between a backend and the reference (autograd through plain PyTorch)."""
from __future__ import annotations

import torch

from ._tol import assert_close_verbose, tol


def check_loss_parity(fn, backend: str, logits: torch.Tensor, *args, **kwargs):
    x_ref = logits.detach().clone().requires_grad_(True)
    x_got = logits.detach().clone().requires_grad_(True)
    ref = fn(x_ref, *args, backend="reference", **kwargs)
    got = fn(x_got, *args, backend=backend, **kwargs)
    expected_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    assert got.shape == () and got.dtype == expected_dtype, f"{backend}: loss {got.shape} {got.dtype}"
    assert_close_verbose(got.detach().cpu(), ref.detach().cpu(), name=f"{backend} loss", **tol(logits.dtype))
    g = torch.randn((), dtype=ref.dtype, generator=torch.Generator().manual_seed(7)).to(logits.device)
    (ref * g).backward()
    (got * g).backward()
    assert x_got.grad is not None, f"{backend}: no gradient reached the logits"
    assert x_got.grad.dtype == logits.dtype and x_got.grad.shape == logits.shape
    assert_close_verbose(x_got.grad.cpu(), x_ref.grad.cpu(), name=f"{backend} d loss / d logits",
                         **tol(logits.dtype, grad=True))
