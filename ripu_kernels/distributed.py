"""Distributed training and sharded acquisition.

``torchrun --nproc_per_node N -m ripu_kernels train ...`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) trains with DistributedDataParallel: NCCL when
``device`` is CUDA (rank r uses ``cuda:LOCAL_RANK``), gloo on CPU.

Sharding rule (training and ``ripu select --shard I --num-shards N``): image ids are sorted; the image at
position ``p`` of that sorted list belongs to shard ``p % N``. Shards are disjoint and cover every image
(no padded duplicates), and selection of one image depends only on the model and that image's own masks,
so N shards write exactly the masks of one.

Ledger merge: shard ``I`` of ``N`` records its round ``r`` in ``STATE/ledgers/round_r/shard_I_of_N.json``
(``.partial.json`` while it runs, saved after every batch; renamed when the shard is complete). When every
shard file of the round is complete, ``STATE/ledger.json`` becomes the union of the previous ledger and the
shard files (conflicting records raise). In training rank 0 merges after a barrier; ``ripu select --shard``
merges when it finishes the last missing shard, and ``ripu merge-ledger STATE --round r --num-shards N``
does it by hand.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .active import AcquisitionError, Budget, Ledger, MaskStore, acquire
from .resume import Journal


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_from_env(device: str = "cpu") -> tuple[DistEnv, str]:
    """Join the process group described by torchrun's environment; returns (env, device for this rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(), device
    if not dist.is_available():
        raise RuntimeError("distributed: WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    try:
        rank = int(os.environ["RANK"])
    except KeyError:
        raise RuntimeError("distributed: WORLD_SIZE is set but RANK is not; launch with torchrun") from None
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"distributed: device={device!r} but CUDA is not available on rank {rank}")
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=60))
    return DistEnv(rank, world, local), device


def current() -> DistEnv:
    """The process group this process belongs to (a single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistEnv()


def wrap_ddp(model: torch.nn.Module, env: DistEnv, device) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel when running distributed, else ``model`` itself."""
    if not env.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = torch.device(device)
    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)  # buffers (trainable BN statistics) follow rank 0


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of ``t`` (a CPU tensor) over the ranks; NCCL reduces on the rank's GPU."""
    if env.enabled:
        if dist.get_backend() == "nccl":
            out = t.to(torch.device("cuda", torch.cuda.current_device()))
        else:
            out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.cpu()
    return t


