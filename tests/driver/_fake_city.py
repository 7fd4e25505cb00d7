"""A tiny GTAV -> Cityscapes tree whose Cityscapes files are larger than the training label size (scale 1.5)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ripu_kernels.driver.data.cityscapes import ID_TO_TRAINID_19
from ripu_kernels.driver.data.transforms import map_labels

ORIG_W, ORIG_H = 48, 24          # Cityscapes files
TRAIN_W, TRAIN_H = 32, 16        # data.target_size: acquisition happens here
LABEL_IDS = (7, 8, 11, 21, 23, 24, 26, 0)  # road, sidewalk, building, vegetation, sky, person, car, void


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _scene(rng, h, w):
    raw = np.full((h, w), 23, np.uint8)
    for _ in range(8):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        raw[y0:y0 + rng.integers(2, h // 2), x0:x0 + rng.integers(2, w // 2)] = rng.choice(LABEL_IDS)
    return raw


def make_tree(root, n_train=4):
    rng = np.random.default_rng(7)
    gta, city = root / "GTAV", root / "cityscapes"
    for i in range(4):
        raw = _scene(rng, 16, 32)
        _png(gta / "images" / f"{i:05d}.png", (rng.random((16, 32, 3)) * 255).astype(np.uint8))
        _png(gta / "labels" / f"{i:05d}.png", raw)
    for split, n in (("train", n_train), ("val", 2)):
        for i in range(n):
            c = ("aachen", "bremen")[i % 2]
            stem = f"{c}/{c}_{i:06d}_000019"
            raw = _scene(rng, ORIG_H, ORIG_W)
            img = np.stack([raw * 9 % 255, raw * 5 % 255, raw * 3 % 255], -1).astype(np.uint8)
            img = np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)
            _png(city / "leftImg8bit" / split / f"{stem}_leftImg8bit.png", img)
            _png(city / "gtFine" / split / f"{stem}_gtFine_labelIds.png", raw)
    return gta, city


def truth(city, image_id, split="train"):
    """Train ids of an image at its original size (what a careful annotator draws)."""
    raw = np.asarray(Image.open(city / "gtFine" / split / f"{image_id}_gtFine_labelIds.png")).astype(np.int64)
    return map_labels(raw, ID_TO_TRAINID_19).astype(np.uint8)


def overrides(root, out):
    return [f"out_dir={out}", "device=cpu", f"data.source_root={root / 'GTAV'}",
            f"data.target_root={root / 'cityscapes'}", "data.source_size=[32, 16]",
            f"data.target_size=[{TRAIN_W}, {TRAIN_H}]", "data.num_workers=0", "data.batch_size=2",
            "model.backbone=small", "model.width=8", "model.norm=gn", "model.aspp_dilations=[1, 2]",
            "train.iters=3", "active.rounds_at=[1, 2]", "active.ratio=0.1", "train.lr=0.001", "threads=1",
            "train.checkpoint_every=100", "train.log_every=1", "active.batch_size=2", "eval.batch_size=2",
            # acquisition at the resized label size (the paper configs select at the original size): exports then
            # map label pixels to the larger original files
            "active.label_size=input", "data.balanced_sampling=false", "model.pretrained=none"]


def init_checkpoint(root, out, extra=()):
    """An untrained model's checkpoint of the paper RA 2.2 config on the tree under ``root`` (run folder ``out``),
    with ``extra`` overrides after the tiny ones; what the selection tests select with."""
    from ripu_kernels.driver.config import load_config
    from ripu_kernels.driver.engine.trainer import Trainer

    cfg = load_config("gtav_cityscapes_ra_2.2", [*overrides(root, out), *extra])
    return Trainer(cfg, progress=False).save_checkpoint("init.pth")
