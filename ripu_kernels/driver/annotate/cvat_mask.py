"""CVAT Segmentation mask 1.1 (Pascal VOC segmentation with a ``labelmap.txt``): queries out, labels back.

Export (``cvat-mask/``)::

    labelmap.txt                        # label:color_rgb:parts:actions, every colour: background (void,
                                        # 0,0,0) first, the classes, then query
    ImageSets/Segmentation/default.txt  # the image names without extension
    SegmentationClass/<name>.png        # RGB at the original size: query colour on the queried pixels
    SegmentationObject/<name>.png       # RGB: one VOC instance colour per region

Import: the same layout as a folder or a zip (CVAT's "Segmentation mask 1.1" export): each
``SegmentationClass/<name>.png`` (RGB or palette) is mapped to train ids through the export's own
``labelmap.txt`` (its names matched to our classes; without one, our colours): ``background`` and the other
void names are void, ``query`` is "not labelled". A colour the labelmap does not declare, or a label that is
not one of our classes, is refused, naming the image, the file and the value.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LabelImportError
from ..io import atomic_save_png, atomic_write_text
from ..io import read_png
from .classes import IGNORE_INDEX, QUERY_NAME, VOID_NAME, voc_color
from .geometry import Grid

LABELMAP = "labelmap.txt"
CLASS_DIR, OBJECT_DIR, LIST = "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation/default.txt"


def labelmap_text(header: dict, classes) -> str:
    rows = ["# label:color_rgb:parts:actions", f"{VOID_NAME}:{','.join(map(str, header['void']['color']))}::"]
    rows += [f"{n}:{','.join(map(str, c))}::" for n, c in zip(classes.names, classes.colors)]
    rows.append(f"{QUERY_NAME}:{','.join(map(str, header['query']['color']))}::")
    return "\n".join(rows) + "\n"


def item_name(entry: dict) -> str:
    return entry["file"].rsplit(".", 1)[0] if "." in entry["file"].rsplit("/", 1)[-1] else entry["file"]


def write(export_dir: Path, header: dict, classes, entries: list[dict]) -> Path:
    root = export_dir / "cvat-mask"
    query = np.array(header["query"]["color"], np.uint8)
    for e in entries:
        name = item_name(e)
        grid = Grid((e["label_height"], e["label_width"]), (e["height"], e["width"]))
        sel = read_png(export_dir / e["mask"]) > 0
        orig = grid.to_original(sel)
        cls = np.zeros((e["height"], e["width"], 3), np.uint8)
        cls[orig] = query
        obj = np.zeros_like(cls)
        for k, reg in enumerate(e["regions"], start=1):
            x0, y0, x1, y1 = reg["box"]
            part = np.zeros(orig.shape, bool)
            part[y0:y1, x0:x1] = orig[y0:y1, x0:x1]
            obj[part] = voc_color(k % 255 or 1)
        atomic_save_png(root / CLASS_DIR / f"{name}.png", cls)
        atomic_save_png(root / OBJECT_DIR / f"{name}.png", obj)
    atomic_write_text(root / LIST, "".join(item_name(e) + "\n" for e in entries))
    return atomic_write_text(root / LABELMAP, labelmap_text(header, classes))


def parse_labelmap(text: str, where: str) -> dict[str, tuple[int, int, int]]:
    out = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 2:
            raise LabelImportError(f"import-labels: {where}:{n}: expected 'name:r,g,b:parts:actions', got {line!r}")
        name, color = fields[0].strip(), fields[1].strip()
        if not color:
            continue
        try:
            rgb = tuple(int(v) for v in color.split(","))
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise LabelImportError(f"import-labels: {where}:{n}: label {name!r} has a bad colour {color!r}")
        out[name] = rgb
    return out


def colour_table(tree, classes, header: dict):
    """(rgb -> train id / 255 / None for query / ("unknown", name)); from the export's labelmap.txt if any."""
    lookup = classes.lookup()
    lm = [n for n in tree.names if n.split("/")[-1] == LABELMAP]
    table: dict = {}
    if lm:
        where = tree.where(lm[0])
        declared = parse_labelmap(tree.read(lm[0]).decode("utf-8", "replace"), where)
        for name, rgb in declared.items():
            key = name.lower()
            value = None if key == QUERY_NAME else lookup.get(key, ("unknown", name))
            if rgb in table and table[rgb] != value:
                raise LabelImportError(f"import-labels: {where}: colour {rgb} is declared for two labels")
            table[rgb] = value
    else:
        table[tuple(header["void"]["color"])] = IGNORE_INDEX
        table[tuple(header["query"]["color"])] = None
        for i, c in enumerate(classes.colors):
            table[tuple(c)] = i
    return table


def read(tree, classes, matcher, header, report) -> dict:
    from .sources import decode_png

    table = colour_table(tree, classes, header)
    pngs = [n for n in tree.names if f"/{CLASS_DIR}/" in f"/{n}" and n.lower().endswith(".png")]
    if not pngs:
        raise LabelImportError(f"import-labels: {tree.path} holds no {CLASS_DIR}/*.png (a CVAT Segmentation mask "
                               "1.1 export)")
    out = {}
    for name in pngs:
        item = name.split(f"{CLASS_DIR}/", 1)[1][:-4]
        where = tree.where(name)
        entry = matcher.find(item)
        if entry is None:
            report.unmatched(where)
            continue
        sizes = [(entry["width"], entry["height"])]
        arr = decode_png(tree.read(name), where, sizes, rgb=True)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise LabelImportError(f"import-labels: {where} (image {entry['id']!r}) is not a colour PNG")
        rgb = arr[..., :3]
        code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        labels = np.full(code.shape, IGNORE_INDEX, np.uint8)
        for value in np.unique(code):
            colour = (int(value) >> 16, (int(value) >> 8) & 255, int(value) & 255)
            target = table.get(colour, ("undeclared", None))
            if isinstance(target, tuple):
                r, c = np.argwhere(code == value)[0]
                what = (f"label {target[1]!r} (colour {colour}), which is not one of our classes"
                        if target[0] == "unknown" else f"colour {colour}, which labelmap.txt does not declare")
                raise LabelImportError(f"import-labels: {where} (image {entry['id']!r}) has {what}, first at row "
                                       f"{r}, col {c}; classes are {', '.join(classes.names)} (and background)")
            if target is not None:
                labels[code == value] = target
        out[entry["id"]] = (labels, where)
    return out
