"""Sharded acquisition: one round split over ranks or machines, with per-shard ledgers merged at the end.

Sharding rule (training under torchrun and ``ripu select --shard I --num-shards N``): image ids are sorted; the
image at position ``p`` of that sorted list belongs to shard ``p % N`` (``data.sampling.shard_indices``). Shards
are disjoint and cover every image, and selecting one image depends only on the model and that image's own
masks, so N shards write exactly the masks of one.

Shard ``I`` of ``N`` records round ``r`` in ``STATE/ledgers/round_r/shard_I_of_N.json`` (``.partial.json``
while it runs, saved after every batch, with its crash journal ``.journal.npz`` beside it; renamed when the
shard is complete). When every shard file of the round is complete, ``STATE/ledger.json`` becomes the union
of the previous ledger and the shard files (conflicting records raise).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data.sampling import shard_indices
from ..errors import AcquisitionError
from .acquire import Acquirer
from .commit import BatchWriter, Journal
from .ledger import Ledger
from .store import MaskStore


def round_dir(state_dir: str | os.PathLike, round_idx: int) -> Path:
    return Path(state_dir) / "ledgers" / f"round_{round_idx}"


def shard_ledger_path(state_dir, round_idx: int, shard: int, num_shards: int, partial: bool = False) -> Path:
    return round_dir(state_dir, round_idx) / f"shard_{shard}_of_{num_shards}{'.partial' if partial else ''}.json"


def _journal_path(partial: Path) -> Path:
    return partial.with_name(partial.name.replace(".partial.json", ".journal.npz"))


def known_ledger(state_dir, round_idx: int, mode: str, k: int) -> Ledger:
    """``ledger.json`` merged with every shard file (complete or partial) of round ``round_idx``."""
    led = Ledger.load(Path(state_dir) / "ledger.json", mode, k)
    rdir = round_dir(state_dir, round_idx)
    if rdir.is_dir():
        for f in sorted(rdir.glob("shard_*.json")):
            led.merge(Ledger.load(f, mode, k))
    return led


def recover_round(state_dir, round_idx: int, store: MaskStore, mode: str, k: int, selection_dir=None) -> int:
    """Replay every leftover journal of round ``round_idx`` (any shard layout); returns the images replayed."""
    rdir = round_dir(state_dir, round_idx)
    done = 0
    for j in sorted(rdir.glob("*.journal.npz")) if rdir.is_dir() else []:
        ledger_path = rdir / j.name.replace(".journal.npz", ".partial.json")  # the shard's running ledger
        led = Ledger.load(ledger_path, mode, k)
        done += Journal(j).recover(led, ledger_path, store, selection_dir)
    return done


def acquire_shard(acquirer: Acquirer, dataset, state_dir, round_idx: int, iteration: int, shard: int = 0,
                  num_shards: int = 1, oracle=None, selection_dir=None, listeners=()) -> dict:
    """Round ``round_idx`` on this shard's images, journalled and resumable; returns its stats.

    Leftover journals of this shard are replayed first; images the known ledger already has for the round
    are skipped. On success the shard's ledger file is complete. ``listeners`` see every batch before its
    commit (e.g. the annotator export).
    """
    budget = acquirer.budget
    store = MaskStore(state_dir)
    partial = shard_ledger_path(state_dir, round_idx, shard, num_shards, partial=True)
    final = shard_ledger_path(state_dir, round_idx, shard, num_shards)
    ledger = known_ledger(state_dir, round_idx, budget.mode, budget.k)
    journal = Journal(_journal_path(partial))
    journal.recover(ledger, partial, store, selection_dir)
    writer = BatchWriter(store, partial, journal, selection_dir, listeners)
    stats = acquirer.run(dataset, shard_indices(dataset.ids, shard, num_shards), ledger, store, writer,
                         round_idx, iteration, oracle)
    ledger.save(final)
    try:
        partial.unlink()
    except FileNotFoundError:
        pass
    return stats


def merge_round(state_dir, round_idx: int, num_shards: int, mode: str, k: int, required: bool = False):
    """Merge the complete shard ledgers of a round into ``ledger.json``; None when a shard is missing."""
    files = [shard_ledger_path(state_dir, round_idx, s, num_shards) for s in range(num_shards)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        if required:
            raise AcquisitionError(f"merge-ledger: round {round_idx} is not complete: missing "
                                   + ", ".join(str(f) for f in missing))
        return None
    main = Path(state_dir) / "ledger.json"
    led = Ledger.load(main, mode, k)
    for f in files:
        led.merge(Ledger.load(f, mode, k))
    led.save(main)
    return led


def acquire_round(group, acquirer: Acquirer, dataset, state_dir, round_idx: int, iteration: int,
                  oracle=None, listeners=()) -> dict:
    """A round on every rank of ``group`` (``rank``, ``world_size``, ``is_main``, ``barrier()``,
    ``all_reduce_sum(tensor)``): recover, acquire this rank's shard, merge the shard ledgers; summed stats.
    ``listeners`` see each of this rank's batches before its commit (the annotator export).

    Every rank learns whether any rank failed, so none is left waiting in a later collective.
    """
    budget = acquirer.budget
    if group.is_main:
        recover_round(state_dir, round_idx, MaskStore(state_dir), budget.mode, budget.k)
    group.barrier()
    error, stats = None, {"images": 0, "pixels": 0, "regions": 0}
    try:
        stats = acquire_shard(acquirer, dataset, state_dir, round_idx, iteration, group.rank, group.world_size,
                              oracle=oracle, listeners=listeners)
    except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks learnt of it
        error = exc
    failed = int(group.all_reduce_sum(torch.tensor([int(error is not None)])).item())
    if error is not None:
        raise error
    if failed:
        raise AcquisitionError(f"acquisition round {round_idx}: {failed} other rank(s) failed; see their errors")
    if group.is_main:
        merge_round(state_dir, round_idx, group.world_size, budget.mode, budget.k, required=True)
    group.barrier()
    totals = group.all_reduce_sum(torch.tensor([stats["images"], stats["pixels"], stats["regions"]],
                                               dtype=torch.int64)).tolist()
    return {"images": totals[0], "pixels": totals[1], "regions": totals[2]}
