"""Sharded acquisition: one round split over ranks or machines, with per-shard ledgers merged at the end.

Sharding rule (training under torchrun and ``ripu select --shard I --num-shards N``): image ids are sorted; the
image at position ``p`` of that sorted list belongs to shard ``p % N`` (``data.sampling.shard_indices``). Shards
are disjoint and cover every image, and selecting one image depends only on the model and that image's own
masks, so N shards write exactly the masks of one.

Shard ``I`` of ``N`` records round ``r`` in ``STATE/ledgers/round_r/shard_I_of_N.json`` (``.partial.json``
while it runs, saved after every batch, with its crash journal ``.journal.npz`` beside it; renamed when the
shard is complete). When every shard file of the round is complete, ``STATE/ledger.json`` becomes the union
of the previous ledger and the shard files (conflicting records raise).

Round-level units (``active.unit`` ``pool`` and ``images``) rank over every image of the round, so a round
first makes a *plan*: every rank scores its shard and keeps its best candidates (``Acquirer.pool_candidates``
/ ``image_candidates``), the candidates of all ranks are gathered to every rank (exactly: an all-reduce sum of
float64 rows where each rank fills only its own), merged by score (``merge_pool`` / ``merge_images``), and
rank 0 writes ``STATE/ledgers/round_r/plan.npz`` (the label size of every image, the picks or the whole images
taken, the round budget). Only then does any rank reveal anything: each reveals the plan's picks on its own
shard, journalled as above. A resumed round reads the plan instead of making a new one, so it ends with the
masks and ledger of an uninterrupted round on any number of ranks. ``ripu select --num-shards N`` (separate
processes, no collectives) refuses these units for N > 1.
"""
from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..data.sampling import shard_indices
from ..errors import AcquisitionError
from ..io import atomic_write_bytes
from .acquire import Acquirer, merge_images, merge_pool
from .commit import BatchWriter, Journal
from .ledger import Ledger
from .store import MaskStore

log = logging.getLogger("ripu")
PLAN_VERSION = 1


def round_dir(state_dir: str | os.PathLike, round_idx: int) -> Path:
    return Path(state_dir) / "ledgers" / f"round_{round_idx}"


def shard_ledger_path(state_dir, round_idx: int, shard: int, num_shards: int, partial: bool = False) -> Path:
    return round_dir(state_dir, round_idx) / f"shard_{shard}_of_{num_shards}{'.partial' if partial else ''}.json"


def _journal_path(partial: Path) -> Path:
    return partial.with_name(partial.name.replace(".partial.json", ".journal.npz"))


def known_ledger(state_dir, round_idx: int, mode: str, k: int, strategy: str = "", unit: str = "") -> Ledger:
    """``ledger.json`` merged with every shard file (complete or partial) of round ``round_idx``."""
    led = Ledger.load(Path(state_dir) / "ledger.json", mode, k, strategy, unit)
    rdir = round_dir(state_dir, round_idx)
    if rdir.is_dir():
        for f in sorted(rdir.glob("shard_*.json")):
            led.merge(Ledger.load(f, mode, k))
    return led


def plan_path(state_dir, round_idx: int) -> Path:
    return round_dir(state_dir, round_idx) / "plan.npz"


class _Solo:
    """A group of one process (``ripu select`` without torchrun): collectives are identities."""

    rank, world_size, is_main = 0, 1, True

    def barrier(self) -> None:
        pass

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return t


def gather_rows(group, rows: np.ndarray, width: int) -> np.ndarray:
    """The ``(n_r, width)`` rows of every rank, concatenated in rank order, on every rank.

    Exact for float64 values and integers below 2**53: each rank fills only its own slice of a zero buffer,
    and the buffer is summed over the ranks."""
    rows = np.asarray(rows, np.float64).reshape(-1, width)
    counts = torch.zeros(group.world_size, dtype=torch.int64)
    counts[group.rank] = len(rows)
    counts = group.all_reduce_sum(counts)
    start = int(counts[:group.rank].sum())
    buf = torch.zeros((int(counts.sum()), width), dtype=torch.float64)
    buf[start:start + len(rows)] = torch.from_numpy(rows)
    return group.all_reduce_sum(buf).numpy().reshape(-1, width)


