"""The process group: torchrun's environment, DistributedDataParallel, and the few collectives the driver uses.

``torchrun --nproc_per_node N -m ripu_kernels train ...`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) trains with DistributedDataParallel: NCCL when ``device`` is
CUDA (rank r uses ``cuda:LOCAL_RANK``), gloo on CPU. A single process is a group of one whose collectives are
no-ops, so the rest of the driver is written once.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the group: rank, world size, local rank, and its collectives."""

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

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` (a CPU tensor) over the ranks, on the CPU; NCCL reduces on the rank's GPU."""
        if not self.enabled:
            return t
        if dist.get_backend() == "nccl":
            out = t.to(torch.device("cuda", torch.cuda.current_device()))
        else:
            out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.cpu()

    def shutdown(self, wait_for_others: bool = True) -> None:
        """Leave the group; with ``wait_for_others`` after a barrier, so that no rank tears down a connection
        another rank still uses (gloo aborts the process when that happens)."""
        if self.enabled and dist.is_initialized():
            try:
                if wait_for_others:
                    dist.barrier()
            finally:
                dist.destroy_process_group()


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


def wrap_ddp(module: torch.nn.Module, env: DistEnv, device) -> torch.nn.Module:
    """``module`` wrapped in DistributedDataParallel when running distributed, else ``module`` itself."""
    if not env.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = torch.device(device)
    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids)  # buffers (trainable BN statistics) follow rank 0