# ------------------------------------------------------------------------------------------- shards
def shard_indices(ids: list[str], shard: int, num_shards: int) -> list[int]:
    """Dataset indices of shard ``shard`` of ``num_shards``: position ``p`` of the sorted ids goes to ``p % N``."""
    if num_shards < 1:
        raise ValueError(f"distributed: the number of shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"distributed: shard must be in [0, {num_shards}), got {shard}")
    if len(set(ids)) != len(ids):
        raise ValueError("distributed: image ids are not unique; shards would not be disjoint")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    return sorted(order[p] for p in range(shard, len(order), num_shards))


def round_dir(state_dir: str | os.PathLike, round_idx: int) -> Path:
    return Path(state_dir) / "ledgers" / f"round_{round_idx}"


def shard_ledger_path(state_dir, round_idx: int, shard: int, num_shards: int, partial: bool = False) -> Path:
    return round_dir(state_dir, round_idx) / f"shard_{shard}_of_{num_shards}{'.partial' if partial else ''}.json"


def known_ledger(state_dir, round_idx: int, mode: str, k: int) -> Ledger:
    """``ledger.json`` merged with every shard file (complete or partial) of round ``round_idx``."""
    led = Ledger.load(Path(state_dir) / "ledger.json", mode, k)
    rdir = round_dir(state_dir, round_idx)
    if rdir.is_dir():
        for f in sorted(rdir.glob("shard_*.json")):
            led.merge(Ledger.load(f, mode, k))
    return led


def recover_round(state_dir, round_idx: int, store: MaskStore, mode: str, k: int,
                  selection_dir=None) -> int:
    """Replay every leftover journal of round ``round_idx`` (any shard layout); images replayed."""
    rdir = round_dir(state_dir, round_idx)
    done = 0
    for j in sorted(rdir.glob("*.journal.npz")) if rdir.is_dir() else []:
        ledger_path = rdir / j.name.replace(".journal.npz", ".partial.json")  # the shard's running ledger
        led = Ledger.load(ledger_path, mode, k)
        done += Journal(j, ledger_path, store, selection_dir).recover(led)
    return done


def acquire_shard(model, dataset, store: MaskStore, budget: Budget, round_idx: int, iteration: int,
                  shard: int = 0, num_shards: int = 1, oracle=None, device="cpu", batch_size: int = 4,
                  align_corners: bool = True, progress: bool = False, selection_dir=None,
                  on_commit=None) -> dict:
    """Acquisition round ``round_idx`` on this shard's images, journalled and resumable.

    Leftover journals of this shard are replayed first; images the known ledger already has for the round
    are skipped. On success the shard's ledger file is complete. ``on_commit(ledger, records)`` is called
    for every batch before its commit (e.g. the annotator export).
    """
    state = store.root
    partial = shard_ledger_path(state, round_idx, shard, num_shards, partial=True)
    final = shard_ledger_path(state, round_idx, shard, num_shards)
    ledger = known_ledger(state, round_idx, budget.mode, budget.k)
    journal = Journal(partial.with_name(partial.name.replace(".partial.json", ".journal.npz")), partial, store,
                      selection_dir)
    journal.recover(ledger)
    indices = shard_indices(dataset.ids, shard, num_shards)

    def commit(led, records):
        if on_commit is not None:
            on_commit(led, records)
        journal.commit(led, records)

    stats = acquire(model, dataset, indices, store, ledger, budget, round_idx, iteration, oracle=oracle,
                    device=device, batch_size=batch_size, align_corners=align_corners, progress=progress,
                    selection_dir=selection_dir, ledger_path=partial, on_commit=commit, on_written=journal.written)
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


def distributed_acquire(trainer, round_idx: int, oracle) -> dict:
    """The training loop's acquisition round on every rank: recover, acquire own shard, merge, reload."""
    env, cfg = trainer.dist, trainer.cfg
    budget = trainer.budget
    if env.is_main:
        recover_round(trainer.state_dir, round_idx, MaskStore(trainer.state_dir), budget.mode, budget.k)
    env.barrier()
    store = MaskStore(trainer.state_dir)
    error = None
    try:
        stats = acquire_shard(trainer.model, trainer.target, store, budget, round_idx, trainer.iteration,
                              env.rank, env.world_size, oracle=oracle, device=trainer.device,
                              batch_size=cfg.active.batch_size, align_corners=cfg.active.align_corners,
                              progress=trainer.progress and env.is_main)
    except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks learnt of it
        error = exc
    # every rank learns whether any rank failed, so none is left waiting in a later collective
    failed = int(all_reduce_sum(torch.tensor([int(error is not None)]), env).item())
    if error is not None:
        raise error
    if failed:
        raise AcquisitionError(f"acquisition round {round_idx}: {failed} other rank(s) failed; see their errors")
    if env.is_main:
        merge_round(trainer.state_dir, round_idx, env.world_size, budget.mode, budget.k, required=True)
    env.barrier()
    # every rank reads the masks written by the others from disk from now on
    trainer.store = MaskStore(trainer.state_dir)
    trainer.ledger = Ledger.load(trainer.ledger_path, budget.mode, budget.k)
    totals = torch.tensor([stats["images"], stats["pixels"], stats["regions"]], dtype=torch.int64)
    totals = all_reduce_sum(totals, env).tolist()
    return {"images": totals[0], "pixels": totals[1], "regions": totals[2]}


def distributed_evaluate(trainer, evaluate_fn) -> dict:
    """Each rank evaluates its shard of the validation set; the confusion matrices are summed (exact)."""
    from .evaluate import iou_from_confusion

    env = trainer.dist
    val = trainer.val
    if not env.enabled:
        return evaluate_fn(val)
    idx = shard_indices(val.ids, env.rank, env.world_size)
    part = torch.utils.data.Subset(val, idx)
    part.name = getattr(val, "name", "val")
    res = evaluate_fn(part)
    conf = all_reduce_sum(torch.tensor(res["confusion"], dtype=torch.int64), env)
    iou, miou = iou_from_confusion(conf)
    return {"miou": 100 * miou, "iou": [100 * v for v in iou], "confusion": conf.tolist()}
