"""Learning-rate schedule: polynomial decay, ``lr * (1 - it / max_iter) ** power``.

As the authors' ``core/solver/build.py:4-9`` with ``max_iter`` = their MAX_ITER (``train.max_iter``): the LR of
the step with index ``it`` (0-based). Training stops at STOP_ITER (``train.iters``) before the LR reaches 0, e.g.
the paper's 62,500 / 40,000 leaves ``(1 - 0.64) ** 0.9 = 0.399`` x the base LR at the stop.
"""
from __future__ import annotations


def poly_lr(base: float, it: int, max_iter: int, power: float) -> float:
    return base * (1 - it / max_iter) ** power
