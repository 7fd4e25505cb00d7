"""SYNTHIA-RAND-CITYSCAPES (source domain) in its published layout::

    ROOT/RGB/0000000.png   ROOT/GT/LABELS/0000000.png

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
    def __init__(self, root: str, list_file: str | None = None, size_wh=(1280, 760)):
        require_dir(root, "synthia (data.source_root)")
        img_dir = require_dir(os.path.join(root, "RGB"), "synthia images")
        lab_dir = require_dir(os.path.join(root, "GT", "LABELS"), "synthia labels")
        names = read_list(list_file, "synthia") if list_file else scan(img_dir, ".png")
        pairs = [(os.path.splitext(n)[0], os.path.join(img_dir, n), os.path.join(lab_dir, n)) for n in names]
        super().__init__("synthia", pairs, ID_TO_TRAINID_16, tuple(size_wh) if size_wh else None, 16, CLASS_NAMES_16)
