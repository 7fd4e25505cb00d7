"""The RIPU authors'-style computation: the baseline the speedups of ``ripu_kernels`` are claimed against.

Written after the published code's structure (BIT-DA/RIPU: ``core/active/floating_region.py``,
``spatial_purity.py``, ``build.py``, ``core/loss/``) and made as fast as that structure allows, not slower:
same device as the input, float32, ``torch.no_grad`` for the acquisition, the all-ones convolution weights built
once (as the authors' ``nn.Module`` builds them in ``__init__``) and reused.

- Region scores (RA): softmax, pixel entropy ``sum(-p log(p + 1e-6)) / log C``, a float one-hot of the argmax;
  both convolved with an all-ones ``(2k+1)^2`` kernel, zero padded (``groups=C`` for the one-hot); impurity from
  the normalised class counts, uncertainty the entropy sum over the window count. One image at a time, as the
  authors loop over the batch.
- Pixel scores (PA): the one-hot box counts likewise; ``purity = sum(-dist log(dist + 1e-6))`` (not normalised,
  as in ``SpatialPurity``) times the pixel entropy (not normalised either, as in ``PixelSelection``).
- Selection: per image, ``score[active] = -inf``, then per pick two full-map ``torch.max`` reductions with
  ``.item()`` reads (the first maximal column, then its first maximal row), the ``(2m+1)^2`` window set to
  ``-inf`` and marked active, the ``(2r+1)^2`` window marked selected. Like the authors' loop it takes exactly
  ``n`` picks (no early stop). The label copy and the PIL/``torch.save`` writes of the original are left out.
- Losses: LCR with a depthwise 3x3 (or cross) mean convolution on replicate-padded softmax and a Laplacian
  convolution of the label map for the boundary, ``loss = d[mask].mean()``; NL on the softmax probabilities.

Constant factors differ from the SPEC (``log C`` normalisation, ``1e-6`` inside the logarithms); the rankings are
the same. ``tests/bench/test_bench_smoke.py`` checks these functions against the reference.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=32)
def _ones(channels: int, k: int, device: str) -> torch.Tensor:
    """The all-ones depthwise kernel (channels, 1, 2k+1, 2k+1), built once per configuration."""
    size = 2 * k + 1
    return torch.ones((channels, 1, size, size), dtype=torch.float32, device=device)


@lru_cache(maxsize=8)
def _mean_kernel(channels: int, neighbors: int, device: str) -> torch.Tensor:
    if neighbors == 8:
        a = torch.ones((3, 3)) / 9
    else:
        a = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]) / 5
    return a.reshape(1, 1, 3, 3).repeat(channels, 1, 1, 1).to(device)


@lru_cache(maxsize=8)
def _laplacian(neighbors: int, device: str) -> torch.Tensor:
    if neighbors == 8:
        a = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])
    else:
        a = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
    return a.reshape(1, 1, 3, 3).to(device)


def _dev(t: torch.Tensor) -> str:
    return str(t.device)


# ----------------------------------------------------------------------------------------------- scores
@torch.no_grad()
def pixel_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``sum(-p log(p + 1e-6)) / log C`` per pixel, (B, H, W)."""
    c = logits.shape[1]
    p = torch.softmax(logits.float(), dim=1)
    return torch.sum(-p * torch.log(p + 1e-6), dim=1) / math.log(c)


@torch.no_grad()
def _floating_region_score(logit: torch.Tensor, k: int):
    """One image (1, C, H, W) -> (score, impurity, uncertainty), each (H, W): the authors' RA module."""
    c = logit.shape[1]
    logit = logit.squeeze(0)
    p = torch.softmax(logit, dim=0)
    entropy = (torch.sum(-p * torch.log(p + 1e-6), dim=0) / math.log(c))[None, None]
    region_entropy = F.conv2d(entropy, _ones(1, k, _dev(logit)), padding=k)
    predict = torch.argmax(p, dim=0)
    one_hot = F.one_hot(predict, num_classes=c).float().permute((2, 0, 1)).unsqueeze(0)
    summary = F.conv2d(one_hot, _ones(c, k, _dev(logit)), padding=k, groups=c)
    count = torch.sum(summary, dim=1, keepdim=True)
    dist = summary / count
    impurity = torch.sum(-dist * torch.log(dist + 1e-6), dim=1, keepdim=True) / math.log(c)
    uncertainty = region_entropy / count
    score = impurity * uncertainty
    return score[0, 0], impurity[0, 0], uncertainty[0, 0]


