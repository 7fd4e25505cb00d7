"""Export the queried regions of a round for people: our manifest plus the files annotation tools import.

``EXPORT/`` (``ripu select ... --export EXPORT --format F[,F...]``; ``OUT/queries/round_R`` of a training run
with ``active.oracle: human``):

``regions.json``          the manifest ``ripu import-labels`` reads: state folder, round, mode, ``k``, the classes
                          (id, name, colour) with ``background`` (void) and ``query``, where the images are
                          (``images_root``), the coordinate convention, and per image (sorted by id)::

                            {"id", "file" (image file under images_root), "width", "height" (of that file),
                             "label_width", "label_height" (acquisition resolution), "scale": [sx, sy]
                             (original / label), "mask", "label", "pixels" (label resolution),
                             "original_pixels", "regions": [{"center": [x, y], "box": [x0, y0, x1, y1],
                             "label_center", "label_box", "pixels"}]}

                          ``center``/``box`` are in the original file's pixels, ``label_*`` at the label
                          resolution; boxes have exclusive upper bounds (``annotate.geometry``).
``queries/<id>.json``     the entry of one image (shards write their own; ``regions.json`` is assembled from them)
``masks/<id>.png``        uint8, 255 on the queried pixels, at the label resolution
``images/<file>``         the images, only for a dataset without image files (the embedded synthetic data)
``cvat/``                 ``--format cvat``: ``annotations.xml`` (CVAT for images 1.1, a ``query`` box per region)
                          and ``labels.json`` (the labels for CVAT's raw label editor)
``cvat-mask/``            ``--format cvat-mask``: Segmentation mask 1.1 (``labelmap.txt``, ``SegmentationClass/``,
                          ``SegmentationObject/``, ``ImageSets/Segmentation/default.txt``) of the queries
``coco/``                 ``--format coco``: ``annotations/instances_default.json`` (COCO 1.0), one ``query``
                          annotation per region with its RLE mask (pycocotools' compressed counts)
``label-studio/``         ``--format label-studio``: ``tasks.json`` (a task per image, the regions as
                          ``rectanglelabels`` predictions in percent of the image) and ``config.xml``
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import LabelImportError
from ..io import atomic_save_png, atomic_write_json
from ..active.store import image_relpath
from .classes import QUERY_COLOR, QUERY_NAME, VOID_COLOR, VOID_NAME, ClassTable
from .geometry import Grid, window_box

EXPORT_VERSION = 2
FORMATS = ("cvat", "cvat-mask", "coco", "label-studio")
COORDINATES = ("[x, y] = (column, row) in pixel-edge coordinates of the original image file: pixel (r, c) covers "
               "[c, c+1) x [r, r+1); boxes [x0, y0, x1, y1] cover columns x0..x1-1 and rows y0..y1-1 (exclusive "
               "upper bounds); a centre is the middle of its pixel's cell; label_* at the label resolution")
LABELS_FORMAT = ("labels/<id>.png: single-channel uint8 train ids inside the queried regions, 255 = not labelled "
                 "/ void, at the original image size (width x height) or at the label size")


def parse_formats(text: str | list | tuple | None) -> tuple[str, ...]:
    """``"cvat,coco"`` / ``["cvat"]`` / ``"all"`` / ``"png"`` or empty -> the tool formats to write."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in (i.strip().lower() for i in items):
        if item in ("", "png", "none"):
            continue
        if item == "all":
            out.extend(FORMATS)
        elif item in FORMATS:
            out.append(item)
        else:
            raise ValueError(f"export: unknown format {item!r}; choose from {', '.join(FORMATS)}, all, png")
    return tuple(dict.fromkeys(out))


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class ImageSource:
    """Where the annotator's image of each dataset index is: the dataset's file, or one we write."""

    def __init__(self, dataset, export_dir: Path):
        self.dataset, self.dir = dataset, export_dir
        self.has_files = dataset is not None and callable(getattr(dataset, "image_path", None))
        if self.has_files:
            root = getattr(dataset, "image_root", None) or getattr(dataset, "root", None)
            if not root:
                paths = [dataset.image_path(i) for i in range(len(dataset))]
                root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else "."
            self.root = str(Path(root).resolve())
        else:
            self.root = str((export_dir / "images").resolve())

    def original(self, index: int, image_id: str, label_hw) -> tuple[str, tuple[int, int]]:
        """(file name under ``root``, (height, width) of the file); writes the file when the dataset has none."""
        if self.has_files:
            from ..data.transforms import image_size

            path = str(Path(self.dataset.image_path(index)).resolve())
            w, h = image_size(path)
            return os.path.relpath(path, self.root).replace(os.sep, "/"), (h, w)
        name = image_relpath(image_id) + ".png"
        if self.dataset is not None:
            img = to_uint8_image(self.dataset.load_image(index))
            atomic_save_png(self.dir / "images" / name, img)
            return name, img.shape[:2]
        return name, tuple(label_hw)


