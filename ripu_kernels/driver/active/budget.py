"""Acquisition budgets: what a round may take, in which unit, and what a pick reveals and suppresses.

The strategy (``active.strategy``, see ``scoring``) decides the pick geometry: a *region* pick reveals its
``(2k+1)^2`` window and suppresses the ``(4k+1)^2`` window around it; a *pixel* pick reveals one pixel and
suppresses the ``(2k+1)^2`` window around it. ``area`` below is the pixels one pick reveals (``(2k+1)^2`` or 1).

The unit (``active.unit``) decides how much a round may take and over what it is ranked:

``ratio``   per image and round ``ceil(H*W*ratio_per_round / area)`` picks, ``ratio_per_round = active.ratio /
            rounds`` (RIPU's RA budget: 60x120 at 1% per round is 8 regions of 3x3, or 72 single pixels)
``pixels``  per image and round ``ceil(pixels_per_round * H*W / (1280*640) / area)`` picks, ``pixels_per_round
            = active.pixels / rounds`` (RIPU's PA budget, counted per 1280x640 image)
``pool``    per round ``ceil(sum_i H_i*W_i * ratio_per_round / area)`` picks ranked across all target images
            (the pool-level greedy: the highest-scoring available window of any image, until the budget is spent)
``images``  per round ``ceil(N * ratio_per_round)`` whole images of the N target images, ranked by their mean
            score (image-level acquisition as in MADA); a revealed image is suppressed entirely

By default the strategy and the unit follow ``active.mode``: ``ra`` -> strategy ``ra``, unit ``ratio``; ``pa`` ->
strategy ``pa``, unit ``pixels``. Float round-off below 1e-9 (relative) is ignored in the ``ceil``, so 60x120 at
1% over one round is 8 regions, not 9.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

PAPER_PIXELS = 1280 * 640  # the paper counts PA pixel budgets per 1280x640 image
UNITS = ("ratio", "pixels", "pool", "images")
PER_IMAGE_UNITS = ("ratio", "pixels")


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


def max_picks(height: int, width: int, mask_radius: int) -> int:
    """An upper bound on the picks one image can take with suppression radius ``mask_radius``.

    Two picks of one image are at Chebyshev distance ``> mask_radius`` (the second was not suppressed by the
    first), so each ``(m+1) x (m+1)`` block of a tiling holds at most one pick, ``m = mask_radius``.
    """
    m = mask_radius + 1
    return -(-height // m) * -(-width // m)


@dataclass(frozen=True)
class Budget:
    """How one round picks: the strategy, the unit and its amounts, the pick geometry.

    ``picks(H, W)`` is the per-image quota (units ``ratio`` and ``pixels``); ``pool_picks(sizes)`` and
    ``pool_images(n)`` are the round totals of the units ``pool`` and ``images``. Each pick reveals
    ``(2*radius+1)^2`` pixels and suppresses ``(2*mask_radius+1)^2``.
    """

    mode: str
    k: int
    rounds: int
    ratio: float = 0.0
    pixels: float = 0.0
    strategy: str = ""            # "" = the mode's (ra or pa)
    unit: str = ""                # "" = the mode's (ratio for ra, pixels for pa)
    seed: int = 0                 # seeds the random strategy (with the round and the image id)

    def __post_init__(self):
        from .scoring import STRATEGIES

        if self.mode not in ("ra", "pa"):
            raise ValueError(f"active.mode must be 'ra' or 'pa' for a budget, got {self.mode!r}")
        if self.k < 0:
            raise ValueError(f"active.k must be >= 0, got {self.k}")
        if self.rounds < 1:
            raise ValueError(f"active: the number of rounds must be >= 1, got {self.rounds}")
        if not self.strategy:
            object.__setattr__(self, "strategy", self.mode)
        if not self.unit:
            object.__setattr__(self, "unit", "ratio" if self.mode == "ra" else "pixels")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"active.strategy must be one of {', '.join(sorted(STRATEGIES))}, "
                             f"got {self.strategy!r}")
        if self.unit not in UNITS:
            raise ValueError(f"active.unit must be one of {', '.join(UNITS)}, got {self.unit!r}")

    @classmethod
    def from_config(cls, cfg) -> "Budget":
        """The budget of a :class:`ripu_kernels.driver.config.Config` (one round per ``active.rounds_at`` entry)."""
        a = cfg.active
        return cls(mode=a.mode, k=cfg.window_k, rounds=max(1, len(a.rounds_at)), ratio=a.ratio, pixels=a.pixels,
                   strategy=getattr(a, "strategy", ""), unit=getattr(a, "unit", ""), seed=cfg.seed)

    @property
    def geometry(self) -> str:
        from .scoring import STRATEGIES

        return STRATEGIES[self.strategy].geometry

    @property
    def radius(self) -> int:
        return self.k if self.geometry == "regions" else 0

    @property
    def mask_radius(self) -> int:
        return 2 * self.k if self.geometry == "regions" else self.k

    @property
    def area(self) -> int:
        """Pixels one pick reveals (inside the image)."""
        return (2 * self.radius + 1) ** 2

    @property
    def per_image(self) -> bool:
        """True for units with a quota per image (``ratio``, ``pixels``); False for ``pool`` and ``images``."""
        return self.unit in PER_IMAGE_UNITS

    def picks(self, height: int, width: int) -> int:
        """Picks per image and round (units ``ratio`` and ``pixels``)."""
        if self.unit == "ratio":
            return ceil_budget(height * width * (self.ratio / self.rounds) / self.area)
        if self.unit == "pixels":
            return ceil_budget((self.pixels / self.rounds) * height * width / PAPER_PIXELS / self.area)
        raise ValueError(f"active.unit={self.unit!r} has no per-image quota; see pool_picks / pool_images")

    def max_pixels(self, height: int, width: int) -> int:
        return self.picks(height, width) * self.area

    def pool_picks(self, sizes) -> int:
        """Unit ``pool``: picks of one round over images of label sizes ``sizes`` [(H, W), ...]."""
        total = sum(int(h) * int(w) for h, w in sizes)
        return ceil_budget(total * (self.ratio / self.rounds) / self.area)

    def pool_images(self, n_images: int) -> int:
        """Unit ``images``: whole images of one round out of ``n_images``."""
        return ceil_budget(n_images * self.ratio / self.rounds)

    def per_image_cap(self, height: int, width: int, pool: int) -> int:
        """Unit ``pool``: picks to compute for one image so that none of its pool-level picks is missed."""
        return min(pool, max_picks(height, width, self.mask_radius))
