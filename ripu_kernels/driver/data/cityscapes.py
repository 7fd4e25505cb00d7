"""Cityscapes (target domain) in its published layout::

    ROOT/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Label ids map to the 19 train ids (or the 16 shared with SYNTHIA); others become 255. A list file, if
given, holds image paths relative to ``leftImg8bit/<split>`` (``aachen/aachen_000000_000019_leftImg8bit.png``)
as in the authors' lists. Image ids are ``<city>/<city>_<seq>_<frame>``.
"""
from __future__ import annotations

import os

from .folders import PairedFolderDataset, read_list, require_dir, scan

CLASS_NAMES_19 = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                  "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                  "bicycle")
# Cityscapes labelIds -> 19 train ids
ID_TO_TRAINID_19 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# the 16 classes shared with SYNTHIA (no terrain, truck, train)
_KEEP_16 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18]
CLASS_NAMES_16 = tuple(CLASS_NAMES_19[i] for i in _KEEP_16)
ID_TO_TRAINID_16 = {lid: _KEEP_16.index(t) for lid, t in ID_TO_TRAINID_19.items() if t in _KEEP_16}

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


class Cityscapes(PairedFolderDataset):
    def __init__(self, root: str, split: str, list_file: str | None = None, size_wh=(1280, 640),
                 num_classes: int = 19, hide_labels: bool = False, native_labels: bool = False):
        if split not in ("train", "val", "test"):
            raise ValueError(f"cityscapes: split must be train, val or test, got {split!r}")
        if num_classes not in (16, 19):
            raise ValueError(f"cityscapes: num_classes must be 19 or 16, got {num_classes}")
        require_dir(root, "cityscapes (data.target_root)")
        img_dir = require_dir(os.path.join(root, "leftImg8bit", split), "cityscapes images")
        lab_dir = os.path.join(root, "gtFine", split)
        names = read_list(list_file, "cityscapes") if list_file else scan(img_dir, IMAGE_SUFFIX)
        pairs = []
        for rel in names:
            if not rel.endswith(IMAGE_SUFFIX):
                raise ValueError(f"cityscapes: {list_file or img_dir}: {rel!r} does not end in {IMAGE_SUFFIX}")
            stem = rel[: -len(IMAGE_SUFFIX)]
            pairs.append((stem, os.path.join(img_dir, rel), os.path.join(lab_dir, stem + LABEL_SUFFIX)))
        mapping = ID_TO_TRAINID_19 if num_classes == 19 else ID_TO_TRAINID_16
        names_ = CLASS_NAMES_19 if num_classes == 19 else CLASS_NAMES_16
        super().__init__(f"cityscapes-{split}", pairs, mapping, tuple(size_wh) if size_wh else None, num_classes,
                         names_, hide_labels=hide_labels, native_labels=native_labels)
        self.image_root = img_dir  # image file names of annotators' exports are relative to it