def image_entry(image_id: str, file: str, original_hw, selected: np.ndarray, centers, radius: int) -> dict:
    """The manifest entry of one image: sizes, scale and its regions in both pixel spaces."""
    lh, lw = selected.shape
    grid = Grid((lh, lw), original_hw)
    regions = []
    for row, col in np.asarray(centers).reshape(-1, 2).tolist():
        lbox = window_box(int(row), int(col), radius, lh, lw)
        x0, y0, x1, y1 = lbox
        regions.append({"center": grid.centre(int(row), int(col)), "box": grid.box(lbox),
                        "label_center": [col + 0.5, row + 0.5], "label_box": lbox,
                        "pixels": int(selected[y0:y1, x0:x1].sum())})
    name = image_relpath(image_id)
    return {"id": image_id, "file": file, "width": int(original_hw[1]), "height": int(original_hw[0]),
            "label_width": int(lw), "label_height": int(lh), "scale": [grid.scale[0], grid.scale[1]],
            "mask": f"masks/{name}.png", "label": f"labels/{name}.png", "pixels": int(selected.sum()),
            "original_pixels": int(grid.to_original(selected).sum()), "regions": regions}


class Exporter:
    """A listener of an acquisition's batch writer: writes each image's query files as the round goes;
    :meth:`finish` assembles ``regions.json`` and the tool formats from every image's file (any shard's)."""

    def __init__(self, export_dir, state_dir, round_idx: int, mode: str, k: int, radius: int,
                 classes: ClassTable, dataset=None, formats=(), iteration: int | None = None):
        self.dir = Path(export_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.classes, self.radius, self.dataset = classes, radius, dataset
        self.formats = parse_formats(formats)
        self.images = ImageSource(dataset, self.dir)
        state = Path(state_dir).resolve()
        self.header = {
            "version": EXPORT_VERSION, "state_dir": str(state),
            "state_dir_relative": os.path.relpath(state, self.dir.resolve()), "round": int(round_idx),
            "iteration": iteration, "mode": mode, "k": int(k), "radius": int(radius),
            "num_classes": len(classes), "classes": classes.to_json(),
            "void": {"name": VOID_NAME, "color": list(VOID_COLOR), "id": 255},
            "query": {"name": QUERY_NAME, "color": list(QUERY_COLOR)},
            "images_root": self.images.root, "formats": list(self.formats), "coordinates": COORDINATES,
            "labels_format": LABELS_FORMAT}

    def __call__(self, ledger, picks) -> None:
        for pick in picks:
            sel = np.asarray(pick.selected, bool)
            if not sel.any():
                continue  # nothing to label in this image this round
            file, original_hw = self.images.original(pick.index, pick.id, sel.shape)
            entry = image_entry(pick.id, file, original_hw, sel, pick.centers, self.radius)
            atomic_save_png(self.dir / entry["mask"], sel.astype(np.uint8) * 255)
            atomic_write_json(self.dir / "queries" / f"{image_relpath(pick.id)}.json", entry)

    def entries(self, ledger=None) -> list[dict]:
        qdir = self.dir / "queries"
        out = []
        for f in sorted(qdir.rglob("*.json")) if qdir.is_dir() else []:
            entry = json.loads(f.read_text(encoding="utf-8"))
            if ledger is None or ledger.has_round(entry["id"], self.header["round"]):
                out.append(entry)  # a batch that never committed (killed before its journal) is left out
        return sorted(out, key=lambda e: e["id"])

    def finish(self, ledger=None) -> Path:
        """(Re)write ``regions.json`` and every requested format from the per-image files; its path."""
        from . import coco, cvat, cvat_mask, label_studio

        entries = self.entries(ledger)
        writers = {"cvat": cvat.write, "cvat-mask": cvat_mask.write, "coco": coco.write,
                   "label-studio": label_studio.write}
        for fmt in self.formats:
            writers[fmt](self.dir, self.header, self.classes, entries)
        return atomic_write_json(self.dir / "regions.json", {**self.header, "images": entries})


def load_manifest(export_dir) -> dict:
    """``EXPORT/regions.json``, checked for the fields the importer uses."""
    path = Path(export_dir) / "regions.json"
    if not path.is_file():
        raise FileNotFoundError(f"import-labels: {path} not found (written by `ripu select --export DIR` or a "
                                "training run with active.oracle=human)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LabelImportError(f"import-labels: {path} is not valid JSON: {exc}") from exc
    if meta.get("version") != EXPORT_VERSION:
        raise LabelImportError(f"import-labels: {path} has unsupported version {meta.get('version')!r} "
                               f"(this ripu writes and reads version {EXPORT_VERSION})")
    return meta


def state_of(export_dir, meta: dict) -> Path:
    """The state folder an export belongs to: relative to the export when that exists, else the absolute one."""
    rel = meta.get("state_dir_relative")
    if rel:
        cand = (Path(export_dir) / rel).resolve()
        if cand.is_dir():
            return cand
    return Path(meta["state_dir"])
