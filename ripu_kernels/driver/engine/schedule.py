"""Learning-rate schedule: polynomial decay, ``lr * (1 - it / max_iter) ** power``."""
from __future__ import annotations


def poly_lr(base: float, it: int, max_iter: int, power: float) -> float:
    return base * (1 - it / max_iter) ** power
