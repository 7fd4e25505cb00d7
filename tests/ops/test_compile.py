"""``torch.compile(fullgraph=True)`` around the public ops from the first call of a fresh process, on every backend
that runs here (the Triton backend's compile test needs a GPU: tests/ops/test_gpu_real_sizes.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ripu_kernels import _dispatch

_STEP = """
import torch, ripu_kernels as rk
backend = {backend!r}

def step(logits, labels, n):
    scores = rk.region_scores(logits.detach(), k=1, backend=backend)
    pix = rk.pixel_scores(logits.detach(), k=2, size=(9, 11), backend=backend)
    ent = rk.pixel_entropy(logits.detach(), backend=backend)
    sel = rk.select_regions(scores.score, n, radius=1, n_max=3, backend=backend)   # a (B,) tensor n with n_max
    sel2 = rk.select_regions(pix.score, 2, radius=0, mask_radius=1, backend=backend)
    loss = (rk.local_consistency_loss(logits, labels, kind="kl", backend=backend)
            + rk.negative_learning_loss(logits, threshold=0.1, backend=backend))
    return scores.score, pix.score, ent, sel.centers, sel.selected, sel2.centers, loss

g = torch.Generator().manual_seed(0)
x = torch.randn(2, 4, 6, 7, generator=g, dtype=torch.float64).float().requires_grad_()
labels = torch.randint(0, 3, (2, 6, 7), generator=g)
n = torch.tensor([3, 1])
compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
got = compiled(x, labels, n)                 # the first call of the process is the compiled one
got[-1].backward()
grad, x.grad = x.grad.clone(), None
ref = step(x, labels, n)
ref[-1].backward()
for a, b in zip(got[:-1], ref[:-1]):  # (aot_eager decomposes F.interpolate: the size= path may differ by an ulp)
    if a.is_floating_point():
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    else:
        assert torch.equal(a, b)
torch.testing.assert_close(got[-1], ref[-1])
torch.testing.assert_close(grad, x.grad)
print("compiled and eager agree:", backend, rk._dispatch.resolve("region_scores", backend, x.device))
"""


def _backends():
    # "auto" resolves to one of these on CPU tensors, through the same (pre-imported) dispatch
    return ["reference"] + (["cpu"] if _dispatch.unavailable_reason("cpu", torch.device("cpu")) is None else [])


@pytest.mark.parametrize("backend", _backends())
def test_fullgraph_from_the_first_call_of_a_fresh_process(backend):
    res = subprocess.run([sys.executable, "-c", _STEP.format(backend=backend)], capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-4000:]
    assert "compiled and eager agree" in res.stdout


def test_tensor_n_without_n_max_under_compile_says_what_to_pass():
    import ripu_kernels as rk

    def pick(score, n):
        return rk.select_regions(score, n, radius=1, backend="reference").centers

    with pytest.raises(Exception, match=r"ripu::select_regions: with a tensor n, pass n_max="):
        torch.compile(pick, fullgraph=True, backend="eager")(torch.rand(2, 5, 6), torch.tensor([2, 1]))
