"""Settings every test needs before anything imports triton."""
from __future__ import annotations

import os

import torch

# The Triton backend runs its kernels on CPU tensors only through the interpreter; it must be switched on before
# triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
