"""Datasets of the driver: the embedded synthetic streets, GTAV, SYNTHIA and Cityscapes."""
from __future__ import annotations

from .base import IGNORE_INDEX, SegmentationDataset, collate
from ..errors import DataError

__all__ = ["IGNORE_INDEX", "SegmentationDataset", "collate", "DataError", "build_datasets"]


def build_datasets(cfg):
    """(source train, target train with hidden labels, target val) for a :class:`ripu_kernels.driver.config.Config`."""
    d = cfg.data
    if d.source == "synthetic" or d.target == "synthetic":
        if d.source != d.target:
            raise DataError("data.source and data.target must both be 'synthetic' or both real datasets, got "
                            f"source={d.source!r} target={d.target!r}")
        from .synthetic import NUM_CLASSES, SyntheticStreets

        if d.num_classes != NUM_CLASSES:
            raise DataError(f"data.num_classes must be {NUM_CLASSES} for the synthetic data, got {d.num_classes}")
        s = d.synthetic
        kw = dict(height=s.height, width=s.width, seed=s.seed)
        return (SyntheticStreets("source", "train", s.n_source, **kw),
                SyntheticStreets("target", "train", s.n_target_train, hide_labels=True, **kw),
                SyntheticStreets("target", "val", s.n_target_val, **kw))
    from .cityscapes import Cityscapes

    if d.source == "gtav":
        from .gtav import GTAV

        if d.num_classes != 19:
            raise DataError(f"data.num_classes must be 19 for GTAV -> Cityscapes, got {d.num_classes}")
        source = GTAV(d.source_root, list_file=d.source_list or None, size_wh=tuple(d.source_size))
    else:
        from .synthia import Synthia

        if d.num_classes != 16:
            raise DataError(f"data.num_classes must be 16 for SYNTHIA -> Cityscapes, got {d.num_classes}")
        source = Synthia(d.source_root, list_file=d.source_list or None, size_wh=tuple(d.source_size))
    target_train = Cityscapes(d.target_root, "train", list_file=d.target_train_list or None,
                              size_wh=tuple(d.target_size), num_classes=d.num_classes, hide_labels=True)
    # validation: images resized like the training images, labels at their full resolution (as the paper)
    target_val = Cityscapes(d.target_root, "val", list_file=d.target_val_list or None, size_wh=tuple(d.target_size),
                            num_classes=d.num_classes, native_labels=True)
    return source, target_train, target_val