def _agree_on_failure(group, error: BaseException | None, what: str) -> None:
    """Every rank learns whether any rank failed (so none waits in a later collective); re-raise here."""
    failed = int(group.all_reduce_sum(torch.tensor([int(error is not None)])).item())
    if error is not None:
        raise error
    if failed:
        raise AcquisitionError(f"{what}: {failed} other rank(s) failed; see their errors")


def _image_size(dataset, index: int) -> tuple[int, int]:
    """(H, W) at which image ``index`` is acquired (``active.resolution.label_hw``)."""
    get = getattr(dataset, "label_hw", None)
    if callable(get):
        return tuple(int(x) for x in get(index))
    return tuple(int(x) for x in dataset[index]["image"].shape[-2:])


def save_plan(path: Path, plan: dict) -> None:
    ids = plan["ids"]
    sizes = np.asarray([plan["sizes"][i] for i in ids], np.int64).reshape(-1, 2)
    centers = plan.get("centers", {})
    rows = [(pos, r, c) for pos, i in enumerate(ids)
            for r, c in np.asarray(centers.get(i, np.zeros((0, 2))), np.int64).reshape(-1, 2).tolist()]
    meta = {k: plan[k] for k in ("version", "round", "unit", "strategy", "budget", "taken", "available")}
    meta["images"] = list(plan.get("images", []))
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
             ids=np.frombuffer(json.dumps(ids).encode("utf-8"), np.uint8), sizes=sizes,
             centers=np.asarray(rows, np.int64).reshape(-1, 3))
    atomic_write_bytes(path, buf.getvalue())


def load_plan(path: Path) -> dict:
    try:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            ids = json.loads(z["ids"].tobytes().decode("utf-8"))
            sizes, rows = z["sizes"], z["centers"]
    except (OSError, ValueError, KeyError) as exc:
        raise AcquisitionError(f"acquisition: cannot read the round plan {path}: {exc}") from exc
    centers: dict[str, list] = {}
    for pos, r, c in rows.tolist():
        centers.setdefault(ids[pos], []).append((r, c))
    return {**meta, "ids": ids, "sizes": {i: tuple(int(x) for x in sizes[p]) for p, i in enumerate(ids)},
            "centers": {i: np.asarray(c, np.int64) for i, c in centers.items()}}


def make_plan(group, acquirer: Acquirer, dataset, store: MaskStore, round_idx: int) -> dict:
    """The plan of a round-level unit over every image of ``dataset`` (a collective over ``group``)."""
    budget = acquirer.budget
    ids = sorted(dataset.ids)
    positions = {image_id: p for p, image_id in enumerate(ids)}
    mine = shard_indices(dataset.ids, group.rank, group.world_size)
    error, rows = None, np.zeros((0, 3))
    try:
        rows = np.asarray([(positions[dataset.image_id(i)], *_image_size(dataset, i)) for i in mine], np.float64)
    except Exception as exc:  # noqa: BLE001 - re-raised after the other ranks learnt of it
        error = exc
    _agree_on_failure(group, error, f"acquisition round {round_idx}")
    all_rows = gather_rows(group, rows, 3).astype(np.int64)
    sizes = {ids[p]: (int(h), int(w)) for p, h, w in all_rows.tolist()}
    if budget.unit == "pool":
        amount = budget.pool_picks(sizes.values())
    else:
        amount = budget.pool_images(len(ids))
    error, cand = None, None
    try:
        if budget.unit == "pool":
            cand = acquirer.pool_candidates(dataset, mine, positions, store, round_idx, amount)
        else:
            cand = acquirer.image_candidates(dataset, mine, positions, store, round_idx)
    except Exception as exc:  # noqa: BLE001
        error = exc
    _agree_on_failure(group, error, f"acquisition round {round_idx}")
    triples = gather_rows(group, np.stack([cand["score"], cand["position"], cand["order"]], 1), 3)
    parts = [{"score": triples[:, 0], "position": triples[:, 1].astype(np.int64),
              "order": triples[:, 2].astype(np.int64)}]
    plan = {"version": PLAN_VERSION, "round": round_idx, "unit": budget.unit, "strategy": budget.strategy,
            "budget": int(amount), "ids": ids, "sizes": sizes}
    if budget.unit == "pool":
        merged = merge_pool(parts, amount)
        per = merged["per_position"]
        taken = [(positions[i], r, c) for i, cs in cand["centers"].items()
                 for r, c in cs[:per.get(positions[i], 0)].tolist()]
        taken = gather_rows(group, np.asarray(taken, np.float64), 3).astype(np.int64)
        centers: dict[str, list] = {}
        for pos, r, c in taken.tolist():
            centers.setdefault(ids[pos], []).append((r, c))
        plan["centers"] = {i: np.asarray(c, np.int64) for i, c in centers.items()}
        plan["images"] = []
    else:
        merged = merge_images(parts, amount)
        plan["images"] = [ids[p] for p in merged["positions"]]
        plan["centers"] = {}
    plan["taken"], plan["available"] = merged["taken"], merged["available"]
    return plan


