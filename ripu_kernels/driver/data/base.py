"""The dataset interface of the driver.

A dataset is a list of images with stable string ids. ``__getitem__`` returns a dict with ``image``
(normalised float32 ``(3, H, W)``), ``index``, ``id`` and, unless the labels are hidden (target train:
only the simulated oracle may read them, through :meth:`load_label`), ``label`` (int64 ``(H, W)``, 255 =
ignore). Images and labels of one dataset share one size after the configured resize.
"""
from __future__ import annotations

import numpy as np
import torch

from .transforms import to_tensor

IGNORE_INDEX = 255


class SegmentationDataset(torch.utils.data.Dataset):
    name: str = "dataset"
    num_classes: int = 19
    class_names: tuple[str, ...] = ()

    def __init__(self, hide_labels: bool = False):
        self.hide_labels = hide_labels
        self.same_size = True  # False: labels keep their own resolution (e.g. Cityscapes val at 2048x1024)

    # subclasses implement these three
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def image_id(self, index: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_image(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        """float32 (H, W, 3) in [0, 1]."""
        raise NotImplementedError

    def load_label(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        """int64 (H, W) train ids, ``IGNORE_INDEX`` where unlabelled."""
        raise NotImplementedError

    @property
    def ids(self) -> list[str]:
        return [self.image_id(i) for i in range(len(self))]

    def index_of(self, image_id: str) -> int:
        if not hasattr(self, "_index"):
            self._index = {self.image_id(i): i for i in range(len(self))}
        try:
            return self._index[image_id]
        except KeyError:
            raise KeyError(f"{self.name}: no image with id {image_id!r}") from None

    def __getitem__(self, index: int) -> dict:
        image = self.load_image(index)
        item = {"image": to_tensor(image), "index": index, "id": self.image_id(index)}
        if not self.hide_labels:
            label = self.load_label(index)
            if self.same_size and label.shape != image.shape[:2]:
                raise ValueError(f"{self.name}: image {self.image_id(index)!r} is {image.shape[1]}x{image.shape[0]} "
                                 f"but its label is {label.shape[1]}x{label.shape[0]}")
            item["label"] = torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
        return item


def collate(items: list[dict]) -> dict:
    """Stack a list of dataset items (all of one size) into a batch."""
    out = {"image": torch.stack([it["image"] for it in items]),
           "index": torch.tensor([it["index"] for it in items], dtype=torch.int64),
           "id": [it["id"] for it in items]}
    if all("label" in it for it in items):
        out["label"] = torch.stack([it["label"] for it in items])
    return out
