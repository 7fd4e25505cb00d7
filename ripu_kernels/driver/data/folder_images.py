"""A plain folder of images (for ``ripu select``), optionally with train-id label PNGs of the same names."""
from __future__ import annotations

import os

import numpy as np

from .base import IGNORE_INDEX, SegmentationDataset
from .folders import IMAGE_EXTENSIONS, require_dir
from ..errors import DataError
from ..io import read_label_png
from .identity import image_id_from_relpath
from .transforms import image_size, read_image, resize_label


class ImageFolder(SegmentationDataset):
    """Every ``*.png``/``*.jpg`` under ``root`` (recursively); ids are the relative paths without extension and
    without a dataset's file-name suffix (``data.identity``: ``city/x_leftImg8bit.png`` is ``city/x``, as the
    Cityscapes loader names it). Two files with one id are refused.

    With ``labels_root`` the label of ``root/a/b.jpg`` is ``labels_root/a/b.png`` in train ids (255 = void).
    """

    def __init__(self, root: str, size_wh=None, labels_root: str | None = None, num_classes: int = 19,
                 class_names=(), native_labels: bool = False):
        super().__init__(hide_labels=labels_root is None)
        self.name = f"folder {root}"
        require_dir(root, "images folder")
        if labels_root:
            require_dir(labels_root, "labels folder")
        self.root, self.labels_root, self.size_wh = root, labels_root, tuple(size_wh) if size_wh else None
        self.num_classes, self.class_names = num_classes, tuple(class_names)
        # native_labels: selection and labels at each image's own size (active.label_size: original)
        self.native_labels = native_labels
        files = []
        for dirpath, _, names in os.walk(root):
            for n in names:
                if n.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/"))
        if not files:
            raise DataError(f"images folder {root}: no .png/.jpg images found")
        self.files = sorted(files)
        self._ids = [image_id_from_relpath(f) for f in self.files]
        seen: dict[str, str] = {}
        for f, image_id in zip(self.files, self._ids):
            if image_id in seen:
                raise DataError(f"images folder {root}: {seen[image_id]} and {f} are both image {image_id!r}; "
                                "keep one of them")
            seen[image_id] = f
        if labels_root:
            for f in self.files:
                if not os.path.isfile(self._label_path(f)):
                    raise DataError(f"image {os.path.join(root, f)} has no label file "
                                    f"(expected {self._label_path(f)})")

    def _label_path(self, rel: str) -> str:
        return os.path.join(self.labels_root, os.path.splitext(rel)[0] + ".png")

    def __len__(self) -> int:
        return len(self.files)

    def image_id(self, index: int) -> str:
        return self._ids[index]

    def image_path(self, index: int) -> str:
        """The image file as stored (what an annotator opens)."""
        return os.path.join(self.root, self.files[index])

    def load_image(self, index: int) -> np.ndarray:
        return read_image(os.path.join(self.root, self.files[index]), self.size_wh)

    def label_hw(self, index: int) -> tuple[int, int]:
        """(H, W) of the labels (and selection masks) of image ``index``."""
        if self.size_wh is not None and not self.native_labels:
            return int(self.size_wh[1]), int(self.size_wh[0])
        w, h = image_size(os.path.join(self.root, self.files[index]))
        return h, w

    def load_label(self, index: int) -> np.ndarray:
        if not self.labels_root:
            raise DataError(f"{self.name}: no labels folder was given")
        img = os.path.join(self.root, self.files[index])
        path = self._label_path(self.files[index])
        raw = read_label_png(path).astype(np.int64)
        wh = image_size(img)
        if (raw.shape[1], raw.shape[0]) != tuple(wh):
            raise DataError(f"size mismatch: image {img} is {wh[0]}x{wh[1]} but its label {path} is "
                            f"{raw.shape[1]}x{raw.shape[0]}")
        raw = np.where((raw >= 0) & (raw < self.num_classes), raw, IGNORE_INDEX)
        return raw if self.native_labels else resize_label(raw, self.size_wh)
