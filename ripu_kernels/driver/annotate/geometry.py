"""Label resolution <-> the original image file: which original pixels a label pixel stands for.

Acquisition happens at the label resolution (``data.target_size``, or the original size with
``active.label_size: original``). Annotators label the original image file. Their labels come back through the
same nearest-neighbour resize as ground truth (``data.transforms.resize_label``): label pixel ``j`` of a row
takes original pixel ``s(j)``. :class:`Grid` computes ``s`` by running that very resize on an index ramp, so
export and import can never disagree with it.

The original pixels are split into *cells*, one per distinct sample ``s(j)``: cell ``j`` is
``[s(j), s(j'))`` where ``s(j')`` is the next larger sample (or the image edge); the first cell also takes the
pixels before the first sample (PIL's nearest samples pixel centres, so at 2x it reads original pixels 1, 3, 5,
...: pixel 0 is never read back and belongs to the first cell). A queried label pixel asks for its whole cell;
the cell contains the pixel that is read back. When the original is smaller than the label size, several label
pixels share one sample and one cell.

Coordinates (one convention everywhere, as CVAT and COCO): points and boxes are ``[x, y]`` = (column, row) in
continuous pixel-edge coordinates: pixel ``(row r, column c)`` covers ``[c, c+1) x [r, r+1)``. A box
``[x0, y0, x1, y1]`` covers the columns ``x0 .. x1-1`` and rows ``y0 .. y1-1`` (exclusive upper bounds; width
``x1 - x0``), which is CVAT's ``xtl, ytl, xbr, ybr`` and COCO's ``[x0, y0, x1-x0, y1-y0]``. A centre is the
middle of its pixel (or cell): ``[c + 0.5, r + 0.5]`` at the label resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.transforms import resize_label


def sample_positions(n_original: int, n_label: int) -> np.ndarray:
    """``s(j)``: the original index read for label index ``j`` by the ground-truth resize (nearest)."""
    ramp = np.arange(n_original, dtype=np.int64)[None, :]
    return np.asarray(resize_label(ramp, (n_label, 1))[0], dtype=np.int64)


@dataclass(frozen=True)
class Axis:
    """One axis: original length, label length, samples and cells."""

    n_original: int
    n_label: int

    def __post_init__(self):
        s = sample_positions(self.n_original, self.n_label)
        samples = np.unique(s)  # one cell per distinct sample (sorted)
        starts = samples.copy()
        starts[0] = 0  # the pixels before the first sample go to the first cell
        ends = np.append(starts[1:], self.n_original)
        object.__setattr__(self, "samples", s)
        object.__setattr__(self, "starts", starts)
        object.__setattr__(self, "ends", ends)
        # label index -> its cell; original index -> its cell
        object.__setattr__(self, "label_cell", np.searchsorted(samples, s))
        object.__setattr__(self, "original_cell",
                           np.searchsorted(starts, np.arange(self.n_original), side="right") - 1)
        # first label index of each cell (label indices of a cell are consecutive)
        first = np.searchsorted(self.label_cell, np.arange(len(starts)))  # type: ignore[attr-defined]
        object.__setattr__(self, "cell_first_label", first)

    def span(self, j0: int, j1: int) -> tuple[int, int]:
        """Original edges ``[a, b)`` of label indices ``j0 .. j1`` (inclusive)."""
        return int(self.starts[self.label_cell[j0]]), int(self.ends[self.label_cell[j1]])

    def centre(self, j: int) -> float:
        c = self.label_cell[j]
        return (float(self.starts[c]) + float(self.ends[c])) / 2.0


class Grid:
    """The mapping between a label map of ``label_hw`` and its original image of ``original_hw`` = (H, W)."""

    def __init__(self, label_hw: tuple[int, int], original_hw: tuple[int, int]):
        self.label_hw = (int(label_hw[0]), int(label_hw[1]))
        self.original_hw = (int(original_hw[0]), int(original_hw[1]))
        self.rows = Axis(self.original_hw[0], self.label_hw[0])
        self.cols = Axis(self.original_hw[1], self.label_hw[1])

    @property
    def identity(self) -> bool:
        return self.label_hw == self.original_hw

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) scale: original size / label size."""
        return (self.original_hw[1] / self.label_hw[1], self.original_hw[0] / self.label_hw[0])

    def to_original(self, mask: np.ndarray) -> np.ndarray:
        """A label-resolution boolean mask as the mask of the original pixels it asks for (cells, OR-ed)."""
        mask = np.asarray(mask, bool)
        if mask.shape != self.label_hw:
            raise ValueError(f"geometry: mask is {mask.shape}, the label size is {self.label_hw}")
        if self.identity:
            return mask.copy()
        by_row = np.logical_or.reduceat(mask, self.rows.cell_first_label, axis=0)
        by_cell = np.logical_or.reduceat(by_row, self.cols.cell_first_label, axis=1)
        return by_cell[self.rows.original_cell][:, self.cols.original_cell]

    def to_label(self, label: np.ndarray) -> np.ndarray:
        """An original-size label map at the label resolution, exactly as ground truth is resized."""
        return np.asarray(resize_label(np.asarray(label, np.int64), (self.label_hw[1], self.label_hw[0])))

    def box(self, label_box: list[int]) -> list[int]:
        """Original box ``[x0, y0, x1, y1]`` (exclusive upper bounds) of a label-resolution box of the same kind."""
        x0, y0, x1, y1 = label_box
        a, b = self.cols.span(x0, x1 - 1)
        c, d = self.rows.span(y0, y1 - 1)
        return [a, c, b, d]

    def centre(self, row: int, col: int) -> list[float]:
        """Original ``[x, y]`` of the middle of label pixel (row, col)'s cell."""
        return [self.cols.centre(col), self.rows.centre(row)]


def window_box(row: int, col: int, radius: int, height: int, width: int) -> list[int]:
    """Label-resolution box ``[x0, y0, x1, y1]`` (exclusive upper bounds) of the window around a centre, clipped."""
    return [max(0, col - radius), max(0, row - radius), min(width, col + radius + 1), min(height, row + radius + 1)]
