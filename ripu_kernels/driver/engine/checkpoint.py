"""Checkpoints and resume state, written atomically and read with ``torch.load(weights_only=True)``.

A checkpoint from outside is untrusted: it is only ever unpickled with ``weights_only=True`` (tensors and plain
containers; no code runs), and a file that is not one of ours is a :class:`CheckpointError` naming it.

``checkpoints/<name>.pth`` (every ``train.checkpoint_every`` iterations, at each round, at the end):
``{"kind": "ripu-checkpoint", "model", "optimizer", "iteration", "config", "num_classes", "history"}``.

``checkpoints/resume.pth`` (every ``train.checkpoint_every`` iterations and at the start of every active round):
the model and optimiser, the iteration, the metrics so far, the position of both data streams, the flip
generator and the torch / NumPy / Python RNG states.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..io import atomic_torch_save

CHECKPOINT_KIND = "ripu-checkpoint"
RESUME_KIND = "ripu-resume"
RESUME_NAME = "resume.pth"


def load_file(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """``torch.load(path, weights_only=True)`` of a dict; errors name the file."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        text = str(exc).strip()
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:  # a pickled object of some class: refused, since unpickling it could run code
            raise CheckpointError(
                f"cannot load {what} {path}: it holds a pickled {found.group(1)} object, and it is read with "
                "torch.load(weights_only=True), which accepts only tensors and plain containers (unpickling "
                "other objects could run code). If you trust the file, keep only its weights: python -c \"import "
                f"torch; c = torch.load('{path}', weights_only=False); torch.save({{k: c[k] for k in c if k in "
                "('model', 'config', 'num_classes', 'feature_extractor', 'classifier')}, 'weights.pth')\"") from exc
        first = text.splitlines()[0] if text else type(exc).__name__
        raise CheckpointError(f"cannot load {what} {path}: {first} (it is read with torch.load(weights_only=True): "
                              "only tensors and plain containers are accepted)") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a ripu_kernels {what} (a {type(obj).__name__}, not a dict)")
    return obj


# ------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, model, optimizer, iteration: int, config: dict, num_classes: int,
                    history: list) -> Path:
    return atomic_torch_save(path, {"kind": CHECKPOINT_KIND, "model": model.state_dict(),
                                    "optimizer": optimizer.state_dict(), "iteration": int(iteration),
                                    "config": config, "num_classes": int(num_classes), "history": history})


def read_checkpoint(path: str | os.PathLike, loaded: dict | None = None) -> dict:
    """The checkpoint dict at ``path`` (written by ``ripu train``), checked for the entries it must have."""
    ckpt = load_file(path) if loaded is None else loaded
    missing = [k for k in ("model", "config", "num_classes") if k not in ckpt]
    if ckpt.get("kind", CHECKPOINT_KIND) not in (CHECKPOINT_KIND, RESUME_KIND) or missing:
        raise CheckpointError(f"{path} is not a ripu_kernels checkpoint (missing {', '.join(missing) or 'kind'})")
    return ckpt


# ------------------------------------------------------------------------------------------- RNG state
def rng_state() -> dict:
    """torch, NumPy and Python RNG states as tensors and plain containers (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------ resume state
def resume_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / "checkpoints" / RESUME_NAME


def save_resume(out_dir: str | os.PathLike, state: dict) -> Path:
    return atomic_torch_save(resume_path(out_dir), {"kind": RESUME_KIND, **state, "rng": rng_state()})


def load_resume(out_dir: str | os.PathLike) -> dict:
    """The resume state of the run in ``out_dir`` (raises naming the file when there is none)."""
    path = resume_path(out_dir)
    if not path.is_file():
        raise CheckpointError(f"resume: {path} not found; {out_dir} has no resumable run (a run writes it "
                              "every train.checkpoint_every iterations and at every active round)")
    state = load_file(path, "resume checkpoint")
    if state.get("kind") != RESUME_KIND:
        raise CheckpointError(f"resume: {path} is not a ripu_kernels resume checkpoint")
    return state
