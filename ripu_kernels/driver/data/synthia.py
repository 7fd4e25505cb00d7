"""SYNTHIA-RAND-CITYSCAPES (source domain) in its published layout::

    ROOT/RGB/0000000.png   ROOT/GT/LABELS/0000000.png    (or ROOT/RAND_CITYSCAPES/RGB/..., the authors' layout)

Labels are 16-bit RGB PNGs whose red channel holds the SYNTHIA class id (``driver.io.read_label_png``
reads them, with OpenCV); they map to the 16 classes shared
with Cityscapes. A list file, if given, holds file names (``0000000.png``). Image ids are the file stems.
"""
from __future__ import annotations

import os

from .cityscapes import CLASS_NAMES_16
from .folders import PairedFolderDataset, read_list, require_dir, scan

# SYNTHIA class ids -> the 16 train ids (road, sidewalk, building, wall, fence, pole, light, sign, vegetation,
# sky, person, rider, car, bus, motorcycle, bicycle)
ID_TO_TRAINID_16 = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10, 17: 11, 8: 12, 19: 13,
                    12: 14, 11: 15}


class Synthia(PairedFolderDataset):
    """``train_id_labels``: a folder of 8-bit train-id copies of the labels (written by ``ripu prepare synthia``),
    read instead of the 16-bit files (a quarter of the decode time)."""

    def __init__(self, root: str, list_file: str | None = None, size_wh=(1280, 720),
                 train_id_labels: str | None = None):
        root = data_root(root)
        img_dir = require_dir(os.path.join(root, "RGB"), "synthia images")
        lab_dir = require_dir(train_id_labels or os.path.join(root, "GT", "LABELS"), "synthia labels")
        names = read_list(list_file, "synthia") if list_file else scan(img_dir, ".png")
        pairs = [(os.path.splitext(n)[0], os.path.join(img_dir, n), os.path.join(lab_dir, n)) for n in names]
        super().__init__("synthia", pairs, None if train_id_labels else ID_TO_TRAINID_16,
                         tuple(size_wh) if size_wh else None, 16, CLASS_NAMES_16)


def data_root(root: str) -> str:
    """The folder holding ``RGB/`` and ``GT/``: ``root`` itself, or ``root/RAND_CITYSCAPES`` (the authors' layout)."""
    require_dir(root, "synthia (data.source_root)")
    nested = os.path.join(root, "RAND_CITYSCAPES")
    if not os.path.isdir(os.path.join(root, "RGB")) and os.path.isdir(nested):
        return nested
    return root
