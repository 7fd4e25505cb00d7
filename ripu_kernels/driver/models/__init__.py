"""Segmentation models of the driver: ResNet backbones (and a small CPU backbone), DeepLab-v2 and v3+ heads."""
from __future__ import annotations

from .deeplab import SegmentationModel, build_model, upsample

__all__ = ["SegmentationModel", "build_model", "upsample"]
