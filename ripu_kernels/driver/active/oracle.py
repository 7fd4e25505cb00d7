"""Oracles: who reveals the labels of the selected regions."""
from __future__ import annotations

import numpy as np


class SimulatedOracle:
    """Reveals the ground truth of a dataset whose labels are hidden from training (``dataset.load_label``)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self, index: int) -> np.ndarray:
        return np.asarray(self.dataset.load_label(index))
