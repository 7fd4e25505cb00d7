"""Rasterising annotators' shapes onto a label map, as COCO tooling does.

Polygons and boxes are rasterised by pycocotools (``frPyObjects`` + ``decode``): the reference rasteriser of
COCO, which CVAT and datumaro use too. Shapes are painted in order, a later shape over an earlier one (CVAT
sorts by ``z_order`` first); ``255`` paints void.
"""
from __future__ import annotations

import numpy as np

from ..errors import LabelImportError


def _mask_api():
    try:
        from pycocotools import mask as mask_api
    except ImportError:  # pragma: no cover - pycocotools is a dependency of the driver extra
        raise LabelImportError("import-labels: polygons and boxes need pycocotools (pip install pycocotools); "
                               "masks (RLE, PNG) do not") from None
    return mask_api


def polygons_mask(polygons: list[list[float]], height: int, width: int, where: str) -> np.ndarray:
    """Union of polygons ``[x1, y1, x2, y2, ...]`` (pixel-edge coordinates) as a boolean mask."""
    polys = []
    for p in polygons:
        try:
            flat = [float(v) for v in p]
        except (TypeError, ValueError):
            raise LabelImportError(f"import-labels: {where}: a polygon holds non-numbers") from None
        if len(flat) < 6 or len(flat) % 2:
            raise LabelImportError(f"import-labels: {where}: a polygon needs at least 3 (x, y) points, got "
                                   f"{len(flat)} numbers")
        if not np.isfinite(flat).all():
            raise LabelImportError(f"import-labels: {where}: a polygon has a non-finite coordinate")
        polys.append(flat)
    if not polys:
        return np.zeros((height, width), bool)
    m = _mask_api()
    rles = m.frPyObjects(polys, height, width)
    return m.decode(m.merge(rles)).astype(bool)


def box_mask(box_xyxy, height: int, width: int, where: str) -> np.ndarray:
    """A box ``[x0, y0, x1, y1]`` (pixel-edge coordinates) rasterised like a COCO bbox."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not np.isfinite([x0, y0, x1, y1]).all() or x1 < x0 or y1 < y0:
        raise LabelImportError(f"import-labels: {where}: bad box {[x0, y0, x1, y1]}")
    if x1 == x0 or y1 == y0:
        return np.zeros((height, width), bool)
    m = _mask_api()
    rle = m.frPyObjects(np.array([[x0, y0, x1 - x0, y1 - y0]], dtype=np.float64), height, width)
    return m.decode(rle)[..., 0].astype(bool)


class Canvas:
    """An original-size label map (255 = nothing) that shapes are painted onto."""

    def __init__(self, height: int, width: int):
        self.labels = np.full((height, width), 255, np.uint8)
        self.painted = False

    def paint(self, mask: np.ndarray, value: int) -> None:
        if mask.shape != self.labels.shape:
            raise ValueError(f"raster: mask {mask.shape} on a canvas {self.labels.shape}")
        self.labels[mask] = value
        self.painted = True
