"""Tolerances in one table, and a verbose allclose that says where and how a comparison failed."""
from __future__ import annotations

import torch

# docs/ops.md: float32 atol 1e-5, rtol 1e-4; float64 tighter. Half inputs are computed in float32, so their
# outputs (float32) are held to the float32 rule against the reference run on the same half input.
TOL = {
    torch.float64: dict(atol=1e-10, rtol=1e-8),
    torch.float32: dict(atol=1e-5, rtol=1e-4),
    torch.float16: dict(atol=1e-5, rtol=1e-4),
    torch.bfloat16: dict(atol=1e-5, rtol=1e-4),
}

# Gradients pass through a softmax Jacobian and a mean over many pixels: a little looser.
GRAD_TOL = {
    torch.float64: dict(atol=1e-9, rtol=1e-7),
    torch.float32: dict(atol=1e-5, rtol=1e-3),
    torch.float16: dict(atol=2e-3, rtol=2e-2),
    torch.bfloat16: dict(atol=2e-2, rtol=5e-2),
}


def tol(dtype: torch.dtype, grad: bool = False) -> dict:
    return (GRAD_TOL if grad else TOL)[dtype]


def assert_close_verbose(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float,
                         name: str = "tensor", max_report: int = 8) -> None:
    """Like torch.testing.assert_close, with NaN patterns compared exactly and failures listed by index."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    a, e = actual.detach().cpu().to(torch.float64), expected.detach().cpu().to(torch.float64)
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    if not torch.equal(nan_a, nan_e):
        diff = (nan_a != nan_e).nonzero()[:max_report].tolist()
        raise AssertionError(f"{name}: NaN patterns differ at {int((nan_a != nan_e).sum())} places, first at "
                             f"{diff} (actual NaN: {int(nan_a.sum())}, expected NaN: {int(nan_e.sum())})")
    ok = nan_a | (a == e) | ((a - e).abs() <= atol + rtol * e.abs())
    if not bool(ok.all()):
        bad = (~ok).nonzero()
        lines = [f"  at {tuple(i)}: actual {a[tuple(i)].item():.10g} expected {e[tuple(i)].item():.10g}"
                 for i in bad[:max_report].tolist()]
        worst = ((a - e).abs().masked_fill(ok, 0)).max().item()
        raise AssertionError(f"{name}: {bad.shape[0]} of {a.numel()} elements differ (atol={atol}, rtol={rtol}, "
                             f"max abs diff {worst:.3g}):\n" + "\n".join(lines))
