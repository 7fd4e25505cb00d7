"""Deliberately slow, loop-by-loop oracles of docs/ops.md, to keep the vectorised reference honest.

Everything is plain Python floats (double precision) over a handful of pixels or tiny maps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resized(logits: torch.Tensor, size=None, align_corners=True) -> torch.Tensor:
    """The logits the maths of docs/ops.md runs on: computed in float32 (float64 for float64), resized if asked."""
    x = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
    if size is not None:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    return x


def pixel(x: torch.Tensor, b: int, i: int, j: int) -> tuple[float, int | None]:
    """(normalised entropy, argmax label) of one pixel; (nan, None) for a non-finite logit."""
    v = [float(t) for t in x[b, :, i, j]]
    if not all(math.isfinite(t) for t in v):
        return float("nan"), None
    c = len(v)
    label = max(range(c), key=lambda q: (v[q], -q))  # first maximal class
    if c == 1:
        return 0.0, label
    m = max(v)
    z = sum(math.exp(t - m) for t in v)
    ent = 0.0
    for t in v:
        p = math.exp(t - m) / z
        if p > 0:
            ent -= p * math.log(p)
    return ent / math.log(c), label


def window(h: int, w: int, i: int, j: int, k: int):
    for a in range(max(i - k, 0), min(i + k + 1, h)):
        for b in range(max(j - k, 0), min(j + k + 1, w)):
            yield a, b


def region(x: torch.Tensor, b: int, i: int, j: int, k: int) -> tuple[float, float]:
    """(impurity, uncertainty) of the clipped (2k+1)^2 window around (i, j)."""
    _, c, h, w = x.shape
    counts = [0] * c
    total, n = 0.0, 0
    for a, bb in window(h, w, i, j, k):
        e, y = pixel(x, b, a, bb)
        if y is None:
            return float("nan"), float("nan")
        counts[y] += 1
        total += e
        n += 1
    imp = 0.0
    if c > 1:
        for cnt in counts:
            if cnt:
                imp -= cnt / n * math.log(cnt / n)
        imp /= math.log(c)
    return imp, total / n


def naive_select(score: torch.Tensor, n, radius: int, mask_radius: int, active=None):
    """The greedy loop of docs/ops.md, a full scan of the map per pick."""
    bsz, h, w = score.shape
    ns = [int(v) for v in n] if isinstance(n, (list, torch.Tensor)) else [int(n)] * bsz
    n_max = max(ns, default=0) if isinstance(n, (list, torch.Tensor)) else int(n)
    centers = torch.full((bsz, n_max, 2), -1, dtype=torch.int64)
    counts = torch.zeros(bsz, dtype=torch.int64)
    act = active.clone() if active is not None else torch.zeros((bsz, h, w), dtype=torch.bool)
    sel = torch.zeros((bsz, h, w), dtype=torch.bool)
    for b in range(bsz):
        vals = [float(t) for t in score[b].reshape(-1)]
        for t in range(ns[b]):
            best = None
            for f, v in enumerate(vals):
                i, j = divmod(f, w)
                if act[b, i, j] or math.isnan(v) or v == float("-inf"):
                    continue
                if best is None or v > vals[best]:
                    best = f
            if best is None:
                break
            i, j = divmod(best, w)
            centers[b, t] = torch.tensor([i, j])
            counts[b] += 1
            act[b, max(i - mask_radius, 0):i + mask_radius + 1, max(j - mask_radius, 0):j + mask_radius + 1] = True
            sel[b, max(i - radius, 0):i + radius + 1, max(j - radius, 0):j + radius + 1] = True
    # centers is as wide as the picks one image can hold (docs/ops.md): the loop never needs more columns.
    bound = -(-h // (mask_radius + 1)) * -(-w // (mask_radius + 1))
    assert (centers[:, bound:] == -1).all(), "the greedy loop picked more centres than the packing bound allows"
    return centers[:, :bound], counts, act, sel


def lcr_loss(logits: torch.Tensor, labels: torch.Tensor, kind="l1", neighbors=8, ignore_index=255) -> float:
    """LCR by loops over every pixel of a tiny batch."""
    x = logits.to(torch.float64)
    bsz, c, h, w = x.shape
    p = torch.softmax(x, dim=1)
    offs = ([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)] if neighbors == 8
            else [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)])
    total, count = 0.0, 0
    for b in range(bsz):
        for i in range(h):
            for j in range(w):
                lab = int(labels[b, i, j])
                lap = 0
                for di, dj in offs:
                    if (di, dj) == (0, 0):
                        continue
                    ii, jj = i + di, j + dj
                    other = int(labels[b, ii, jj]) if 0 <= ii < h and 0 <= jj < w else 0
                    lap -= other
                lap += (len(offs) - 1) * lab
                if lap == 0 or lab == ignore_index:
                    continue
                d = 0.0
                for q in range(c):
                    mean = sum(float(p[b, q, min(max(i + di, 0), h - 1), min(max(j + dj, 0), w - 1)])
                               for di, dj in offs) / len(offs)
                    pq = float(p[b, q, i, j])
                    d += abs(pq - mean) if kind == "l1" else pq * math.log(pq / (mean + 1e-6) + 1e-6)
                total += d
                count += 1
    return total / count if count else 0.0


def nl_loss(logits: torch.Tensor, threshold: float) -> float:
    p = torch.softmax(logits.to(torch.float64), dim=1).reshape(-1).tolist()
    picked = [v for v in p if v < threshold]
    return sum(-math.log(1 - v + 1e-6) for v in picked) / len(picked) if picked else 0.0
