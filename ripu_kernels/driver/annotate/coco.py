"""COCO 1.0 (as CVAT, datumaro and pycocotools read it): the queries out, annotators' labels back.

Export: ``coco/annotations/instances_default.json`` with ``categories`` (the classes as ids 1..C in train-id
order, then ``query`` as C+1; each with ``color``), ``images`` (``file_name`` under ``images_root``, the file's
``width``/``height``) and one ``query`` annotation per region: its box ``bbox [x, y, w, h]`` and its mask as an
RLE (``{"size": [h, w], "counts": str}``, pycocotools' compressed encoding, ``iscrowd: 1`` as COCO marks RLE
masks), at the original image size.

Import: any COCO instances JSON (or a zip / folder holding one, e.g. CVAT's "COCO 1.0" export or Label Studio's
COCO export): categories are matched to our classes by name (``background``/``void``... mean void, ``query``
is skipped); segmentations may be polygons, uncompressed or compressed RLE; an annotation without a
segmentation paints its ``bbox``. Annotations are painted in file order, later over earlier.
"""
from __future__ import annotations

import datetime
from pathlib import Path

from ..errors import LabelImportError
from ..io import atomic_write_json
from . import rle
from .classes import QUERY_NAME, hex_color
from .raster import Canvas, box_mask, polygons_mask

ANNOTATIONS = "annotations/instances_default.json"


def write(export_dir: Path, header: dict, classes, entries: list[dict]) -> Path:
    cats = [{"id": i + 1, "name": n, "supercategory": "", "color": hex_color(c)}
            for i, (n, c) in enumerate(zip(classes.names, classes.colors))]
    query_id = len(classes) + 1
    cats.append({"id": query_id, "name": QUERY_NAME, "supercategory": "", "color": hex_color(header["query"]["color"])})
    images, anns = [], []
    for i, e in enumerate(entries, start=1):
        h, w = e["height"], e["width"]
        images.append({"id": i, "file_name": e["file"], "width": w, "height": h, "license": 0, "flickr_url": "",
                       "coco_url": "", "date_captured": 0, "ripu_id": e["id"]})
        for reg in e["regions"]:
            x0, y0, x1, y1 = reg["box"]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": query_id, "iscrowd": 1,
                         "segmentation": rle.encode_box(reg["box"], h, w), "area": (x1 - x0) * (y1 - y0),
                         "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "attributes": {"occluded": False, "ripu_round": header["round"]}})
    doc = {"info": {"description": f"ripu queries of round {header['round']}", "version": "1.0",
                    "year": datetime.date.today().year, "contributor": "ripu_kernels", "url": "",
                    "date_created": datetime.date.today().isoformat()},
           "licenses": [{"id": 0, "name": "", "url": ""}], "categories": cats, "images": images,
           "annotations": anns}
    return atomic_write_json(export_dir / "coco" / ANNOTATIONS, doc)


def find_documents(tree) -> list[str]:
    """The COCO JSON files of a tree (``annotations/*.json`` first, else every ``*.json``)."""
    names = [n for n in tree.names if n.lower().endswith(".json")]
    inst = [n for n in names if n.split("/")[-2:-1] == ["annotations"]]
    return inst or names


def read(tree, classes, matcher, header, report) -> dict:
    """{entry id: (original-size label map, where)} of every queried image the COCO files label."""
    from .sources import read_json

    lookup = classes.lookup()
    out: dict = {}
    docs = find_documents(tree)
    if not docs:
        raise LabelImportError(f"import-labels: {tree.path} holds no COCO .json file")
    for name in docs:
        where = tree.where(name)
        doc = read_json(tree.read(name), where)
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "categories")):
            raise LabelImportError(f"import-labels: {where} is not a COCO instances file (needs 'images' and "
                                   "'categories' lists)")
        cats = {}
        for c in doc["categories"]:
            cname = str(c.get("name", "")).strip()
            if cname.lower() == QUERY_NAME:
                cats[c.get("id")] = None
            elif cname.lower() in lookup:
                cats[c.get("id")] = lookup[cname.lower()]
            else:
                cats[c.get("id")] = ("unknown", cname)
        images = {}
        for im in doc["images"]:
            entry = matcher.find(str(im.get("file_name", "")))
            if entry is None:
                report.unmatched(f"{where}: image {im.get('file_name')!r}")
                continue
            try:
                size = (int(im["height"]), int(im["width"]))
            except (KeyError, TypeError, ValueError):
                size = (entry["height"], entry["width"])
            if size != (entry["height"], entry["width"]):
                raise LabelImportError(f"import-labels: {where}: image {im.get('file_name')!r} (image {entry['id']!r}) "
                                       f"is {size[1]}x{size[0]} there, but the file we exported is "
                                       f"{entry['width']}x{entry['height']}")
            images[im.get("id")] = entry
        for ann in doc.get("annotations", []) or []:
            entry = images.get(ann.get("image_id"))
            if entry is None:
                continue
            cat = cats.get(ann.get("category_id"), ("unknown", f"category id {ann.get('category_id')}"))
            if cat is None:
                continue  # our query shapes (left in, or accepted predictions)
            if isinstance(cat, tuple):
                raise LabelImportError(f"import-labels: {where}: image {entry['id']!r} ({entry['file']}) has an "
                                       f"annotation of unknown class {cat[1]!r}; classes are "
                                       f"{', '.join(classes.names)} (and background/void)")
            h, w = entry["height"], entry["width"]
            what = f"{where}: annotation {ann.get('id')} of image {entry['id']!r}"
            segm = ann.get("segmentation")
            if isinstance(segm, dict):
                try:
                    mask = rle.decode(segm, what)
                except ValueError as exc:
                    raise LabelImportError(f"import-labels: {exc}") from None
                if mask.shape != (h, w):
                    raise LabelImportError(f"import-labels: {what}: RLE of size {list(mask.shape)}, the image is "
                                           f"[{h}, {w}]")
            elif isinstance(segm, list) and segm:
                mask = polygons_mask(segm, h, w, what)
            elif isinstance(ann.get("bbox"), list) and len(ann["bbox"]) == 4:
                x, y, bw, bh = ann["bbox"]
                mask = box_mask([x, y, float(x) + float(bw), float(y) + float(bh)], h, w, what)
            else:
                raise LabelImportError(f"import-labels: {what} has neither a segmentation nor a bbox")
            canvas = out.setdefault(entry["id"], (Canvas(h, w), where))[0]
            canvas.paint(mask, cat)
    return {k: (c.labels, where) for k, (c, where) in out.items()}
