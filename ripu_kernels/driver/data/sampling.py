"""Data order: endless shuffled batches with an exact, resumable position, sharded over ranks.

Every rank walks the same sequence of *global* batches of ``batch_size`` images: epoch after epoch, a fresh
permutation of the dataset drawn from a generator seeded with ``seed``, cut into ``len // batch_size`` batches
(the remainder of an epoch is dropped). Rank ``r`` of ``N`` loads the slice ``[r*b, (r+1)*b)`` of each global
batch, ``b = batch_size / N``, so N ranks together see exactly the batches of one process.

Loading goes through torchdata's ``StatefulDataLoader`` with :class:`GlobalBatchSampler` as its (stateful)
batch sampler: ``state_dict()`` is the position after the batches already returned to the caller, however far
the loader's workers have prefetched, and a loader restored from it continues with the same batches.
"""
from __future__ import annotations

import contextlib
import warnings

import torch

from ..errors import DataError
from .base import collate


def shard_indices(ids: list[str], shard: int, num_shards: int) -> list[int]:
    """Dataset indices of shard ``shard`` of ``num_shards``: position ``p`` of the sorted ids goes to ``p % N``."""
    if num_shards < 1:
        raise ValueError(f"shards: the number of shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shards: shard must be in [0, {num_shards}), got {shard}")
    if len(set(ids)) != len(ids):
        raise ValueError("shards: image ids are not unique; shards would not be disjoint")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    return sorted(order[p] for p in range(shard, len(order), num_shards))


class RankSlices:
    """Base of the batch samplers: endless global batches (``next_global``, all ranks' indices), of which this
    rank yields its slice ``[rank * b, (rank + 1) * b)``, ``b = batch_size / world_size``."""

    def __init__(self, batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the world size {world_size}")
        self.batch, self.rank, self.local = batch_size, rank, batch_size // world_size

    def next_global(self) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self):
        while True:
            yield self.next_global()[self.rank * self.local:(self.rank + 1) * self.local]


class GlobalBatchSampler(RankSlices):
    """Endless batches of indices (this rank's slice of each global batch); stateful for StatefulDataLoader."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        super().__init__(batch_size, rank, world_size)
        self.n = n
        self._gen = torch.Generator().manual_seed(seed)
        self._perm: list[int] | None = None
        self._pos = 0

    def next_global(self) -> list[int]:
        """The next global batch (all ranks' indices), advancing the position."""
        if self._perm is None or self._pos >= self.n // self.batch:
            self._perm, self._pos = torch.randperm(self.n, generator=self._gen).tolist(), 0
        out = self._perm[self._pos * self.batch:(self._pos + 1) * self.batch]
        self._pos += 1
        return out

    def state_dict(self) -> dict:
        return {"generator": self._gen.get_state(), "perm": self._perm, "pos": self._pos, "n": self.n,
                "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        if (state["n"], state["batch"]) != (self.n, self.batch):
            raise DataError(f"resume: the data stream had {state['n']} images in batches of {state['batch']}, "
                            f"now {self.n} in batches of {self.batch}")
        self._gen.set_state(state["generator"])
        self._perm = None if state["perm"] is None else [int(i) for i in state["perm"]]
        self._pos = int(state["pos"])


@contextlib.contextmanager
def _quiet_torchdata():
    """torchdata 0.11 calls a deprecated torch API (``set_vital``) when a loader or iterator starts."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*set_vital.*")
        yield


class BatchStream:
    """Endless collated batches of ``dataset`` in the order of :class:`GlobalBatchSampler`, with a saveable
    position (``state_dict`` / ``load_state_dict``)."""

    def __init__(self, dataset, batch_size: int, seed: int, num_workers: int = 0, rank: int = 0,
                 world_size: int = 1, sampler=None):
        from torchdata.stateful_dataloader import StatefulDataLoader

        name = getattr(dataset, "name", "?")
        if len(dataset) == 0:
            raise DataError(f"training: dataset {name} is empty")
        glob = min(batch_size, len(dataset))
        if glob % world_size:
            raise DataError(f"training: data.batch_size (the global batch, here {glob} for dataset {name}) must be "
                            f"divisible by the world size {world_size}")
        # ``sampler``: another stateful global-batch sampler (e.g. data.balanced.BalancedBatchSampler)
        self.sampler = sampler or GlobalBatchSampler(len(dataset), glob, seed, rank, world_size)
        with _quiet_torchdata():
            self.loader = StatefulDataLoader(dataset, batch_sampler=self.sampler, collate_fn=collate,
                                             num_workers=num_workers,
                                             generator=torch.Generator().manual_seed(0))  # global RNG untouched
        self._it = None

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._it is None:
            with _quiet_torchdata():
                self._it = iter(self.loader)
        return next(self._it)

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)
        self._it = None


def source_stream(cfg, dataset, rank: int = 0, world_size: int = 1) -> BatchStream:
    """The source batches of a run: class-balanced with ``data.balanced_sampling`` (from the class statistics of
    ``ripu prepare``, one list for ``max_iter * batch_size`` images, as the authors), else uniform epochs."""
    d = cfg.data
    sampler = None
    if d.balanced_sampling:
        from .balanced import BalancedBatchSampler

        prepared = getattr(dataset, "prepared", None)
        if prepared is None:
            raise DataError(f"data.balanced_sampling: dataset {getattr(dataset, 'name', '?')} has no class "
                            "statistics (run `ripu prepare DATASET ROOT`)")
        glob = min(d.batch_size, len(dataset))
        sampler = BalancedBatchSampler(prepared.presence(dataset.ids), glob, cfg.lr_horizon * d.batch_size,
                                       cfg.seed + 1, rank, world_size)
    return BatchStream(dataset, d.batch_size, cfg.seed + 1, d.num_workers, rank, world_size, sampler=sampler)
