"""Shared machinery of the real-dataset loaders: list files, pairing images with labels, clear errors."""
from __future__ import annotations

import os

import numpy as np

from .base import IGNORE_INDEX, SegmentationDataset
from ..errors import DataError
from ..io import read_label_png
from .transforms import image_size, map_labels, read_image, resize_label

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def require_dir(path: str, what: str) -> str:
    if not path:
        raise DataError(f"{what}: no folder configured")
    if not os.path.isdir(path):
        raise DataError(f"{what}: folder not found: {path}")
    return path


def read_list(list_file: str, what: str) -> list[str]:
    """Non-empty, non-comment lines of a list file (first whitespace-separated field of each)."""
    if not os.path.isfile(list_file):
        raise DataError(f"{what}: list file not found: {list_file}")
    with open(list_file, encoding="utf-8") as fh:
        names = [line.split()[0] for line in fh if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise DataError(f"{what}: list file {list_file} is empty")
    return names


def scan(folder: str, suffix: str) -> list[str]:
    """Paths relative to ``folder`` of the files ending in ``suffix``, sorted."""
    out = []
    for root, _, files in os.walk(folder):
        for f in files:
            if f.endswith(suffix):
                out.append(os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/"))
    return sorted(out)


class PairedFolderDataset(SegmentationDataset):
    """Images paired with label files; ``pairs`` = [(id, image path, label path)], labels mapped by ``mapping``.

    Images are resized to ``size_wh`` (``interpolation``: bicubic as the authors, or bilinear) and labels too
    (PIL's nearest, as the authors) unless ``native_labels``. Missing files are all listed in one error.
    """

    interpolation = "bicubic"
    MAX_LISTED = 20  # missing files named in one error (then a count)

    def __init__(self, name: str, pairs: list[tuple[str, str, str]], mapping: dict[int, int] | None,
                 size_wh: tuple[int, int] | None, num_classes: int, class_names, hide_labels: bool = False,
                 native_labels: bool = False, check_pairs: bool = True):
        super().__init__(hide_labels=hide_labels)
        self.name, self.num_classes, self.class_names = name, num_classes, tuple(class_names)
        if not pairs:
            raise DataError(f"{name}: no images found")
        if check_pairs:
            problems = []
            for image_id, img, lab in pairs:
                if not os.path.isfile(img):
                    problems.append(f"image {image_id!r} not found: {img}")
                elif not os.path.isfile(lab):
                    problems.append(f"image {img} has no label file (expected {lab})")
            if problems:
                more = len(problems) - self.MAX_LISTED
                raise DataError(f"{name}: {len(problems)} of {len(pairs)} images are missing files: "
                                + "; ".join(problems[:self.MAX_LISTED]) + (f"; and {more} more" if more > 0 else ""))
        self.pairs = pairs
        self.mapping = mapping
        self.size_wh = size_wh
        # native_labels: labels keep their stored resolution (evaluation at full label resolution)
        self.label_size_wh = None if native_labels else size_wh
        self.same_size = not native_labels or size_wh is None

    def __len__(self) -> int:
        return len(self.pairs)

    def image_id(self, index: int) -> str:
        return self.pairs[index][0]

    def image_path(self, index: int) -> str:
        """The image file as stored (what an annotator opens)."""
        return self.pairs[index][1]

    def load_image(self, index: int) -> np.ndarray:
        return read_image(self.pairs[index][1], self.size_wh, self.interpolation)

    def label_hw(self, index: int) -> tuple[int, int]:
        """(H, W) of what :meth:`load_label` returns, from the file header when labels keep their size."""
        if self.label_size_wh is not None:
            return int(self.label_size_wh[1]), int(self.label_size_wh[0])
        w, h = image_size(self.pairs[index][2])
        return h, w

    def load_label(self, index: int) -> np.ndarray:
        return resize_label(self.load_label_native(index), self.label_size_wh)

    def load_label_native(self, index: int) -> np.ndarray:
        """Train ids at the label file's own resolution (255 = ignore)."""
        _, img_path, lab_path = self.pairs[index]
        raw = read_label_png(lab_path).astype(np.int64)
        img_wh = image_size(img_path)
        if (raw.shape[1], raw.shape[0]) != tuple(img_wh):
            raise DataError(f"{self.name}: size mismatch: image {img_path} is {img_wh[0]}x{img_wh[1]} but its "
                            f"label {lab_path} is {raw.shape[1]}x{raw.shape[0]}")
        label = map_labels(raw, self.mapping) if self.mapping is not None else raw
        return np.where((label >= 0) & (label < self.num_classes), label, IGNORE_INDEX)
