"""``ripu import-labels EXPORT [--from PATH] [--format F] [--strict]``: annotators' labels into the state.

1. Read: ``PATH`` (default ``EXPORT/labels/``) in one of the formats (``auto`` detects it): ``png`` (label-id PNGs
   named by image id or by file name), ``cvat-mask`` (Segmentation mask 1.1 folder or zip), ``cvat`` (CVAT for
   images 1.1 XML, or a zip / folder holding it), ``coco`` (COCO JSON, or a zip / folder holding it),
   ``label-studio`` (Label Studio's JSON export). Each labelled image becomes a label map at the original size
   (or, for PNGs, at the label size), matched to a queried image by name (``Matcher``).
2. Check everything before writing anything: sizes, class ids and colours (unknown ones are refused naming the
   image, the file and the value), labels outside the queried regions (ignored and counted; refused with
   ``strict``), the state's ledger having the round, no clash with labels already revealed.
3. Resize to the label resolution exactly as ground truth is (nearest, ``geometry.Grid.to_label``), keep the
   queried pixels only, and union them into ``STATE/labels/<id>.png``; the ledger's round entry of each image
   gets ``labelled`` (non-void pixels). Importing the same labels again changes nothing.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..active.ledger import Ledger
from ..active.store import MaskStore
from ..errors import LabelImportError
from ..io import read_png
from .classes import IGNORE_INDEX, ClassTable
from .export import load_manifest, state_of
from .geometry import Grid
from .sources import Tree, decode_png, read_json

IMPORT_FORMATS = ("auto", "png", "cvat-mask", "cvat", "coco", "label-studio")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio prefixes uploaded file names with 8 hex digits


def _stem(name: str) -> str:
    name = name.replace("\\", "/").lstrip("./") if name.startswith("./") else name.replace("\\", "/")
    last = name.rsplit("/", 1)[-1]
    return name[: -(len(last) - last.rfind("."))] if "." in last else name


class Matcher:
    """Finds the queried image a name in an annotators' file refers to: its id, its file name (with or without
    extension), a path ending in its file name, or a unique base name (Label Studio's upload prefix dropped)."""

    def __init__(self, entries: list[dict]):
        self.entries = entries
        self.ids = {e["id"]: e for e in entries}
        self.exact: dict[str, dict] = {}
        base: dict[str, list] = {}
        for e in entries:
            for key in (e["id"], e["file"], _stem(e["file"])):
                self.exact.setdefault(key, e)
            base.setdefault(_stem(e["file"]).rsplit("/", 1)[-1], []).append(e)
        self.base = {k: v[0] for k, v in base.items() if len(v) == 1}

    def by_id(self, image_id: str):
        return self.ids.get(image_id)

    def find(self, name: str):
        name = str(name).replace("\\", "/")
        stem = _stem(name)
        for key in (name, stem):
            if key in self.exact:
                return self.exact[key]
        parts = stem.split("/")
        for k in range(1, len(parts)):
            hit = self.exact.get("/".join(parts[k:]))
            if hit is not None:
                return hit
        last = parts[-1]
        return self.base.get(last) or self.base.get(_UPLOAD_PREFIX.sub("", last))


class Report:
    def __init__(self):
        self.unmatched_files: list[str] = []

    def unmatched(self, where: str) -> None:
        self.unmatched_files.append(where)


def detect_format(tree: Tree) -> str:
    names = tree.names
    low = [n.lower() for n in names]
    if any(n.split("/")[-1] == "labelmap.txt" for n in low) or any("segmentationclass/" in f"/{n}" for n in low):
        return "cvat-mask"
    if any(n.endswith(".xml") for n in low):
        return "cvat"
    jsons = [n for n in names if n.lower().endswith(".json")]
    if jsons:
        from .label_studio import is_export

        doc = read_json(tree.read(jsons[0]), tree.where(jsons[0]))
        return "label-studio" if is_export(doc) else "coco"
    if any(n.endswith(".png") for n in low):
        return "png"
    raise LabelImportError(f"import-labels: cannot tell the format of {tree.path} (no labelmap.txt, .xml, .json or "
                           ".png); give --format")


def read_pngs(tree: Tree, classes, matcher: Matcher, header: dict, report: Report) -> dict:
    """Label-id PNGs: single-channel train ids (255 = not labelled), at the original or the label size."""
    out = {}
    for name in tree.names:
        if not name.lower().endswith(".png"):
            continue
        where = tree.where(name)
        entry = matcher.find(name)
        if entry is None:
            report.unmatched(where)
            continue
        sizes = [(entry["width"], entry["height"]), (entry["label_width"], entry["label_height"])]
        arr = decode_png(tree.read(name), where, sizes)
        if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
            raise LabelImportError(f"import-labels: {where} (image {entry['id']!r}) is a {arr.dtype} image of shape "
                                   f"{arr.shape}; expected a single-channel uint8 PNG of train ids (255 = not "
                                   "labelled)")
        out[entry["id"]] = (arr, where)
    return out


def _first(mask: np.ndarray) -> str:
    r, c = np.argwhere(mask)[0]
    return f"row {r}, col {c}"


def import_labels(export_dir, source=None, fmt: str = "auto", state_dir=None, strict: bool = False) -> dict:
    """Validate every labelled image of ``source``, then reveal them into the state; returns a report dict."""
    from . import coco, cvat, cvat_mask, label_studio

    export_dir = Path(export_dir)
    meta = load_manifest(export_dir)
    state = Path(state_dir) if state_dir else state_of(export_dir, meta)
    ledger_path = state / "ledger.json"
    if not ledger_path.is_file():
        raise LabelImportError(f"import-labels: {ledger_path} not found; {state} is not the state of this export "
                               "(give --out STATE)")
    ledger = Ledger.load(ledger_path, meta["mode"], int(meta["k"]))
    classes = ClassTable(tuple(c["name"] for c in meta["classes"]), tuple(tuple(c["color"]) for c in meta["classes"]))
    ncls, rnd = len(classes), int(meta["round"])
    entries = meta["images"]
    matcher = Matcher(entries)
    src = Path(source) if source else export_dir / "labels"
    if fmt not in IMPORT_FORMATS:
        raise LabelImportError(f"import-labels: unknown format {fmt!r}; choose from {', '.join(IMPORT_FORMATS)}")
    if not src.exists():
        if source is None:
            return {"images": 0, "pixels": 0, "outside": 0, "missing": [e["id"] for e in entries], "empty": [],
                    "unmatched": [],
                    "state_dir": str(state), "format": "png", "source": str(src), "per_image": {}}
        raise FileNotFoundError(f"import-labels: {src} not found")
    tree = Tree(src)
    try:
        fmt = detect_format(tree) if fmt == "auto" else fmt
        readers = {"png": read_pngs, "cvat-mask": cvat_mask.read, "cvat": cvat.read, "coco": coco.read,
                   "label-studio": label_studio.read}
        report = Report()
        given = readers[fmt](tree, classes, matcher, meta, report)
    finally:
        tree.close()
    store = MaskStore(state)
    todo, empty, outside_total, per_image = [], [], 0, {}
    for entry in entries:
        if entry["id"] not in given:
            continue
        arr, where = given[entry["id"]]
        image_id = entry["id"]
        label_hw, original_hw = (entry["label_height"], entry["label_width"]), (entry["height"], entry["width"])
        bad = (arr != IGNORE_INDEX) & (arr >= ncls)
        if bad.any():
            value = int(arr[tuple(np.argwhere(bad)[0])])
            raise LabelImportError(f"import-labels: {where} (image {image_id!r}) has class id {value} at "
                                   f"{_first(bad)}; ids must be 0..{ncls - 1} or 255 (not labelled)")
        query = read_png(export_dir / entry["mask"]) > 0
        if query.shape != label_hw:
            raise LabelImportError(f"import-labels: {export_dir / entry['mask']} does not match image {image_id!r}")
        grid = Grid(label_hw, original_hw)
        asked = grid.to_original(query) if arr.shape == original_hw else query
        outside = (arr != IGNORE_INDEX) & ~asked
        n_out = int(outside.sum())
        if n_out and strict:
            raise LabelImportError(f"import-labels: {where} labels {n_out} pixel(s) outside the queried regions of "
                                   f"image {image_id!r} (first at {_first(outside)}); with --strict only the "
                                   f"queried pixels (the mask {entry['mask']}) may be labelled")
        kept = np.where(asked, arr, IGNORE_INDEX)
        lab = grid.to_label(kept) if arr.shape == original_hw and not grid.identity else kept
        lab = np.where(query, lab, IGNORE_INDEX).astype(np.uint8)
        if not ledger.has_round(image_id, rnd):
            raise LabelImportError(f"import-labels: the ledger {ledger_path} has no round {rnd} for image "
                                   f"{image_id!r}; this export does not belong to that state folder")
        old = store.labels(image_id, label_hw)
        clash = (lab != IGNORE_INDEX) & (old != IGNORE_INDEX) & (old != lab)
        if clash.any():
            r, c = np.argwhere(clash)[0]
            raise LabelImportError(f"import-labels: {where} gives class {int(lab[r, c])} at row {r}, col {c} (label "
                                   f"resolution) of image {image_id!r}, already revealed as {int(old[r, c])}; "
                                   "revealed labels are never overwritten")
        if not (lab != IGNORE_INDEX).any():
            empty.append(image_id)  # nothing labelled (e.g. an untouched image of a CVAT task): not imported
            continue
        todo.append((image_id, label_hw, lab))
        outside_total += n_out
        per_image[image_id] = {"file": where, "labelled": int((lab != IGNORE_INDEX).sum()), "outside": n_out}
    pixels = 0
    for image_id, shape, lab in todo:  # everything checked: now write
        revealed = lab != IGNORE_INDEX
        store.update(image_id, revealed, lab, store.active(image_id, shape))
        ledger.set_labelled(image_id, rnd, int(revealed.sum()))
        pixels += int(revealed.sum())
    if todo:
        ledger.save(ledger_path)
    done = {t[0] for t in todo}
    missing = [e["id"] for e in entries if e["id"] not in done and not ledger.images.get(e["id"], {}).get(
        "rounds", {}).get(str(rnd), {}).get("labelled")]
    return {"images": len(todo), "pixels": pixels, "outside": outside_total, "missing": missing, "empty": empty,
            "unmatched": report.unmatched_files, "state_dir": str(state), "format": fmt, "source": str(src),
            "per_image": per_image}
