"""Acquisition strategies: one score map per image through the public fused ops of ``ripu_kernels``.

A strategy turns a batch of logits into a ``(B, H, W)`` score map at label resolution; every strategy is then
picked by the same exact greedy ``rk.select_regions`` under the same budget, suppression and ledger (see
``budget`` and ``acquire``). Its *geometry* says what one pick reveals:

``regions``   the ``(2k+1)^2`` window around the pick; the ``(4k+1)^2`` window is suppressed (RA)
``pixels``    the pick's own pixel; the ``(2k+1)^2`` window is suppressed (PA)

| name | geometry | score |
| --- | --- | --- |
| ``ra`` | regions | region impurity x region mean entropy (the paper's RA) |
| ``pa`` | pixels | region impurity x the pixel's entropy (the paper's PA) |
| ``impurity`` | regions | region impurity alone |
| ``uncertainty`` | regions | region mean entropy alone |
| ``entropy`` | pixels | the pixel's entropy alone |
| ``random`` | regions | uniform random numbers, seeded by (run seed, round, image id) |

Adding a strategy is one function registered with :func:`strategy`::

    import torch.nn.functional as F
    from ripu_kernels.driver.active.scoring import strategy

    @strategy("margin", geometry="pixels")
    def margin(logits, ctx):
        top2 = F.interpolate(logits, ctx.size, mode="bilinear", align_corners=ctx.align_corners).topk(2, 1).values
        return -(top2[:, 0] - top2[:, 1])          # (B, H, W), higher = picked first

after which ``active.strategy=margin`` works everywhere (training, ``ripu select``, ``ripu ablate``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import torch

import ripu_kernels as rk

from ..errors import AcquisitionError

GEOMETRIES = ("regions", "pixels")


@dataclass(frozen=True)
class ScoreContext:
    """What a strategy may use besides the logits: label size, window radius, the images and the round."""

    size: tuple[int, int]            # (H, W) of the labels: scores are computed at this resolution
    k: int                           # window radius of the budget (active.k)
    align_corners: bool = True
    ids: tuple[str, ...] = ()        # the images of the batch
    round: int = 0
    seed: int = 0                    # the run's seed (``random``)


@dataclass(frozen=True)
class Strategy:
    name: str
    score: Callable[[torch.Tensor | None, ScoreContext], torch.Tensor]
    geometry: str                    # "regions" | "pixels"
    uses_model: bool = True          # False: ``score`` gets ``logits=None`` and the model is not run
    doc: str = ""


STRATEGIES: dict[str, Strategy] = {}


def strategy(name: str, geometry: str = "regions", uses_model: bool = True):
    """Register ``fn(logits (B, C, h, w) or None, ctx) -> score (B, H, W)`` as strategy ``name``."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"strategy {name!r}: geometry must be one of {GEOMETRIES}, got {geometry!r}")

    def register(fn):
        STRATEGIES[name] = Strategy(name, fn, geometry, uses_model, (fn.__doc__ or "").strip())
        return fn

    return register


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"active.strategy must be one of {', '.join(sorted(STRATEGIES))}, got {name!r}") from None


def _regions(logits, ctx: ScoreContext) -> rk.Scores:
    return rk.region_scores(logits, k=ctx.k, size=ctx.size, align_corners=ctx.align_corners)


@strategy("ra", "regions")
def ra(logits, ctx):
    """Region impurity x region mean entropy over the (2k+1)^2 window (RIPU's RA)."""
    return _regions(logits, ctx).score


@strategy("pa", "pixels")
def pa(logits, ctx):
    """Region impurity over the (2k+1)^2 window x the pixel's own entropy (RIPU's PA)."""
    return rk.pixel_scores(logits, k=ctx.k, size=ctx.size, align_corners=ctx.align_corners).score


@strategy("impurity", "regions")
def impurity(logits, ctx):
    """Region impurity alone (the entropy of the predicted classes in the window)."""
    return _regions(logits, ctx).impurity


@strategy("uncertainty", "regions")
def uncertainty(logits, ctx):
    """Region mean entropy alone (the average prediction entropy in the window)."""
    return _regions(logits, ctx).uncertainty


@strategy("entropy", "pixels")
def entropy(logits, ctx):
    """The pixel's own prediction entropy (single-pixel picks)."""
    # pixel_scores with a 1x1 impurity window: its ``uncertainty`` is the pixel entropy at label size (fused resize)
    return rk.pixel_scores(logits, k=0, size=ctx.size, align_corners=ctx.align_corners).uncertainty


def image_seed(seed: int, round_idx: int, image_id: str) -> int:
    """A 63-bit seed for one image and round, the same on every machine, shard and batch layout."""
    digest = hashlib.blake2b(f"{int(seed)}/{int(round_idx)}/{image_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@strategy("random", "regions", uses_model=False)
def random(logits, ctx):
    """Uniform random scores: random windows, with the same suppression and budget as the others."""
    h, w = ctx.size
    maps = [torch.rand((h, w), generator=torch.Generator().manual_seed(image_seed(ctx.seed, ctx.round, i)))
            for i in ctx.ids]
    return torch.stack(maps) if maps else torch.zeros((0, h, w))


def check_finite(logits: torch.Tensor, image_ids: list[str]) -> None:
    """Raise :class:`AcquisitionError` naming the first image whose logits are not all finite."""
    bad = ~torch.isfinite(logits.detach()).flatten(1).all(dim=1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        n = int((~torch.isfinite(logits[i])).sum())
        raise AcquisitionError(f"acquisition: the model produced {n} non-finite logits (NaN/inf) for image "
                               f"{image_ids[i]!r}; refusing to select regions from them")


def score_maps(logits: torch.Tensor | None, budget, size: tuple[int, int], align_corners: bool = True,
               ids=(), round_idx: int = 0) -> torch.Tensor:
    """The score map ``(B, H, W)`` of ``budget.strategy`` at label resolution ``size`` (float32)."""
    strat = get_strategy(budget.strategy)
    ctx = ScoreContext(size=tuple(size), k=budget.k, align_corners=align_corners, ids=tuple(ids), round=round_idx,
                       seed=budget.seed)
    score = strat.score(logits if strat.uses_model else None, ctx)
    if score.shape[-2:] != tuple(size):
        raise AcquisitionError(f"strategy {strat.name!r}: returned scores of shape {tuple(score.shape)}, "
                               f"expected (B, {size[0]}, {size[1]})")
    return score
