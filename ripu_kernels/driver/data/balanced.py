"""Class-balanced source sampling, as the authors draw GTAV and SYNTHIA images (``data.balanced_sampling``).

The authors' loaders (BIT-DA/RIPU ``core/datasets/gtav.py:31-59``, the same in ``synthia.py:32-61``) build the
training list once, before training, from per-image class presence (``ripu prepare`` computes it here):

* the list is ``int(total / 3000) + 1`` *sub-epochs* of 3,000 draws, ``total = MAX_ITER * BATCH_SIZE``;
* in a sub-epoch, ``counts[c]`` is how many drawn images contain class ``c`` (reset at each sub-epoch); a draw
  takes class ``c`` with probability ``w_c / sum(w)``, ``w_c = 1 / log(1.01 + counts[c] / sum(counts))``
  (all ``f = 0`` at the start of a sub-epoch, so the first draw is uniform over classes);
* the image is the next one of class ``c``'s file list (one running position per class, kept across
  sub-epochs); when that list is used up it is shuffled and the position becomes ``position % (len - 1)``
  (so the first file of the reshuffled list is skipped, a quirk kept here; a class with a single file
  restarts at 0 where the authors' code divides by zero);
* the DataLoader then shuffles the whole list (``shuffle=True``) and cuts it into batches (``drop_last``).

:class:`BalancedBatchSampler` yields the batches of that list with the interface of
:class:`~ripu_kernels.driver.data.sampling.GlobalBatchSampler` (global batches, this rank's slice, a
saveable position). Its randomness is its own NumPy generator seeded from ``(seed, list number)``, so a resumed
run rebuilds the same list and continues at the same position. When a run outlasts one list (it does not
with the paper's ``STOP_ITER < MAX_ITER``), a new list is built. Classes that no image contains get weight 0
(the authors' code fails on them with an IndexError).
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from .sampling import RankSlices

SUB_EPOCH = 3000  # draws per sub-epoch (the authors' SUB_EPOCH_SIZE)
SMOOTHING = 1.01  # w_c = 1 / log(SMOOTHING + f_c)


def class_weights(counts: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
    """The draw probabilities for class counts ``counts`` of the current sub-epoch (zero where not available)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    freq = counts / total if total > 0 else np.zeros_like(counts)
    w = 1.0 / np.log(SMOOTHING + freq)
    if available is not None:
        w = np.where(available, w, 0.0)
    return w / w.sum()


def build_balanced_list(presence: np.ndarray, total: int, rng: np.random.Generator,
                        sub_epoch: int = SUB_EPOCH, trace: list | None = None) -> np.ndarray:
    """Image indices of one balanced list (``int(total / sub_epoch) + 1`` sub-epochs, not yet shuffled).

    ``presence`` is a bool (images, classes) matrix. With ``trace`` (a list), every draw appends
    ``(weights, class)`` to it, for tests.
    """
    presence = np.asarray(presence, dtype=bool)
    n_images, n_classes = presence.shape
    files = [np.flatnonzero(presence[:, c]) for c in range(n_classes)]
    available = np.array([len(f) > 0 for f in files])
    if not available.any():
        raise DataError("balanced sampling: no image contains any class (empty class statistics)")
    pos = [0] * n_classes
    out = np.empty((int(total // sub_epoch) + 1) * sub_epoch, dtype=np.int64)
    k = 0
    for _ in range(int(total // sub_epoch) + 1):
        counts = np.zeros(n_classes)
        for _ in range(sub_epoch):
            w = class_weights(counts, available)
            # as np.random.choice(p=w): the first class whose cumulative weight exceeds a uniform draw
            cdf = np.cumsum(w)
            c = int(np.searchsorted(cdf / cdf[-1], rng.random(), side="right"))
            c = min(c, n_classes - 1)
            if trace is not None:
                trace.append((w, c))
            lst = files[c]
            if pos[c] > len(lst) - 1:
                rng.shuffle(lst)
                pos[c] = pos[c] % (len(lst) - 1) if len(lst) > 1 else 0
            image = int(lst[pos[c]])
            pos[c] += 1
            out[k] = image
            k += 1
            counts[presence[image]] += 1
    return out


class BalancedBatchSampler(RankSlices):
    """Endless class-balanced batches (this rank's slice of each global batch); stateful like
    :class:`~ripu_kernels.driver.data.sampling.GlobalBatchSampler`.

    ``total`` is the number of images one list is built for (the authors: ``MAX_ITER * BATCH_SIZE``).
    """

    def __init__(self, presence: np.ndarray, batch_size: int, total: int, seed: int, rank: int = 0,
                 world_size: int = 1, sub_epoch: int = SUB_EPOCH):
        super().__init__(batch_size, rank, world_size)
        self.presence = np.asarray(presence, dtype=bool)
        self.n = len(self.presence)
        self.total, self.seed, self.sub_epoch = int(total), int(seed), int(sub_epoch)
        self._list_no = 0
        self._order: np.ndarray | None = None
        self._pos = 0

    def _build(self, list_no: int) -> np.ndarray:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, list_no])))
        order = build_balanced_list(self.presence, self.total, rng, self.sub_epoch)
        return order[rng.permutation(len(order))]  # the DataLoader's shuffle=True over the whole list

    def next_global(self) -> list[int]:
        if self._order is None:
            self._order = self._build(self._list_no)
        if self._pos >= len(self._order) // self.batch:
            self._list_no, self._pos = self._list_no + 1, 0
            self._order = self._build(self._list_no)
        out = self._order[self._pos * self.batch:(self._pos + 1) * self.batch].tolist()
        self._pos += 1
        return out

    def state_dict(self) -> dict:
        return {"kind": "balanced", "list": self._list_no, "pos": self._pos, "n": self.n, "batch": self.batch,
                "total": self.total, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "balanced":
            raise DataError("resume: the run sampled the source uniformly, now data.balanced_sampling=true")
        mine = (self.n, self.batch, self.total, self.seed)
        saved = (state["n"], state["batch"], state["total"], state["seed"])
        if saved != mine:
            raise DataError(f"resume: the balanced source stream had (images, batch, list size, seed) = {saved}, "
                            f"now {mine}")
        if int(state["list"]) != self._list_no or self._order is None:
            self._list_no = int(state["list"])
            self._order = self._build(self._list_no)
        self._pos = int(state["pos"])

