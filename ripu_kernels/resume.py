"""Resumable runs: a crash journal for acquisition, resumable data order, RNG state, the resume checkpoint.

A run can be killed at any point (SIGKILL included) and ``ripu train --resume DIR`` ends with the same masks,
ledger and (on CPU, with deterministic ops) model weights as an uninterrupted run with the same seed:

* ``checkpoints/resume.pth`` holds model, optimiser, iteration, metrics so far, the position of both data
  streams, the flip generator and the torch / NumPy / Python RNG states. It is written atomically every
  ``train.checkpoint_every`` iterations and at the start of every active round (before its evaluation), so
  that masks never change between the last resume point and the crash except inside the round itself.
* Inside a round, each batch is *committed* by an atomic journal (``*.journal.npz``: the ledger after the
  batch plus the batch's selections, revealed truth and suppression masks) before the ledger and masks
  are written. A restart replays a leftover journal (the mask updates are unions, so replaying is
  idempotent), then skips every image the ledger already has for the round: no image is selected twice,
  and nothing already revealed is overwritten.
"""
from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from .active import AcquisitionError, Ledger, MaskStore, _safe_id
from .utils.io import atomic_save_png, atomic_write_bytes

RESUME_NAME = "resume.pth"


# ------------------------------------------------------------------------------------------- journal
class Journal:
    """Crash journal of one acquisition: ``commit`` before the ledger, ``written`` after the masks."""

    def __init__(self, path: str | os.PathLike, ledger_path: str | os.PathLike, store: MaskStore,
                 selection_dir: str | os.PathLike | None = None):
        self.path, self.ledger_path = Path(path), Path(ledger_path)
        self.store, self.selection_dir = store, selection_dir
        self.commits = 0

    def commit(self, ledger: Ledger, records: list[dict]) -> None:
        arrays = {"ledger": np.frombuffer(json.dumps(ledger.to_dict()).encode("utf-8"), np.uint8),
                  "ids": np.frombuffer(json.dumps([r["id"] for r in records]).encode("utf-8"), np.uint8)}
        for j, r in enumerate(records):
            arrays[f"selected_{j}"] = r["selected"].astype(bool)
            arrays[f"active_{j}"] = r["active"].astype(bool)
            if r["truth"] is not None:
                arrays[f"truth_{j}"] = np.asarray(r["truth"]).astype(np.int64)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path, buf.getvalue())  # the commit point of the batch
        self.commits += 1
        crash_hook(self.commits, "journal")  # tests: die between the commit and the ledger/masks

    def written(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def recover(self, ledger: Ledger) -> int:
        """Replay a leftover journal into ``ledger`` (saved to ``ledger_path``) and the masks; images replayed."""
        if not self.path.exists():
            return 0
        try:
            with np.load(self.path) as z:
                data = {k: z[k] for k in z.files}
            committed = Ledger.from_dict(json.loads(data["ledger"].tobytes().decode("utf-8")), str(self.path))
            ids = json.loads(data["ids"].tobytes().decode("utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            raise AcquisitionError(f"resume: cannot read the acquisition journal {self.path}: {exc}; "
                                   "it holds the last committed batch of an interrupted round") from exc
        ledger.merge(committed)
        ledger.save(self.ledger_path)
        for j, image_id in enumerate(ids):
            sel, act = data[f"selected_{j}"], data[f"active_{j}"]
            truth = data.get(f"truth_{j}")
            if truth is not None:
                self.store.update(image_id, sel, truth, act)
            else:
                self.store.update_active(image_id, act)
            if self.selection_dir is not None:
                atomic_save_png(Path(self.selection_dir) / (_safe_id(image_id) + ".png"), sel.astype(np.uint8) * 255)
        self.written()
        return len(ids)


# ------------------------------------------------------------------------------------------ data order
class _Cursor:
    """Position in an endless sequence of shuffled global batches (the order of ``train.InfiniteBatches``)."""

    def __init__(self, n: int, batch: int, gen: torch.Generator, perm=None, pos: int = 0):
        self.n, self.batch, self.gen, self.perm, self.pos = n, batch, gen, perm, pos

    def clone(self) -> "_Cursor":
        g = torch.Generator()
        g.set_state(self.gen.get_state())
        return _Cursor(self.n, self.batch, g, None if self.perm is None else list(self.perm), self.pos)

    def next(self) -> list[int]:
        if self.perm is None or self.pos >= self.n // self.batch:
            # the draws of a DataLoader(shuffle=True, generator=g): RandomSampler draws a second (unused)
            # permutation when its first is exhausted; a new epoch's iterator draws its base seed, then
            # the sampler's permutation
            if self.perm is not None:
                torch.randperm(self.n, generator=self.gen)
            torch.empty((), dtype=torch.int64).random_(generator=self.gen)
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen).tolist(), 0
        out = self.perm[self.pos * self.batch:(self.pos + 1) * self.batch]
        self.pos += 1
        return out


class _LocalBatches:
    """Batch sampler for a DataLoader: this rank's slice of every global batch, from a cursor copy."""

    def __init__(self, cursor: _Cursor, rank: int, local: int):
        self.cursor, self.rank, self.local = cursor, rank, local

    def __iter__(self):
        while True:
            yield self.cursor.next()[self.rank * self.local:(self.rank + 1) * self.local]


class ResumableBatches:
    """Endless shuffled batches with a saveable position; sharded over ranks.

    Every rank walks the same sequence of *global* batches of ``batch_size`` (reshuffled each epoch from
    ``seed``, the order of :class:`ripu_kernels.train.InfiniteBatches`) and loads only its slice
    ``[rank * b, (rank + 1) * b)`` with ``b = batch_size / world_size``: N ranks see exactly the batches of
    one rank. ``state_dict()`` is the position after the batches already returned (loader prefetching
    does not move it).
    """

    def __init__(self, dataset, batch_size: int, seed: int, num_workers: int = 0, rank: int = 0,
                 world_size: int = 1):
        if len(dataset) == 0:
            raise ValueError(f"training: dataset {getattr(dataset, 'name', '?')} is empty")
        glob = min(batch_size, len(dataset))
        if glob % world_size:
            raise ValueError(f"training: data.batch_size (the global batch, here {glob} for dataset "
                             f"{getattr(dataset, 'name', '?')}) must be divisible by the world size {world_size}")
        self.dataset, self.num_workers = dataset, num_workers
        self.rank, self.local = rank, glob // world_size
        self.cursor = _Cursor(len(dataset), glob, torch.Generator().manual_seed(seed))
        self._it = None

    def _loader_iter(self):
        from .data import collate

        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=_LocalBatches(self.cursor.clone(), self.rank, self.local),
            collate_fn=collate, num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(0))  # keeps the global RNG out of the data order
        return iter(loader)

    def __next__(self) -> dict:
        if self._it is None:
            self._it = self._loader_iter()
        batch = next(self._it)
        self.cursor.next()  # the consumer's position, in step with what was returned
        return batch

    def state_dict(self) -> dict:
        return {"gen": self.cursor.gen.get_state(), "perm": self.cursor.perm, "pos": self.cursor.pos,
                "n": self.cursor.n, "batch": self.cursor.batch}

    def load_state_dict(self, state: dict) -> None:
        if (state["n"], state["batch"]) != (self.cursor.n, self.cursor.batch):
            raise ValueError(f"resume: the data stream had {state['n']} images in batches of {state['batch']}, "
                             f"now {self.cursor.n} in batches of {self.cursor.batch}")
        self.cursor.gen.set_state(state["gen"])
        self.cursor.perm = None if state["perm"] is None else list(state["perm"])
        self.cursor.pos = int(state["pos"])
        self._it = None


# ------------------------------------------------------------------------------------------ RNG state
def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / "checkpoints" / RESUME_NAME


def load_resume(out_dir: str | os.PathLike) -> dict:
    """The resume state of the run in ``out_dir`` (raises naming the file when there is none)."""
    path = resume_path(out_dir)
    if not path.is_file():
        raise FileNotFoundError(f"resume: {path} not found; {out_dir} has no resumable run (a run writes it "
                                "every train.checkpoint_every iterations and at every active round)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"resume: cannot load {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("kind") != "ripu-resume":
        raise ValueError(f"resume: {path} is not a ripu_kernels resume checkpoint")
    return state


def crash_hook(iteration: int, where: str) -> None:
    """Test hook: ``RIPU_CRASH_AT=<where>:<iteration>`` kills the process (SIGKILL) at that point."""
    spec = os.environ.get("RIPU_CRASH_AT")
    if spec and spec == f"{where}:{iteration}":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
