"""Acquisition budgets: how many picks each image gets per round, and what a pick reveals and suppresses.

RA (regions): ``ceil(H*W*ratio_per_round / (2k+1)^2)`` windows per image and round, ``ratio_per_round =
active.ratio / rounds``; each reveals its ``(2k+1)^2`` window and suppresses the ``(4k+1)^2`` window around it.
PA (pixels): ``ceil(pixels_per_round * H*W / (1280*640))`` single pixels per image and round (the paper counts
pixels per 1280x640 image); each suppresses the ``(2k+1)^2`` window around it. Float round-off below 1e-9
(relative) is ignored in the ``ceil``, so 60x120 at 1% over one round is 8 regions, not 9.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

PAPER_PIXELS = 1280 * 640  # the paper counts PA pixel budgets per 1280x640 image


def ceil_budget(x: float) -> int:
    """``ceil`` that ignores float round-off (``7200 * 0.01 / 9`` is 8, not 9)."""
    return int(math.ceil(x - 1e-9 * max(1.0, abs(x))))


def ra_regions_per_round(height: int, width: int, ratio: float, rounds: int, k: int) -> int:
    """RA regions per image per round: ``ceil(H*W*ratio_per_round / (2k+1)^2)``, ``ratio_per_round = ratio/rounds``."""
    if rounds < 1:
        raise ValueError(f"active: the number of rounds must be >= 1, got {rounds}")
    return ceil_budget(height * width * (ratio / rounds) / (2 * k + 1) ** 2)


def pa_pixels_per_round(height: int, width: int, pixels: float, rounds: int) -> int:
    """PA pixels per image per round: ``ceil(pixels_per_round * H*W / (1280*640))``, ``= pixels/rounds``."""
    if rounds < 1:
        raise ValueError(f"active: the number of rounds must be >= 1, got {rounds}")
    return ceil_budget((pixels / rounds) * height * width / PAPER_PIXELS)


@dataclass(frozen=True)
class Budget:
    """How one round picks: ``picks(H, W)`` per image, revealing ``(2*radius+1)^2`` windows, suppressing
    ``(2*mask_radius+1)^2``."""

    mode: str
    k: int
    rounds: int
    ratio: float = 0.0
    pixels: float = 0.0

    def __post_init__(self):
        if self.mode not in ("ra", "pa"):
            raise ValueError(f"active.mode must be 'ra' or 'pa' for a budget, got {self.mode!r}")
        if self.k < 0:
            raise ValueError(f"active.k must be >= 0, got {self.k}")
        if self.rounds < 1:
            raise ValueError(f"active: the number of rounds must be >= 1, got {self.rounds}")

    @classmethod
    def from_config(cls, cfg) -> "Budget":
        """The budget of a :class:`ripu_kernels.driver.config.Config` (one round per ``active.rounds_at`` entry)."""
        return cls(mode=cfg.active.mode, k=cfg.window_k, rounds=max(1, len(cfg.active.rounds_at)),
                   ratio=cfg.active.ratio, pixels=cfg.active.pixels)

    @property
    def radius(self) -> int:
        return self.k if self.mode == "ra" else 0

    @property
    def mask_radius(self) -> int:
        return 2 * self.k if self.mode == "ra" else self.k

    def picks(self, height: int, width: int) -> int:
        if self.mode == "ra":
            return ra_regions_per_round(height, width, self.ratio, self.rounds, self.k)
        return pa_pixels_per_round(height, width, self.pixels, self.rounds)

    def max_pixels(self, height: int, width: int) -> int:
        return self.picks(height, width) * (2 * self.radius + 1) ** 2
