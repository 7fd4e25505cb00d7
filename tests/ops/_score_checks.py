"""Checks shared by the score-op tests: reference against the loop oracle, and backends against the reference."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import ripu_kernels as rk
from ripu_kernels.reference import _impl

from . import _oracle
from ._tol import assert_close_verbose, tol

OPS = {"region_scores": rk.region_scores, "pixel_scores": rk.pixel_scores}


def check_against_oracle(op: str, logits, k, size=None, align_corners=True, pixels=None):
    """Reference ``op`` equals the loop oracle at ``pixels`` (default: corners, edges and a few inside)."""
    out = OPS[op](logits, k=k, size=size, align_corners=align_corners, backend="reference")
    x = _oracle.resized(logits, size, align_corners)
    b_, _, h, w = x.shape
    if pixels is None:
        pixels = {(b, i, j) for b in range(b_) for i in {0, h // 2, h - 1} for j in {0, w // 3, w - 1}}
    t = tol(out.score.dtype)
    for b, i, j in sorted(pixels):
        imp, unc = _oracle.region(x, b, i, j, k)
        if op == "pixel_scores":
            unc = _oracle.pixel(x, b, i, j)[0]
            if math.isnan(unc):
                imp = float("nan")
        expected = torch.tensor([imp, unc, imp * unc], dtype=torch.float64)
        got = torch.stack([out.impurity[b, i, j], out.uncertainty[b, i, j], out.score[b, i, j]]).double()
        assert_close_verbose(got, expected, name=f"{op} at {(b, i, j)} [impurity, uncertainty, score]", **t)
    return out


def near_tie_windows(logits, k, size, align_corners, gap=1e-4) -> torch.Tensor:
    """Pixels whose window holds a pixel with top-2 logits within ``gap``: argmax may differ across backends."""
    x = _oracle.resized(logits, size, align_corners)
    if x.shape[1] < 2:
        return torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.bool)
    top = x.topk(2, dim=1).values
    tie = ((top[:, 0] - top[:, 1]).abs() <= gap).to(torch.float32)[:, None]
    return (F.max_pool2d(tie, 2 * k + 1, stride=1, padding=k)[:, 0] > 0).cpu()


def check_parity(op: str, backend: str, logits, k, size=None, align_corners=True):
    """``backend`` equals the reference on the same input, to the tolerance of docs/ops.md; NaN patterns exactly."""
    ref = OPS[op](logits, k=k, size=size, align_corners=align_corners, backend="reference")
    got = OPS[op](logits, k=k, size=size, align_corners=align_corners, backend=backend)
    expected_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    skip = near_tie_windows(logits, k, size, align_corners) if size is not None else None
    for name in ("score", "impurity", "uncertainty"):
        a, e = getattr(got, name), getattr(ref, name)
        assert a.dtype == expected_dtype, f"{op}.{name}: dtype {a.dtype}, expected {expected_dtype}"
        assert a.device == logits.device, f"{op}.{name}: on {a.device}, logits on {logits.device}"
        a, e = a.cpu(), e.cpu()
        if skip is not None and name != "uncertainty":
            a, e = a.masked_fill(skip, 0), e.masked_fill(skip, 0)
        assert_close_verbose(a, e, name=f"{backend} {op}.{name}", **tol(logits.dtype))


def with_nonfinite(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[0, 0, 1, 2] = float("nan")
    x[0, -1, -1, -1] = float("inf")
    if x.shape[0] > 1:
        x[1, 0, 0, 0] = float("-inf")
    return x


__all__ = ["OPS", "check_against_oracle", "check_parity", "near_tie_windows", "with_nonfinite", "_impl"]
