"""Atomic file writes: a temporary file in the destination folder, fsync, then ``os.replace``.

A reader never sees a half-written mask, ledger or checkpoint: either the old file or the new one.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # some filesystems (or Windows) do not allow opening a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_WRITES = [0]


def _crash_point() -> None:
    """Test hook: ``RIPU_CRASH_AT=write:N`` SIGKILLs the process before its N-th atomic write."""
    spec = os.environ.get("RIPU_CRASH_AT", "")
    if spec.startswith("write:"):
        _WRITES[0] += 1
        if _WRITES[0] == int(spec[6:]):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def atomic_write(path: str | os.PathLike, writer: Callable[[io.BufferedWriter], None]) -> Path:
    """Write ``path`` atomically: ``writer(fileobj)`` fills a temporary file that then replaces ``path``."""
    _crash_point()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save a 2-D uint8 array (or H x W x 3 uint8) as PNG atomically."""
    from PIL import Image

    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"atomic_save_png: {path}: expected a uint8 array, got {array.dtype}")
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))