def ensure_plan(group, acquirer: Acquirer, dataset, state_dir, round_idx: int) -> dict:
    """The plan of round ``round_idx``: read from ``plan.npz`` when a (resumed) round has one, else made and
    written by rank 0 before anything is revealed."""
    budget = acquirer.budget
    path = plan_path(state_dir, round_idx)
    group.barrier()
    if path.is_file():
        plan = load_plan(path)
        if (plan["unit"], plan["strategy"], plan["round"]) != (budget.unit, budget.strategy, round_idx) or \
                plan["ids"] != sorted(dataset.ids):
            raise AcquisitionError(f"acquisition: {path} was made for another round, unit, strategy or image set "
                                   f"(unit={plan['unit']}, strategy={plan['strategy']}, round={plan['round']}, "
                                   f"{len(plan['ids'])} images)")
        return plan
    plan = make_plan(group, acquirer, dataset, MaskStore(state_dir), round_idx)
    if group.is_main:
        save_plan(path, plan)
        what = "picks" if budget.unit == "pool" else "whole images"
        if plan["taken"] < plan["budget"]:
            log.warning("[round %d] the %s budget is %d %s but only %d are available in the pool; taking them all "
                        "(the ledger records what was taken)", round_idx, budget.unit, plan["budget"], what,
                        plan["taken"])
    group.barrier()
    return plan


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
                  num_shards: int = 1, oracle=None, selection_dir=None, listeners=(), plan: dict | None = None) -> dict:
    """Round ``round_idx`` on this shard's images, journalled and resumable; returns its stats.

    Leftover journals of this shard are replayed first; images the known ledger already has for the round
    are skipped. On success the shard's ledger file is complete. ``listeners`` see every batch before its
    commit (e.g. the annotator export). Round-level units reveal ``plan`` (made here when this is the only
    shard; under torchrun :func:`acquire_round` makes it over all ranks).
    """
    budget = acquirer.budget
    store = MaskStore(state_dir)
    if not budget.per_image and plan is None:
        if num_shards != 1:
            raise AcquisitionError(f"acquisition: active.unit={budget.unit} ranks over every image of the round; "
                                   "run it in one process or under torchrun, not as separate --num-shards shards")
        plan = ensure_plan(_Solo(), acquirer, dataset, state_dir, round_idx)
    partial = shard_ledger_path(state_dir, round_idx, shard, num_shards, partial=True)
    final = shard_ledger_path(state_dir, round_idx, shard, num_shards)
    ledger = known_ledger(state_dir, round_idx, budget.mode, budget.k, budget.strategy, budget.unit)
    journal = Journal(_journal_path(partial))
    journal.recover(ledger, partial, store, selection_dir)
    writer = BatchWriter(store, partial, journal, selection_dir, listeners)
    indices = shard_indices(dataset.ids, shard, num_shards)
    if plan is None:
        stats = acquirer.run(dataset, indices, ledger, store, writer, round_idx, iteration, oracle)
    else:
        ledger.set_round_budget(round_idx, budget.unit, plan["budget"])
        stats = acquirer.run_plan(dataset, indices, plan, ledger, store, writer, round_idx, iteration, oracle)
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
    led.check_round(round_idx)
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
    plan = None if budget.per_image else ensure_plan(group, acquirer, dataset, state_dir, round_idx)
    error, stats = None, {"images": 0, "pixels": 0, "regions": 0}
    try:
        stats = acquire_shard(acquirer, dataset, state_dir, round_idx, iteration, group.rank, group.world_size,
                              oracle=oracle, listeners=listeners, plan=plan)
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
