"""Shared fixtures: the non-reference backends that can run here, input layouts, seeded generators."""
from __future__ import annotations

import pytest
import torch

from ripu_kernels import _dispatch


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Compiled backends tested against the reference on each device (Triton on CPU only under the interpreter, on
# small shapes: see tests/ops/test_triton_backend.py).
PARITY = [(backend, device) for device in DEVICES for backend in ("cpu", "cuda") if backend == device]
PARITY += [("triton", "cuda")] if torch.cuda.is_available() else []


def backend_params():
    """pytest params over (backend, device) pairs; unavailable ones are skipped with the dispatcher's reason."""
    params = []
    for backend, device in PARITY:
        why = _dispatch.unavailable_reason(backend, torch.device(device))
        marks = [pytest.mark.skip(reason=f"{backend} on {device}: {why}")] if why else []
        if device == "cuda":
            marks.append(pytest.mark.gpu)  # `pytest -m gpu` (make gpu-check) selects every test on a CUDA tensor
        params.append(pytest.param(backend, device, id=f"{backend}-{device}", marks=marks))
    return params


def layout(x: torch.Tensor, name: str) -> torch.Tensor:
    """The same values in another memory layout: contiguous, channels_last, or a strided (non-dense) view."""
    if name == "contiguous":
        return x.contiguous()
    if name == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if name == "strided":
        b, c, h, w = x.shape
        big = torch.empty((b, c, h, 2 * w), dtype=x.dtype, device=x.device)
        big[..., ::2] = x
        return big[..., ::2]
    raise ValueError(name)


LAYOUTS = ["contiguous", "channels_last", "strided"]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def random_logits(shape, dtype=torch.float32, generator=None, scale=3.0, classes_tied=False):
    """Logits with a spread of confident and uncertain pixels; ``classes_tied`` makes exact argmax ties."""
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
    if classes_tied and shape[1] > 1:
        x[:, 1] = x[:, 0]  # classes 0 and 1 tie everywhere: argmax must pick 0
    return x.to(dtype)
