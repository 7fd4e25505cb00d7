"""Datasets of the driver: the embedded synthetic streets, GTAV, SYNTHIA and Cityscapes."""
from __future__ import annotations

from .base import IGNORE_INDEX, SegmentationDataset, collate
from ..errors import DataError

__all__ = ["IGNORE_INDEX", "SegmentationDataset", "collate", "DataError", "build_datasets"]


def build_datasets(cfg, need=("source", "target", "val")):
    """(source train, target train with hidden labels, target val) for a :class:`ripu_kernels.driver.config.Config`.

    Only the parts named in ``need`` are built (the others are ``None``): ``ripu eval`` needs the target val set
    alone, a source-only run no target train set, a source-free run (``data.source: none``) no source.
    """
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
        return (SyntheticStreets("source", "train", s.n_source, **kw) if "source" in need else None,
                SyntheticStreets("target", "train", s.n_target_train, hide_labels=True, **kw)
                if "target" in need else None,
                SyntheticStreets("target", "val", s.n_target_val, **kw) if "val" in need else None)
    from .cityscapes import Cityscapes

    source = target_train = target_val = None
    if d.source == "gtav" and d.num_classes != 19:
        raise DataError(f"data.num_classes must be 19 for GTAV -> Cityscapes, got {d.num_classes}")
    if d.source == "synthia" and d.num_classes != 16:
        raise DataError(f"data.num_classes must be 16 for SYNTHIA -> Cityscapes, got {d.num_classes}")
    if "source" in need and d.source != "none":
        source = build_source(cfg)
    if "target" in need:
        # with active.label_size: original the labels keep their size: selection, budgets and masks are there
        target_train = Cityscapes(d.target_root, "train", list_file=d.target_train_list or None,
                                  size_wh=tuple(d.target_size), num_classes=d.num_classes, hide_labels=True,
                                  native_labels=cfg.active.label_size == "original")
        target_train.interpolation = d.image_interpolation
    if "val" in need:
        # validation: images resized like the training images, labels at their full resolution (as the paper)
        target_val = Cityscapes(d.target_root, "val", list_file=d.target_val_list or None,
                                size_wh=tuple(d.target_size), num_classes=d.num_classes, native_labels=True)
        target_val.interpolation = d.image_interpolation
    return source, target_train, target_val


def build_source(cfg):
    """The source train set (GTAV or SYNTHIA); ``.prepared`` holds the output of ``ripu prepare`` (or None)."""
    from .folders import require_dir
    from .prepared import load_prepared

    d = cfg.data
    require_dir(d.source_root, f"{d.source} (data.source_root)")
    # stale output of `ripu prepare` is an error even when only SYNTHIA's label copies would use it
    prepared = load_prepared(d.source, d.source_root, d.prepared_dir or None, required=d.balanced_sampling)
    if d.source == "gtav":
        from .gtav import GTAV

        source = GTAV(d.source_root, list_file=d.source_list or None, size_wh=tuple(d.source_size))
    else:
        from .synthia import Synthia

        source = Synthia(d.source_root, list_file=d.source_list or None, size_wh=tuple(d.source_size),
                         train_id_labels=prepared.train_id_labels if prepared is not None else None)
    source.interpolation = d.image_interpolation
    source.prepared = prepared
    return source
