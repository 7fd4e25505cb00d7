"""Crash-safe commits of an acquisition round: the journal and the batch writer.

A batch of picks is *committed* by an atomic journal (``*.journal.npz``: the ledger after the batch plus the
batch's selections, revealed truth and suppression masks) before the ledger and masks are written; the journal
is removed once they are. A restart replays a leftover journal (mask updates are unions, so replaying is
idempotent), then skips every image the ledger already has for the round: no image is selected twice, nothing
revealed is overwritten, and a crash never exceeds the budget.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import AcquisitionError
from ..io import atomic_save_png, atomic_write_bytes
from .ledger import Ledger
from .store import MaskStore, image_relpath


@dataclass
class Pick:
    """What one image got in one round: the selection, the new suppression mask, the centres and the truth."""

    id: str
    index: int
    selected: np.ndarray          # bool (H, W): pixels revealed this round
    active: np.ndarray            # bool (H, W): suppression mask after this round
    centers: np.ndarray           # int64 (picks, 2): (row, col) in pick order
    truth: np.ndarray | None      # the oracle's labels (H, W), or None without an oracle


class Journal:
    """Crash journal of one acquisition: ``commit`` before the ledger, ``clear`` after the masks."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def commit(self, ledger: Ledger, picks: list[Pick]) -> None:
        arrays = {"ledger": np.frombuffer(json.dumps(ledger.to_dict()).encode("utf-8"), np.uint8),
                  "ids": np.frombuffer(json.dumps([p.id for p in picks]).encode("utf-8"), np.uint8)}
        for j, p in enumerate(picks):
            arrays[f"selected_{j}"] = p.selected.astype(bool)
            arrays[f"active_{j}"] = p.active.astype(bool)
            if p.truth is not None:
                arrays[f"truth_{j}"] = np.asarray(p.truth).astype(np.int64)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path, buf.getvalue())  # the commit point of the batch

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def recover(self, ledger: Ledger, ledger_path: str | os.PathLike, store: MaskStore,
                selection_dir: str | os.PathLike | None = None) -> int:
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
        ledger.save(ledger_path)
        for j, image_id in enumerate(ids):
            sel, act = data[f"selected_{j}"], data[f"active_{j}"]
            truth = data.get(f"truth_{j}")
            _write_masks(store, image_id, sel, act, truth, selection_dir)
        self.clear()
        return len(ids)


def _write_masks(store: MaskStore, image_id: str, selected, active, truth, selection_dir) -> None:
    if truth is not None:
        store.update(image_id, selected, truth, active)
    else:
        store.update_active(image_id, active)
    if selection_dir is not None:
        atomic_save_png(Path(selection_dir) / (image_relpath(image_id) + ".png"), selected.astype(np.uint8) * 255)


class BatchWriter:
    """Persists each batch of picks in the crash-safe order: listeners, journal, ledger, masks, journal cleared.

    ``listeners`` (e.g. an annotator export) see ``(ledger, picks)`` before the commit; ``selection_dir``, when
    given, also gets ``<id>.png`` with this round's selection (255 = selected).
    """

    def __init__(self, store: MaskStore, ledger_path: str | os.PathLike | None, journal: Journal | None = None,
                 selection_dir: str | os.PathLike | None = None,
                 listeners: tuple[Callable[[Ledger, list[Pick]], None], ...] = ()):
        self.store, self.ledger_path, self.journal = store, ledger_path, journal
        self.selection_dir, self.listeners = selection_dir, tuple(listeners)

    def write(self, ledger: Ledger, picks: list[Pick]) -> None:
        for listener in self.listeners:
            listener(ledger, picks)
        if self.journal is not None:
            self.journal.commit(ledger, picks)
        # the ledger is saved before the masks: a crash in between loses budget, never exceeds it
        if self.ledger_path is not None:
            ledger.save(self.ledger_path)
        for p in picks:
            _write_masks(self.store, p.id, p.selected, p.active, p.truth, self.selection_dir)
        if self.journal is not None:
            self.journal.clear()
