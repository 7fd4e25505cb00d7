"""GTAV (source domain) in its published layout::

    ROOT/images/00001.png   ROOT/labels/00001.png

Labels hold Cityscapes label ids (as palette indices); they map to the 19 train ids. A list file, if given,
holds file names (``00001.png``) as in the authors' lists. Image ids are the file stems.
"""
from __future__ import annotations

import os

from .cityscapes import CLASS_NAMES_19, ID_TO_TRAINID_19
from .folders import PairedFolderDataset, read_list, require_dir, scan


class GTAV(PairedFolderDataset):
    def __init__(self, root: str, list_file: str | None = None, size_wh=(1280, 720)):
        require_dir(root, "gtav (data.source_root)")
        img_dir = require_dir(os.path.join(root, "images"), "gtav images")
        lab_dir = require_dir(os.path.join(root, "labels"), "gtav labels")
        names = read_list(list_file, "gtav") if list_file else scan(img_dir, ".png")
        pairs = [(os.path.splitext(n)[0], os.path.join(img_dir, n), os.path.join(lab_dir, n)) for n in names]
        super().__init__("gtav", pairs, ID_TO_TRAINID_19, tuple(size_wh) if size_wh else None, 19, CLASS_NAMES_19)
