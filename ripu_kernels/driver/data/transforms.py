"""Image loading and resizing shared by the dataset loaders (label PNGs are read by ``driver.io.read_label_png``).

Images become float32 ``(H, W, 3)`` arrays in ``[0, 1]``; labels stay integer maps. Resizing takes a
``(width, height)`` pair as in the paper's settings (source 1280x720, target 1280x640): bilinear for
images, nearest for labels. Every failure names the file.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _open(path: str):
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image file {path}: {exc}") from exc
    return img


def read_image(path: str, size_wh: tuple[int, int] | None = None, interpolation: str = "bicubic") -> np.ndarray:
    """RGB image as float32 (H, W, 3) in [0, 1], resized by PIL to ``size_wh`` = (width, height) with
    ``interpolation`` (``bicubic``, as the authors' transform.py Resize, or ``bilinear``)."""
    from PIL import Image

    img = _open(path).convert("RGB")
    if size_wh is not None and tuple(img.size) != tuple(size_wh):
        img = img.resize(tuple(size_wh), Image.BICUBIC if interpolation == "bicubic" else Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of an image file without decoding its pixels."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}")
    try:
        with Image.open(path) as img:
            return tuple(img.size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read the header of image file {path}: {exc}") from exc


def resize_label(label: np.ndarray, size_wh: tuple[int, int] | None) -> np.ndarray:
    """Nearest-neighbour resize of an integer label map to ``size_wh`` = (width, height), by PIL's NEAREST as the
    authors' transform.py (it differs from ``F.interpolate(mode="nearest")``, and from ``"nearest-exact"`` on a
    few columns where the source coordinate falls exactly on a pixel edge)."""
    from PIL import Image

    if size_wh is None or (label.shape[1], label.shape[0]) == tuple(size_wh):
        return label
    small = label.min(initial=0) >= 0 and label.max(initial=0) <= 255
    img = Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8 if small else np.int32))
    out = np.asarray(img.resize(tuple(int(v) for v in size_wh), Image.NEAREST))
    return out.astype(label.dtype)


def map_labels(raw: np.ndarray, mapping: dict[int, int], ignore_index: int = 255) -> np.ndarray:
    """Map raw label ids to train ids through a lookup table; unknown ids become ``ignore_index``."""
    lut_size = max(int(raw.max(initial=0)) + 1, max(mapping) + 1)
    lut = np.full(lut_size, ignore_index, dtype=np.int64)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut[np.clip(raw, 0, lut_size - 1)]


def to_tensor(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """(H, W, 3) float [0, 1] -> normalised (3, H, W) float32 tensor."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (t - mean_t) / std_t


def denormalize(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Inverse of :func:`to_tensor`: (3, H, W) tensor -> uint8 (H, W, 3)."""
    mean_t = torch.tensor(mean, dtype=image.dtype)[:, None, None]
    std_t = torch.tensor(std, dtype=image.dtype)[:, None, None]
    x = (image.detach().cpu() * std_t + mean_t).clamp(0, 1)
    return (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