@torch.no_grad()
def region_scores(logits: torch.Tensor, k: int = 1):
    """RA scores of a batch, image by image as the authors' selection loop calls its module: (score, P, U)."""
    outs = [_floating_region_score(logits[i:i + 1].float(), k) for i in range(logits.shape[0])]
    return tuple(torch.stack(parts) for parts in zip(*outs))


@torch.no_grad()
def _pixel_score(logit: torch.Tensor, k: int):
    c = logit.shape[1]
    output = logit.squeeze(0)
    p = torch.softmax(output, dim=0)
    entropy = torch.sum(-p * torch.log(p + 1e-6), dim=0)
    pseudo_label = torch.argmax(p, dim=0)
    one_hot = F.one_hot(pseudo_label, num_classes=c).float().permute((2, 0, 1)).unsqueeze(0)
    summary = F.conv2d(one_hot, _ones(c, k, _dev(logit)), padding=k, groups=c)
    count = torch.sum(summary, dim=1, keepdim=True)
    dist = summary / count
    purity = torch.sum(-dist * torch.log(dist + 1e-6), dim=1, keepdim=True)[0, 0]
    return entropy * purity, purity, entropy


@torch.no_grad()
def pixel_scores(logits: torch.Tensor, k: int = 32):
    """PA scores of a batch, image by image: (score, purity, entropy), neither factor normalised by log C."""
    outs = [_pixel_score(logits[i:i + 1].float(), k) for i in range(logits.shape[0])]
    return tuple(torch.stack(parts) for parts in zip(*outs))


# -------------------------------------------------------------------------------------------- selection
@torch.no_grad()
def select_regions(score: torch.Tensor, n: int, radius: int = 1, mask_radius: int | None = None,
                   active: torch.Tensor | None = None):
    """The authors' greedy loop, image by image: (centers (B, n, 2), active, selected).

    ``score`` is not modified (the loop works on a copy, as the authors' module hands it a fresh map).
    """
    m = 2 * radius if mask_radius is None else mask_radius
    r = radius
    b, h, w = score.shape
    all_centers, all_active, all_selected = [], [], []
    for img in range(b):
        s = score[img].clone()
        act = active[img].clone() if active is not None else torch.zeros((h, w), dtype=torch.bool,
                                                                          device=score.device)
        sel = torch.zeros((h, w), dtype=torch.bool, device=score.device)
        s[act] = -float("inf")
        centers = []
        for _ in range(n):
            values, indices_h = torch.max(s, dim=0)
            _, indices_w = torch.max(values, dim=0)
            x = indices_w.item()
            y = indices_h[x].item()
            s[max(y - m, 0):y + m + 1, max(x - m, 0):x + m + 1] = -float("inf")
            act[max(y - m, 0):y + m + 1, max(x - m, 0):x + m + 1] = True
            sel[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1] = True
            centers.append((y, x))
        all_centers.append(torch.tensor(centers, dtype=torch.int64).reshape(-1, 2))
        all_active.append(act)
        all_selected.append(sel)
    return torch.stack(all_centers), torch.stack(all_active), torch.stack(all_selected)


# ----------------------------------------------------------------------------------------------- losses
def local_consistency_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "l1", neighbors: int = 8,
                           ignore_index: int = 255) -> torch.Tensor:
    """The authors' ``LocalConsistentLoss``: differentiable scalar (NaN when no boundary pixel, as theirs)."""
    c = logits.shape[1]
    p = torch.softmax(logits, dim=1)
    mean = F.conv2d(F.pad(p, (1, 1, 1, 1), mode="replicate"), _mean_kernel(c, neighbors, _dev(logits)), groups=c)
    if kind == "l1":
        d = torch.abs(p - mean).sum(dim=1)
    elif kind == "kl":
        d = torch.sum(p * torch.log(p / (mean + 1e-6) + 1e-6), dim=1)
    else:
        raise ValueError(f"authors.local_consistency_loss: kind must be 'l1' or 'kl', got {kind!r}")
    with torch.no_grad():
        lap = F.conv2d(labels.float().unsqueeze(1), _laplacian(neighbors, _dev(logits)), padding=1)
        mask = (lap.long().squeeze(1) != 0) & (labels != ignore_index)
    return d[mask].mean()


def negative_learning_loss(logits: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """The authors' ``NegativeLearningLoss`` applied to ``softmax(logits)`` as their training loop does."""
    predict = torch.softmax(logits, dim=1)
    mask = (predict < threshold).detach()
    return torch.sum(-1 * mask * torch.log(1 - predict + 1e-6)) / torch.sum(mask)
