"""Tiny GTAV, SYNTHIA and Cityscapes trees in their published layouts, with labels that hold several classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Cityscapes / GTAV label ids: road, sidewalk, building, vegetation, sky, car, person, and 0 (void)
CITY_IDS = (7, 8, 11, 21, 23, 26, 24, 0)
# SYNTHIA class ids: road, sidewalk, building, vegetation, sky, car, person, and 0 (void)
SYNTHIA_IDS = (3, 4, 2, 6, 1, 8, 10, 0)


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def blocks(h: int, w: int, ids, seed: int) -> np.ndarray:
    """A label map of 4x4 blocks of random ids (several classes per image)."""
    rng = np.random.default_rng(seed)
    small = rng.choice(np.asarray(ids), size=(4, 4))
    return np.kron(small, np.ones((-(-h // 4), -(-w // 4)), dtype=small.dtype))[:h, :w]


def make_gtav(root: Path, n: int = 4, h: int = 54, w: int = 96) -> Path:
    for i in range(n):
        png(root / "images" / f"{i:05d}.png", rgb(h, w, i))
        png(root / "labels" / f"{i:05d}.png", blocks(h, w, CITY_IDS, i).astype(np.uint8))
    return root


def make_synthia(root: Path, n: int = 4, h: int = 57, w: int = 96) -> Path:
    import cv2

    for i in range(n):
        png(root / "RGB" / f"{i:07d}.png", rgb(h, w, i))
        lab = np.zeros((h, w, 3), np.uint16)
        lab[..., 0] = blocks(h, w, SYNTHIA_IDS, i)
        lab[..., 1] = 1000 + i  # instance ids: ignored
        path = root / "GT" / "LABELS" / f"{i:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), lab[..., ::-1])
    return root


def make_cityscapes(root: Path, split: str, cities=("aachen", "bremen"), h: int = 64, w: int = 128,
                    per_city: int = 1) -> Path:
    for c, city in enumerate(cities):
        for k in range(per_city):
            stem = f"{city}/{city}_{k:06d}_000019"
            seed = 100 + 10 * c + k + (1000 if split == "val" else 0)
            png(root / "leftImg8bit" / split / f"{stem}_leftImg8bit.png", rgb(h, w, seed))
            png(root / "gtFine" / split / f"{stem}_gtFine_labelIds.png", blocks(h, w, CITY_IDS, seed).astype(np.uint8))
    return root
