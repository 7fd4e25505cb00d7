"""CVAT for images 1.1 (XML): a ``query`` box per queried region out; polygons, boxes and masks back.

Export: ``cvat/annotations.xml`` with the task's labels (our classes, ``background`` and ``query``, with colours)
and per image (``name`` = its file under ``images_root``, ``width``/``height`` of the file) a
``<box label="query" xtl ytl xbr ybr>`` per region (pixel-edge coordinates, exclusive ``xbr``/``ybr``), plus
``cvat/labels.json`` for the raw label editor of a CVAT project or task.

Import: an ``annotations.xml`` (or a zip / folder holding one: CVAT's "CVAT for images 1.1" export):
``<polygon>``, ``<box>`` and ``<mask>`` (CVAT's row-major RLE in ``left/top/width/height``) shapes of our
classes are painted in ``z_order``, then document order; ``query`` shapes are skipped. The XML is parsed
without DTDs or entities (``annotate.sources``).
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from ..errors import LabelImportError
from ..io import atomic_write_text
from . import rle
from .classes import QUERY_NAME, VOID_NAME, hex_color
from .raster import Canvas, box_mask, polygons_mask

XML = "annotations.xml"


def _fmt(v: float) -> str:
    return f"{float(v):.2f}"


def labels_json(header: dict, classes) -> list[dict]:
    out = [{"name": n, "color": hex_color(c), "type": "any", "attributes": []}
           for n, c in zip(classes.names, classes.colors)]
    out.append({"name": VOID_NAME, "color": hex_color(header["void"]["color"]), "type": "any", "attributes": []})
    out.append({"name": QUERY_NAME, "color": hex_color(header["query"]["color"]), "type": "rectangle",
                "attributes": []})
    return out


def write(export_dir: Path, header: dict, classes, entries: list[dict]) -> Path:
    labels = labels_json(header, classes)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>", "  <meta>",
             "    <task>", "      <id>0</id>", f"      <name>ripu round {header['round']}</name>",
             f"      <size>{len(entries)}</size>", "      <mode>annotation</mode>", "      <overlap>0</overlap>",
             "      <bugtracker></bugtracker>", f"      <created>{now}</created>", f"      <updated>{now}</updated>",
             "      <subset>default</subset>", "      <start_frame>0</start_frame>",
             f"      <stop_frame>{max(len(entries) - 1, 0)}</stop_frame>", "      <frame_filter></frame_filter>",
             "      <labels>"]
    for lab in labels:
        lines += ["        <label>", f"          <name>{_text(lab['name'])}</name>",
                  f"          <color>{lab['color']}</color>", f"          <type>{lab['type']}</type>",
                  "          <attributes>", "          </attributes>", "        </label>"]
    lines += ["      </labels>", "    </task>", f"    <dumped>{now}</dumped>", "  </meta>"]
    for i, e in enumerate(entries):
        lines.append(f"  <image id=\"{i}\" name={quoteattr(e['file'])} width=\"{e['width']}\" "
                     f"height=\"{e['height']}\">")
        for reg in e["regions"]:
            x0, y0, x1, y1 = reg["box"]
            lines.append(f"    <box label=\"{QUERY_NAME}\" source=\"auto\" occluded=\"0\" xtl=\"{_fmt(x0)}\" "
                         f"ytl=\"{_fmt(y0)}\" xbr=\"{_fmt(x1)}\" ybr=\"{_fmt(y1)}\" z_order=\"0\">\n    </box>")
        lines.append("  </image>")
    lines.append("</annotations>")
    out = atomic_write_text(export_dir / "cvat" / XML, "\n".join(lines) + "\n")
    atomic_write_text(export_dir / "cvat" / "labels.json", json.dumps(labels, indent=2) + "\n")
    return out


def _text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def find_documents(tree) -> list[str]:
    return [n for n in tree.names if n.lower().endswith(".xml")]


def read(tree, classes, matcher, header, report) -> dict:
    from .sources import parse_xml

    lookup = classes.lookup()
    out: dict = {}
    docs = find_documents(tree)
    if not docs:
        raise LabelImportError(f"import-labels: {tree.path} holds no CVAT .xml file")
    for name in docs:
        where = tree.where(name)
        root = parse_xml(tree.read(name), where)
        if root.tag != "annotations":
            raise LabelImportError(f"import-labels: {where} is not CVAT for images XML (root <{root.tag}>)")
        for image in root.iter("image"):
            iname = image.get("name", "")
            entry = matcher.find(iname)
            if entry is None:
                if len(image):
                    report.unmatched(f"{where}: image {iname!r}")
                continue
            h, w = entry["height"], entry["width"]
            try:
                size = (int(image.get("height", h)), int(image.get("width", w)))
            except ValueError:
                raise LabelImportError(f"import-labels: {where}: image {iname!r} has a bad width/height") from None
            if size != (h, w):
                raise LabelImportError(f"import-labels: {where}: image {iname!r} (image {entry['id']!r}) is "
                                       f"{size[1]}x{size[0]} there, but the file we exported is {w}x{h}")
            shapes = []
            for order, el in enumerate(image):
                if el.tag not in ("polygon", "box", "mask"):
                    continue
                label = (el.get("label") or "").strip()
                if label.lower() == QUERY_NAME:
                    continue
                if label.lower() not in lookup:
                    raise LabelImportError(f"import-labels: {where}: image {iname!r} (image {entry['id']!r}) has a "
                                           f"{el.tag} of unknown class {label!r}; classes are "
                                           f"{', '.join(classes.names)} (and background/void)")
                try:
                    z = int(el.get("z_order", "0"))
                except ValueError:
                    z = 0
                shapes.append((z, order, el, lookup[label.lower()]))
            if not shapes:
                continue
            canvas = Canvas(h, w)
            for _, order, el, value in sorted(shapes, key=lambda s: (s[0], s[1])):
                what = f"{where}: image {iname!r}, {el.tag} #{order}"
                try:
                    if el.tag == "polygon":
                        pts = [float(v) for pair in el.get("points", "").split(";") for v in pair.split(",")]
                        mask = polygons_mask([pts], h, w, what)
                    elif el.tag == "box":
                        mask = box_mask([el.get(k) for k in ("xtl", "ytl", "xbr", "ybr")], h, w, what)
                    else:
                        left, top = int(el.get("left")), int(el.get("top"))
                        mw, mh = int(el.get("width")), int(el.get("height"))
                        if left < 0 or top < 0 or left + mw > w or top + mh > h:
                            raise LabelImportError(f"import-labels: {what} lies outside the {w}x{h} image")
                        mask = np.zeros((h, w), bool)
                        mask[top:top + mh, left:left + mw] = rle.cvat_decode(el.get("rle", ""), mh, mw, what)
                except (TypeError, ValueError) as exc:
                    raise LabelImportError(f"import-labels: {what}: {exc}") from None
                canvas.paint(mask, value)
            out[entry["id"]] = (canvas.labels, where)
    return out
