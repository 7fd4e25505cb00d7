"""Label Studio: tasks with the queried regions as predictions out; a Label Studio JSON export back.

Export (``label-studio/``):

``config.xml``   the labeling config: ``<Image name="image">``, the regions as ``<RectangleLabels name="query">``
                 and the classes (with colours) as ``<PolygonLabels name="label">``
``tasks.json``   one task per image: ``data.image`` = ``/data/local-files/?d=<file>`` (Label Studio's local
                 storage with its document root at ``images_root``), ``data.ripu_id``, and one prediction whose
                 ``result`` holds a ``rectanglelabels`` region per query: ``x``, ``y``, ``width``, ``height`` in
                 percent of the image, ``original_width``/``original_height`` in pixels

Import: Label Studio's "JSON" export (a list of tasks with ``annotations``): ``polygonlabels`` (points in
percent) and ``rectanglelabels`` of our classes are painted in result order (of each task's latest annotation
that was not cancelled); the ``query`` rectangles are skipped. Its "COCO" export is read by ``coco``.
Tasks are matched by ``data.ripu_id``, else by the image URL's file name.
"""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from xml.sax.saxutils import quoteattr

from ..errors import LabelImportError
from ..io import atomic_write_text
from .classes import QUERY_NAME, hex_color
from .raster import Canvas, box_mask, polygons_mask

URL_PREFIX = "/data/local-files/?d="


def config_xml(header: dict, classes) -> str:
    rows = ["<View>", '  <Image name="image" value="$image" zoom="true"/>',
            '  <RectangleLabels name="query" toName="image" canRotate="false">',
            f'    <Label value="{QUERY_NAME}" background="{hex_color(header["query"]["color"])}"/>',
            "  </RectangleLabels>", '  <PolygonLabels name="label" toName="image" strokeWidth="1" opacity="0.5">']
    rows += [f"    <Label value={quoteattr(n)} background=\"{hex_color(c)}\"/>"
             for n, c in zip(classes.names, classes.colors)]
    rows += ["  </PolygonLabels>", "</View>"]
    return "\n".join(rows) + "\n"


def task(entry: dict, header: dict) -> dict:
    w, h = entry["width"], entry["height"]
    result = []
    for j, reg in enumerate(entry["regions"]):
        x0, y0, x1, y1 = reg["box"]
        result.append({"id": f"q{j}", "from_name": "query", "to_name": "image", "type": "rectanglelabels",
                       "origin": "prediction", "original_width": w, "original_height": h, "image_rotation": 0,
                       "value": {"x": 100.0 * x0 / w, "y": 100.0 * y0 / h, "width": 100.0 * (x1 - x0) / w,
                                 "height": 100.0 * (y1 - y0) / h, "rotation": 0,
                                 "rectanglelabels": [QUERY_NAME]}})
    return {"data": {"image": URL_PREFIX + urllib.parse.quote(entry["file"]), "ripu_id": entry["id"],
                     "ripu_round": header["round"], "ripu_file": entry["file"]},
            "predictions": [{"model_version": f"ripu-round-{header['round']}", "score": 1.0, "result": result}]}


def write(export_dir: Path, header: dict, classes, entries: list[dict]) -> Path:
    root = export_dir / "label-studio"
    atomic_write_text(root / "config.xml", config_xml(header, classes))
    tasks = [task(e, header) for e in entries]
    return atomic_write_text(root / "tasks.json", json.dumps(tasks, indent=1) + "\n")


def is_export(doc) -> bool:
    return isinstance(doc, list) and all(isinstance(t, dict) and "data" in t for t in doc[:20])


def _entry_of(t: dict, matcher):
    data = t.get("data") or {}
    if data.get("ripu_id") is not None:
        entry = matcher.by_id(str(data["ripu_id"]))
        if entry is not None:
            return entry
    url = str(data.get("image", ""))
    if "?d=" in url:
        url = url.split("?d=", 1)[1]
    return matcher.find(urllib.parse.unquote(url))


def read(tree, classes, matcher, header, report) -> dict:
    from .sources import read_json

    lookup = classes.lookup()
    out = {}
    docs = [n for n in tree.names if n.lower().endswith(".json")]
    for name in docs:
        where = tree.where(name)
        doc = read_json(tree.read(name), where)
        if not is_export(doc):
            raise LabelImportError(f"import-labels: {where} is not a Label Studio JSON export (a list of tasks)")
        for t in doc:
            anns = [a for a in (t.get("annotations") or []) if not (a.get("was_cancelled") or a.get("skipped"))]
            if not anns:
                continue
            entry = _entry_of(t, matcher)
            if entry is None:
                report.unmatched(f"{where}: task {t.get('id')} ({(t.get('data') or {}).get('image')!r})")
                continue
            ann = max(anns, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
            h, w = entry["height"], entry["width"]
            canvas = Canvas(h, w)
            for k, r in enumerate(ann.get("result") or []):
                kind, value = r.get("type"), r.get("value") or {}
                what = f"{where}: task {t.get('id')} (image {entry['id']!r}), result #{k}"
                names = value.get(kind) if isinstance(value.get(kind), list) else []
                if kind not in ("polygonlabels", "rectanglelabels"):
                    if kind in ("brushlabels",):
                        raise LabelImportError(f"import-labels: {what} is a brush stroke; draw polygons, or export "
                                               "masks another way (not supported here)")
                    continue
                if not names or names[0].lower() == QUERY_NAME:
                    continue
                label = names[0]
                if label.lower() not in lookup:
                    raise LabelImportError(f"import-labels: {what} has unknown class {label!r}; classes are "
                                           f"{', '.join(classes.names)} (and background/void)")
                ow, oh = r.get("original_width", w), r.get("original_height", h)
                if (int(ow), int(oh)) != (w, h):
                    raise LabelImportError(f"import-labels: {what} was drawn on a {ow}x{oh} image; the file we "
                                           f"exported is {w}x{h}")
                try:
                    if kind == "polygonlabels":
                        pts = [c for x, y in value["points"] for c in (float(x) * w / 100.0, float(y) * h / 100.0)]
                        mask = polygons_mask([pts], h, w, what)
                    else:
                        if float(value.get("rotation", 0) or 0) != 0:
                            raise LabelImportError(f"import-labels: {what} is a rotated rectangle; not supported")
                        x, y = float(value["x"]) * w / 100.0, float(value["y"]) * h / 100.0
                        mask = box_mask([x, y, x + float(value["width"]) * w / 100.0,
                                         y + float(value["height"]) * h / 100.0], h, w, what)
                except (KeyError, TypeError, ValueError) as exc:
                    raise LabelImportError(f"import-labels: {what}: malformed ({exc!r})") from None
                canvas.paint(mask, lookup[label.lower()])
            if canvas.painted:
                out[entry["id"]] = (canvas.labels, where)
    return out
