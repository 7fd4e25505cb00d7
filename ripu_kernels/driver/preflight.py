"""Checks before the first iteration, so that a run does not fail (or silently waste GPU days) hours in.

``check_weights(cfg)``: a ResNet backbone needs its ImageNet weights (``model.pretrained``, a local torchvision
file such as ``resnet101-5d3b4d8f.pth``, the one the authors' configs name) unless ``model.init_checkpoint``
provides every weight; ``model.pretrained: none`` starts from random weights on purpose (with a warning). Without
this a paper config with an empty ``model.pretrained`` trains ResNet-101 from scratch (tried: 1.7 mIoU).

``preflight(datasets, decode)``: every image and label file of the datasets is opened (``data.preflight:
headers``, the default: the file headers and sizes; ``decode``: full decodes) and every problem is collected,
then reported in one :class:`DataError` that names each file: unreadable or truncated headers, labels of
another size than their image. Missing files are reported by the dataset constructors, all at once too.
"""
from __future__ import annotations

import logging
import os

from .data.transforms import image_size
from .errors import ConfigError, DataError

log = logging.getLogger("ripu")

IMAGENET_FILES = {"resnet101": "resnet101-5d3b4d8f.pth", "resnet50": "resnet50-19c8e357.pth"}
MAX_LISTED = 20


def check_weights(cfg) -> None:
    """Refuse to train a ResNet from random weights unless the config says so (see the module docstring)."""
    m = cfg.model
    if m.backbone not in IMAGENET_FILES or m.init_checkpoint:
        return
    expected = IMAGENET_FILES[m.backbone]
    url = f"https://download.pytorch.org/models/{expected}"
    if m.pretrained == "none":
        log.warning("model.pretrained=none: %s starts from random weights (the paper starts from ImageNet weights, "
                    "%s)", m.backbone, expected)
        return
    if not m.pretrained:
        raise ConfigError(f"model.pretrained is empty: {m.backbone} would train from random weights. The paper "
                          f"starts from torchvision's ImageNet weights {expected} ({url}; nothing is downloaded "
                          f"here): set model.pretrained=/path/to/{expected}, or model.pretrained=none to train from "
                          "random weights on purpose")
    if not os.path.isfile(m.pretrained):
        raise ConfigError(f"model.pretrained: no such file {m.pretrained!r} (expected torchvision's ImageNet "
                          f"{m.backbone} weights, {expected}, from {url}; or model.pretrained=none for random "
                          "weights)")


def _decoded(path: str, label: bool) -> tuple[int, int]:
    """(width, height) of a fully decoded image or label file."""
    from .data.transforms import read_image
    from .io import read_label_png

    if label:
        arr = read_label_png(path)
    else:
        arr = read_image(path)
    return arr.shape[1], arr.shape[0]


def check_pair(image: str, label: str, decode: bool = False) -> str | None:
    """The problem with one (image, label) pair, or None."""
    read = (lambda p, lab: _decoded(p, lab)) if decode else (lambda p, lab: image_size(p))
    try:
        img_wh = read(image, False)
    except DataError as exc:
        return str(exc)
    try:
        lab_wh = read(label, True)
    except DataError as exc:
        return str(exc)
    if tuple(img_wh) != tuple(lab_wh):
        return (f"size mismatch: image {image} is {img_wh[0]}x{img_wh[1]} but its label {label} is "
                f"{lab_wh[0]}x{lab_wh[1]}")
    return None


def preflight(datasets, decode: bool = False, progress: bool = False) -> dict:
    """Check every (image, label) pair of ``datasets`` (those built from folders); raise one DataError listing every
    problem. Returns ``{"files": n, "problems": 0}``."""
    from tqdm import tqdm

    jobs = [(ds, p) for ds in datasets if ds is not None for p in getattr(ds, "pairs", ())]
    problems = []
    what = "decode" if decode else "headers"
    for ds, (image_id, image, label) in tqdm(jobs, desc=f"preflight ({what})", unit="img", disable=not progress,
                                             leave=False):
        problem = check_pair(image, label, decode)
        if problem:
            problems.append(f"{ds.name}: {problem}")
    if problems:
        more = len(problems) - MAX_LISTED
        raise DataError(f"preflight ({what}): {len(problems)} problem(s) in {len(jobs)} image/label pairs, before "
                        "training started: " + "; ".join(problems[:MAX_LISTED])
                        + (f"; and {more} more" if more > 0 else "")
                        + " (data.preflight=decode decodes every file; data.preflight=off skips this check)")
    if jobs:
        log.info("preflight (%s): %d image/label pairs readable, sizes match", what, len(jobs))
    return {"files": len(jobs), "problems": 0}
