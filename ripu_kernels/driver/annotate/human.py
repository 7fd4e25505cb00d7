"""``active.oracle: human``: a training run that asks people for the labels of every round.

At each round the run selects as usual but reveals nothing; the queries go to ``OUT/queries/round_R/`` in
``active.export_formats`` (``annotate.export``), the run saves its resume point and stops, printing where the
queries are and the next commands. ``ripu import-labels OUT/queries/round_R --from THEIR_EXPORT`` reveals the
people's labels into ``OUT/state``; ``ripu train --resume OUT`` checks that every queried image of the round
has labels (or ``--allow-missing-labels``) and continues from the round with them.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import LabelImportError
from .classes import ClassTable, class_names_for
from .export import Exporter

FORMAT_HELP = {
    "cvat-mask": ("CVAT", "cvat-mask/ (Segmentation mask 1.1): in a CVAT task of the images, Actions > Upload "
                          "annotations > Segmentation mask 1.1 (a zip of the folder); label the white 'query' "
                          "areas; export 'Segmentation mask 1.1'"),
    "cvat": ("CVAT", "cvat/annotations.xml (CVAT for images 1.1): the query boxes; labels from cvat/labels.json"),
    "coco": ("COCO tools", "coco/annotations/instances_default.json (COCO 1.0, RLE query masks)"),
    "label-studio": ("Label Studio", "label-studio/config.xml (labeling config) and label-studio/tasks.json "
                                     "(tasks with the query boxes as predictions); export COCO or JSON"),
}


def export_dir(out_dir, round_idx: int) -> Path:
    return Path(out_dir) / "queries" / f"round_{round_idx}"


def make_exporter(cfg, out_dir, state_dir, round_idx: int, budget, dataset, iteration: int) -> Exporter:
    classes = ClassTable.build(class_names_for(cfg, dataset))
    return Exporter(export_dir(out_dir, round_idx), state_dir, round_idx, budget.mode, budget.k, budget.radius,
                    classes, dataset, cfg.active.export_formats, iteration)


def _manifest(out_dir, round_idx: int) -> dict:
    path = export_dir(out_dir, round_idx) / "regions.json"
    if not path.is_file():
        raise LabelImportError(f"resume: round {round_idx} waits for labels but {path} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def unlabelled(out_dir, round_idx: int, ledger) -> list[str]:
    """Queried images of the round whose labels have not been imported yet."""
    meta = _manifest(out_dir, round_idx)
    return [e["id"] for e in meta["images"]
            if "labelled" not in ledger.images.get(e["id"], {}).get("rounds", {}).get(str(round_idx), {})]


def instructions(out_dir, round_idx: int, missing: list[str] | None = None) -> str:
    """What to do next, with the exact commands."""
    meta = _manifest(out_dir, round_idx)
    edir = export_dir(out_dir, round_idx)
    n_img = len(meta["images"])
    n_reg = sum(len(e["regions"]) for e in meta["images"])
    lines = [f"round {round_idx} waits for people: {n_reg} regions on {n_img} images to label "
             f"(iteration {meta.get('iteration')})",
             f"  queries: {edir}/ (regions.json: boxes and sizes per image; masks/<id>.png)",
             f"  images:  {meta['images_root']}"]
    for fmt in meta.get("formats", []):
        tool, what = FORMAT_HELP[fmt]
        lines.append(f"  {tool + ':':<13} {what}")
    if missing:
        lines.append(f"  still without labels: {len(missing)} of {n_img} images (e.g. {missing[0]!r})")
    lines += ["next:",
              f"  ripu import-labels {edir} --from EXPORT   # EXPORT = the tool's export: a zip, folder, .json or "
              ".xml (--strict refuses labels outside the queries)",
              f"  ripu train --resume {out_dir}"]
    return "\n".join(lines)
