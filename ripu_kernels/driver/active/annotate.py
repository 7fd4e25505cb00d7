"""Human annotators: export the queried regions of a round, import the labelled PNGs back.

``ripu select ... --export DIR`` writes, for the images of the round (every shard into the same DIR):

``DIR/regions.json``        the round (state folder, round, mode, k, classes) and per image its queried regions:
                            ``{"id", "image", "width", "height", "mask", "label", "regions": [{"center": [row, col],
                            "box": [x0, y0, x1, y1] (inclusive pixel bounds, clipped), "pixels"}]}``
``DIR/queries/<id>.json``   the same entry per image (written as the round goes; regions.json is assembled from them)
``DIR/masks/<id>.png``      uint8, 255 on the pixels to label, 0 elsewhere

Annotators write ``DIR/labels/<id>.png``: uint8 train ids (``0..num_classes-1``) inside the mask, 255 for
"not labelled / void". ``ripu import-labels DIR`` checks every label file first (size, class ids, nothing
outside the queried regions, no disagreement with labels already revealed) and only then unions them into
``STATE/labels/<id>.png``, recording ``labelled`` (non-void pixels) in the ledger's round entry. Images
without a label file yet are reported and left for a later import; importing again is harmless.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DataError, LabelImportError
from ..io import atomic_save_png, atomic_write_json, read_png
from .commit import Pick
from .ledger import Ledger
from .store import IGNORE_INDEX, MaskStore, image_relpath

EXPORT_VERSION = 1


def region_boxes(centers: np.ndarray, radius: int, height: int, width: int) -> list[dict]:
    """One dict per pick: its centre, its clipped inclusive box ``[x0, y0, x1, y1]`` and its pixel count."""
    out = []
    for row, col in np.asarray(centers).reshape(-1, 2).tolist():
        y0, y1 = max(0, row - radius), min(height - 1, row + radius)
        x0, x1 = max(0, col - radius), min(width - 1, col + radius)
        out.append({"center": [int(row), int(col)], "box": [x0, y0, x1, y1], "pixels": (x1 - x0 + 1) * (y1 - y0 + 1)})
    return out


class Exporter:
    """A listener of an acquisition's :class:`~ripu_kernels.driver.active.commit.BatchWriter` that writes the
    per-image query files of the round."""

    def __init__(self, export_dir, state_dir, round_idx: int, mode: str, k: int, radius: int, num_classes: int,
                 dataset=None, class_names=()):
        self.dir = Path(export_dir)
        self.header = {"version": EXPORT_VERSION, "state_dir": str(Path(state_dir).resolve()), "round": round_idx,
                       "mode": mode, "k": k, "num_classes": num_classes, "class_names": list(class_names),
                       "labels_format": "uint8 PNG of train ids inside the mask, 255 = not labelled / void"}
        self.radius, self.dataset = radius, dataset

    def __call__(self, ledger: Ledger, picks: list[Pick]) -> None:
        for pick in picks:
            sel = pick.selected
            h, w = sel.shape
            name = image_relpath(pick.id)
            files = getattr(self.dataset, "files", None)
            entry = {"id": pick.id, "image": files[pick.index] if files else None, "width": w, "height": h,
                     "mask": f"masks/{name}.png", "label": f"labels/{name}.png",
                     "regions": region_boxes(pick.centers, self.radius, h, w)}
            atomic_save_png(self.dir / "masks" / f"{name}.png", sel.astype(np.uint8) * 255)
            atomic_write_json(self.dir / "queries" / f"{name}.json", entry)

    def finish(self) -> Path:
        """(Re)assemble ``regions.json`` from every query file in the folder (any shard's)."""
        entries = []
        qdir = self.dir / "queries"
        for f in sorted(qdir.rglob("*.json")) if qdir.is_dir() else []:
            entries.append(json.loads(f.read_text(encoding="utf-8")))
        entries.sort(key=lambda e: e["id"])
        return atomic_write_json(self.dir / "regions.json", {**self.header, "images": entries})


def _read_png(path: Path) -> np.ndarray:
    try:
        arr = read_png(path)
    except DataError as exc:
        raise LabelImportError(f"import-labels: {exc}") from exc
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise LabelImportError(f"import-labels: {path} is a {arr.dtype} image of shape {arr.shape}; expected a "
                               "single-channel uint8 PNG of train ids (255 = not labelled)")
    return arr


def load_export(export_dir) -> dict:
    path = Path(export_dir) / "regions.json"
    if not path.is_file():
        raise FileNotFoundError(f"import-labels: {path} not found (written by `ripu select --export DIR`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LabelImportError(f"import-labels: {path} is not valid JSON: {exc}") from exc
    if meta.get("version") != EXPORT_VERSION:
        raise LabelImportError(f"import-labels: {path} has unsupported version {meta.get('version')!r}")
    return meta


def import_labels(export_dir, state_dir=None) -> dict:
    """Validate every label file of the export, then reveal them into the state; returns counts."""
    export_dir = Path(export_dir)
    meta = load_export(export_dir)
    state = Path(state_dir) if state_dir else Path(meta["state_dir"])
    ledger_path = state / "ledger.json"
    ledger = Ledger.load(ledger_path, meta["mode"], int(meta["k"]))
    store = MaskStore(state)
    ncls, rnd = int(meta["num_classes"]), int(meta["round"])
    todo, missing = [], []
    for entry in meta["images"]:
        image_id, shape = entry["id"], (int(entry["height"]), int(entry["width"]))
        lab_path = export_dir / entry["label"]
        if not lab_path.is_file():
            missing.append(image_id)
            continue
        lab = _read_png(lab_path)
        if lab.shape != shape:
            raise LabelImportError(f"import-labels: {lab_path} is {lab.shape[1]}x{lab.shape[0]}, but image "
                               f"{image_id!r} was queried at {shape[1]}x{shape[0]}")
        bad = (lab != IGNORE_INDEX) & (lab >= ncls)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise LabelImportError(f"import-labels: {lab_path} has class id {int(lab[r, c])} at row {r}, col {c}; "
                               f"ids must be 0..{ncls - 1} or 255 (not labelled)")
        query = _read_png(export_dir / entry["mask"]) > 0
        outside = (lab != IGNORE_INDEX) & ~query
        if outside.any():
            r, c = np.argwhere(outside)[0]
            raise LabelImportError(f"import-labels: {lab_path} labels {int(outside.sum())} pixel(s) outside the queried "
                               f"regions of image {image_id!r} (first at row {r}, col {c}); only pixels inside "
                               f"{entry['mask']} may be labelled (255 elsewhere)")
        if not ledger.has_round(image_id, rnd):
            raise LabelImportError(f"import-labels: the ledger {ledger_path} has no round {rnd} for image {image_id!r}; "
                               "this export does not belong to that state folder")
        old = store.labels(image_id, shape)
        clash = (lab != IGNORE_INDEX) & (old != IGNORE_INDEX) & (old != lab)
        if clash.any():
            r, c = np.argwhere(clash)[0]
            raise LabelImportError(f"import-labels: {lab_path} gives class {int(lab[r, c])} at row {r}, col {c} of image "
                               f"{image_id!r}, already revealed as {int(old[r, c])}; revealed labels are never "
                               "overwritten")
        todo.append((image_id, shape, lab))
    pixels = 0
    for image_id, shape, lab in todo:  # everything checked: now write
        given = lab != IGNORE_INDEX
        store.update(image_id, given, lab, store.active(image_id, shape))
        ledger.set_labelled(image_id, rnd, int(given.sum()))
        pixels += int(given.sum())
    ledger.save(ledger_path)
    return {"images": len(todo), "pixels": pixels, "missing": missing, "state_dir": str(state)}
