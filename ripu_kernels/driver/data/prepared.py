"""``ripu prepare DATASET ROOT``: what training needs from a source dataset's label folder, computed once.

The authors ship a per-dataset pickle of which classes each image contains (``datasets/generate_gtav_label_info.py``,
``generate_synthia_label_info.py``) for their class-balanced sampler; SYNTHIA's labels are 16-bit RGB PNGs they
decode on every load. ``ripu prepare`` writes, into ``OUT`` (default ``ROOT/ripu_prepared``; training finds it
through ``data.prepared_dir``, default the same folder):

``OUT/class_stats.json``  ``{"kind": "ripu-prepared", "version", "dataset", "root" (absolute), "num_files" (label
                          files in the label folder), "num_classes", "class_names", "ids", "pixels"}``: per image
                          (``ids[i]``) the pixel count of every train id at the label's own resolution
                          (``pixels[i][c]``); a class is *present* when its count is > 0, as the authors'
                          ``np.unique`` over the label.
``OUT/labels/<name>.png`` SYNTHIA only: 8-bit train-id copies (255 = void) of the 16-bit labels, read instead of
                          them (measured on this project's machine: 17 ms -> 4 ms per 1280x760 label decode).

Every file is written atomically and ``class_stats.json`` last, so an interrupted prepare leaves no manifest and
is simply run again. Output made for another root, or for a label folder that now holds another number of files,
is *stale*: loading it is an error that says so and names the command that rebuilds it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_save_png, atomic_write_json

KIND = "ripu-prepared"
VERSION = 1
STATS = "class_stats.json"
DATASETS = ("gtav", "synthia")


def default_dir(root: str) -> str:
    return os.path.join(root, "ripu_prepared")


def label_dir(dataset: str, root: str) -> str:
    """The label folder whose files ``prepare`` reads (and counts, for staleness)."""
    if dataset == "gtav":
        return os.path.join(root, "labels")
    from .synthia import data_root

    return os.path.join(data_root(root), "GT", "LABELS")


def count_label_files(dataset: str, root: str) -> int:
    from .folders import scan

    folder = label_dir(dataset, root)
    return len(scan(folder, ".png")) if os.path.isdir(folder) else 0


def _open(dataset: str, root: str, list_file: str | None):
    """The dataset at its stored resolution, reading the original label files."""
    if dataset == "gtav":
        from .gtav import GTAV

        return GTAV(root, list_file=list_file, size_wh=None)
    if dataset == "synthia":
        from .synthia import Synthia

        return Synthia(root, list_file=list_file, size_wh=None)
    raise DataError(f"prepare: DATASET must be one of {', '.join(DATASETS)}, got {dataset!r} (Cityscapes, the "
                    "target, needs no preparation)")


def _one(args) -> list[int]:
    """Pixel counts per class of one image (and, for SYNTHIA, its 8-bit copy); runs in worker processes too."""
    ds, index, copy_to = args
    lab = ds.load_label_native(index)
    valid = lab[(lab >= 0) & (lab < ds.num_classes)]
    counts = np.bincount(valid.ravel(), minlength=ds.num_classes)
    if copy_to is not None:
        atomic_save_png(copy_to, lab.astype(np.uint8))
    return [int(v) for v in counts]


def prepare(dataset: str, root: str, out: str | None = None, list_file: str | None = None, workers: int = 1,
            progress: bool = True) -> Path:
    """Compute (and write under ``out``) the class statistics and, for SYNTHIA, the 8-bit label copies.

    Returns the path of ``class_stats.json``.
    """
    from tqdm import tqdm

    ds = _open(dataset, root, list_file)
    out_dir = Path(out or default_dir(root))
    src_labels = label_dir(dataset, root)
    jobs = []
    for i in range(len(ds)):
        copy_to = None
        if dataset == "synthia":
            copy_to = out_dir / "labels" / os.path.relpath(ds.pairs[i][2], src_labels)
        jobs.append((ds, i, copy_to))
    stats_path = out_dir / STATS
    if stats_path.exists():  # the old manifest no longer describes what is being written
        stats_path.unlink()
    bar = tqdm(total=len(jobs), desc=f"prepare {dataset}", unit="img", disable=not progress)
    pixels = []
    try:
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                for counts in pool.map(_one, jobs, chunksize=64):
                    pixels.append(counts)
                    bar.update(1)
        else:
            for job in jobs:
                pixels.append(_one(job))
                bar.update(1)
    finally:
        bar.close()
    manifest = {"kind": KIND, "version": VERSION, "dataset": dataset, "root": os.path.realpath(root),
                "num_files": count_label_files(dataset, root), "num_classes": ds.num_classes,
                "class_names": list(ds.class_names), "ids": ds.ids, "pixels": pixels,
                "train_id_labels": "labels" if dataset == "synthia" else None}
    return atomic_write_json(stats_path, manifest)


@dataclass
class Prepared:
    """What ``ripu prepare`` wrote for one source dataset, checked to be current."""

    path: Path
    ids: list[str]
    pixels: np.ndarray            # (images, classes) int64
    train_id_labels: str | None   # folder of SYNTHIA's 8-bit copies

    def presence(self, ids: list[str]) -> np.ndarray:
        """(len(ids), classes) bool: which classes each of ``ids`` contains (errors name a missing image)."""
        row = {image_id: i for i, image_id in enumerate(self.ids)}
        missing = [i for i in ids if i not in row]
        if missing:
            raise DataError(f"{self.path}: no class statistics for {len(missing)} image(s) of this run, e.g. "
                            f"{missing[0]!r}; run `ripu prepare` again for this dataset and list")
        return self.pixels[[row[i] for i in ids]] > 0


def load_prepared(dataset: str, root: str, prepared_dir: str | None = None, required: bool = True,
                  why: str = "data.balanced_sampling") -> Prepared | None:
    """The prepared output for ``dataset`` at ``root`` (``None`` when absent and not ``required``).

    Raises :class:`DataError` when it is absent (and required), unreadable, or stale.
    """
    folder = Path(prepared_dir or default_dir(root))
    path = folder / STATS
    rebuild = f"`ripu prepare {dataset} {root}" + (f" --out {folder}`" if prepared_dir else "`")
    if not path.is_file():
        if not required:
            return None
        raise DataError(f"{why} needs the class statistics of {dataset}, but {path} does not exist; run {rebuild} "
                        "once (or set data.prepared_dir to where it wrote them)")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); run {rebuild} again") from exc
    if not isinstance(m, dict) or m.get("kind") != KIND or m.get("version") != VERSION:
        raise DataError(f"{path} is not a ripu prepare output of version {VERSION}; run {rebuild} again")
    if m["dataset"] != dataset:
        raise DataError(f"{path} was prepared for {m['dataset']}, not {dataset} (data.source); set "
                        f"data.prepared_dir or run {rebuild}")
    if os.path.realpath(root) != m["root"]:
        raise DataError(f"{path} is stale: it was prepared for the root {m['root']}, not "
                        f"{os.path.realpath(root)} (data.source_root); run {rebuild}")
    now = count_label_files(dataset, root)
    if now != m["num_files"]:
        raise DataError(f"{path} is stale: it was prepared for {m['num_files']} label files, "
                        f"{label_dir(dataset, root)} now holds {now}; run {rebuild}")
    pixels = np.asarray(m["pixels"], dtype=np.int64).reshape(len(m["ids"]), int(m["num_classes"]))
    labels = m.get("train_id_labels")
    return Prepared(path, list(m["ids"]), pixels, str(folder / labels) if labels else None)
