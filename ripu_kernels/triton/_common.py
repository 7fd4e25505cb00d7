"""Helpers shared by the Triton kernel modules (imports triton)."""
from __future__ import annotations

import contextlib
import os

import torch
import triton
from torch._subclasses.fake_tensor import is_fake
from torch._subclasses.functional_tensor import FunctionalTensor
from torch.library import wrap_triton

from ..types import compute_dtype  # noqa: F401  (re-exported to the kernel modules)

# Read once: Triton itself decides at import time whether @triton.jit builds interpreted functions.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def tile_shape(c_pad: int, budget: int) -> tuple[int, int]:
    """(BLOCK_P, num_warps) of a [BLOCK_P, C_PAD] per-pixel tile of about ``budget`` elements.

    Budgets are chosen so that no kernel spills registers on sm_90 (checked with ptxas: 2048 elements for the
    one-pixel-at-a-time kernels, 1024 for the LCR kernels that hold a neighbourhood).
    """
    block_p = max(1, min(512, budget // c_pad))
    return block_p, (8 if block_p * c_pad >= 1024 else 4)


def device_guard(tensors):
    """``torch.cuda.device`` of the first CUDA tensor (Triton launches on the current device, which on a multi-GPU
    machine need not be the tensors' one), else a no-op context."""
    for t in tensors:
        if t.device.type == "cuda":
            return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def launch(kernel, grid, *args, **meta) -> None:
    """``wrap_triton(kernel)[grid](*args, **meta)`` on the tensors' device, so that ``torch.compile`` traces into
    the kernel.

    Under the interpreter a kernel cannot run on fake tensors (they have no data), and ``wrap_triton``
    hands back the plain interpreted function; then the launch is skipped: a ``triton_op`` body is also its
    own fake implementation, and for that only the shapes of the outputs it allocates matter. While being traced
    (fake or functional tensors) no device guard is entered: the compiled graph launches on the right device.
    """
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    tracing = any(is_fake(a) or isinstance(a, FunctionalTensor) for a in tensors)
    if INTERPRET:
        if any(isinstance(a, FunctionalTensor) for a in tensors):
            raise RuntimeError(
                f"ripu_triton: {getattr(kernel, '__name__', 'kernel')}: torch.compile/AOT tracing of the Triton "
                "ops needs CUDA tensors; under TRITON_INTERPRET=1 they run eagerly only"
            )
        if tracing:
            return
    with contextlib.nullcontext() if tracing else device_guard(tensors):
        wrap_triton(kernel)[grid](*args, **meta)
