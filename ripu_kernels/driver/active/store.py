"""The mask store: per-image revealed labels and suppression masks in a state folder.

``STATE/labels/<id>.png``   uint8 revealed labels (train ids), 255 where nothing is revealed (or the truth is void)
``STATE/active/<id>.png``   uint8 suppression mask (255 = no window centre may be picked here any more)

Image ids are stable strings that may contain ``/`` (they become sub-folders). Revealed labels are only ever
added (a union, never overwritten); the suppression mask is written before the labels, so a crash in between
loses budget but never reveals twice.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import AcquisitionError, DataError
from ..io import atomic_save_png, read_png

IGNORE_INDEX = 255


def image_relpath(image_id: str) -> str:
    """The relative path (without extension) under which files of ``image_id`` are stored; refuses ``..`` etc."""
    parts = str(image_id).replace("\\", "/").split("/")
    if not image_id or any(p in ("", ".", "..") for p in parts):
        raise AcquisitionError(f"mask store: image id {image_id!r} is not a safe relative name")
    return "/".join(parts)


CACHE_IMAGES = 256  # masks of this many images kept in memory (each file is written before it is cached)


class _Recent(OrderedDict):
    """A dict that keeps its ``maxsize`` most recently used entries (the files hold everything)."""

    def __init__(self, maxsize: int):
        super().__init__()
        self.maxsize = maxsize

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)


class MaskStore:
    """Revealed labels and suppression masks under ``root`` (see the module docstring); cached in memory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        # bounded: at the original 1024x2048 label size a mask is 2 MiB, and a round touches every image
        self._labels: _Recent = _Recent(CACHE_IMAGES)
        self._active: _Recent = _Recent(CACHE_IMAGES)

    def label_path(self, image_id: str) -> Path:
        return self.root / "labels" / (image_relpath(image_id) + ".png")

    def active_path(self, image_id: str) -> Path:
        return self.root / "active" / (image_relpath(image_id) + ".png")

    def _read(self, path: Path, shape: tuple[int, int], image_id: str) -> np.ndarray | None:
        if not path.exists():
            return None
        try:
            arr = read_png(path)
        except DataError as exc:
            raise AcquisitionError(f"mask store: {exc} (image {image_id!r})") from exc
        if arr.shape != tuple(shape) or arr.dtype != np.uint8:
            raise AcquisitionError(f"mask store: {path} is a {arr.dtype} array of shape {arr.shape} but image "
                                   f"{image_id!r} has labels of {shape[1]}x{shape[0]} (uint8 expected)")
        return arr

    def labels(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """Revealed labels (uint8, 255 elsewhere) of ``image_id`` at label size ``shape`` = (H, W)."""
        if image_id not in self._labels:
            arr = self._read(self.label_path(image_id), shape, image_id)
            self._labels[image_id] = arr if arr is not None else np.full(shape, IGNORE_INDEX, np.uint8)
        return self._labels[image_id]

    def active(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """Suppression mask (bool) of ``image_id``."""
        if image_id not in self._active:
            arr = self._read(self.active_path(image_id), shape, image_id)
            self._active[image_id] = arr > 0 if arr is not None else np.zeros(shape, bool)
        return self._active[image_id]

    def update_active(self, image_id: str, active: np.ndarray) -> None:
        """Add ``active`` to the stored suppression mask (selection without an oracle)."""
        act = self.active(image_id, active.shape) | active
        atomic_save_png(self.active_path(image_id), act.astype(np.uint8) * 255)
        self._active[image_id] = act

    def update(self, image_id: str, selected: np.ndarray, truth: np.ndarray, active: np.ndarray) -> int:
        """Reveal ``truth`` inside ``selected`` (union with what was revealed), store ``active``; pixels selected."""
        shape = selected.shape
        if truth.shape != shape:
            raise AcquisitionError(f"oracle: the label of image {image_id!r} is {truth.shape[1]}x{truth.shape[0]}, "
                                   f"the selection is {shape[1]}x{shape[0]}")
        old = self.labels(image_id, shape)
        new = old.copy()
        take = selected & (old == IGNORE_INDEX)
        new[take] = truth[take].astype(np.uint8)
        act = self.active(image_id, shape) | active
        # suppression first: a crash in between loses budget, it never reveals twice or overwrites labels
        atomic_save_png(self.active_path(image_id), act.astype(np.uint8) * 255)
        atomic_save_png(self.label_path(image_id), new)
        self._labels[image_id], self._active[image_id] = new, act
        return int(selected.sum())

    def revealed_batch(self, ids: list[str], shape: tuple[int, int], stored_shapes=None):
        """(B, H, W) int64 tensor of the revealed labels of ``ids`` (255 where nothing is revealed).

        With ``stored_shapes`` (one (H, W) per id: the masks are kept at the labels' original size), each is
        read at its stored size and resized to ``shape`` by nearest neighbour (PIL's, as the authors).
        """
        import torch

        from ..data.transforms import resize_label

        if stored_shapes is None:
            stored_shapes = [shape] * len(ids)
        out = [resize_label(self.labels(i, tuple(s)), (shape[1], shape[0])) for i, s in zip(ids, stored_shapes)]
        return torch.from_numpy(np.stack(out).astype(np.int64))
