"""Run-length encodings of binary masks: COCO's (as pycocotools writes and reads them) and CVAT's.

COCO (``pycocotools.mask.encode``): runs over the mask in column-major (Fortran) order, starting with a run
of zeros (possibly empty), stored as ``{"size": [height, width], "counts": str}``. The string packs each count
(from the fourth on as the difference to the count two before) in 5-bit groups, least significant first, each
group + 48 as one ASCII character, bit 0x20 = "more groups follow", bit 0x10 of the last group = sign.
An *uncompressed* RLE has ``counts`` as a list of ints.

CVAT (``<mask rle="...">`` of CVAT for images 1.1): comma-separated run lengths over the mask's box
(``left, top, width, height``) in row-major order, starting with a run of zeros.
"""
from __future__ import annotations

import numpy as np


def runs(flat: np.ndarray) -> list[int]:
    """Run lengths of a flat 0/1 array, starting with a (possibly empty) run of zeros."""
    flat = np.asarray(flat, bool).ravel()
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return [int(c) for c in counts]


def counts_to_string(counts: list[int]) -> str:
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5  # arithmetic shift: negative differences keep their sign
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("RLE string ends inside a count")
            ch = ord(s[p]) - 48
            if not 0 <= ch < 64:
                raise ValueError(f"RLE string has an invalid character {s[p]!r} at {p}")
            x |= (ch & 0x1F) << (5 * k)
            more = bool(ch & 0x20)
            p += 1
            k += 1
            if not more and (ch & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> dict:
    """COCO RLE (compressed string) of a 2-D boolean mask, as ``pycocotools.mask.encode`` gives it."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(runs(mask.ravel(order="F")))}


def encode_box(box: list[int], height: int, width: int) -> dict:
    """COCO RLE of the filled box ``[x0, y0, x1, y1]`` (exclusive upper bounds) without building the mask."""
    x0, y0, x1, y1 = (int(v) for v in box)
    bh, bw = y1 - y0, x1 - x0
    if bh <= 0 or bw <= 0:
        return {"size": [height, width], "counts": counts_to_string([height * width])}
    if bh == height:  # whole columns: one run of ones
        counts = [x0 * height, bw * height, (width - x1) * height]
        return {"size": [int(height), int(width)], "counts": counts_to_string(counts[:2] if not counts[2] else counts)}
    counts = [x0 * height + y0]
    for col in range(bw):
        counts.append(bh)
        counts.append(height - bh if col < bw - 1 else height * width - ((x1 - 1) * height + y1))
    if counts[-1] == 0:
        counts.pop()
    return {"size": [int(height), int(width)], "counts": counts_to_string(counts)}


def decode_counts(counts: list[int], height: int, width: int, what: str = "RLE") -> np.ndarray:
    """The (height, width) boolean mask of COCO counts (column-major, zeros first)."""
    counts = [int(c) for c in counts]
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        raise ValueError(f"{what}: its runs cover {sum(counts)} pixels (or are negative), the image has "
                         f"{height}x{width} = {height * width}")
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((width, height)).T


def decode(rle: dict, what: str = "RLE") -> np.ndarray:
    """The mask of a COCO RLE (compressed string or uncompressed list of counts)."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{what}: not an RLE with 'size' [h, w] and 'counts' ({exc!r})") from None
    if isinstance(counts, (bytes, bytearray)):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    elif not isinstance(counts, list):
        raise ValueError(f"{what}: 'counts' must be a string or a list of ints")
    return decode_counts(counts, height, width, what)


def cvat_encode(mask: np.ndarray) -> str:
    """CVAT's row-major RLE of a (box-cropped) mask."""
    return ", ".join(str(c) for c in runs(np.asarray(mask, bool).ravel(order="C")))


def cvat_decode(text: str, height: int, width: int, what: str = "CVAT mask") -> np.ndarray:
    try:
        counts = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ValueError(f"{what}: rle is not a list of integers") from None
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        raise ValueError(f"{what}: its runs cover {sum(counts)} pixels, the mask box has {width}x{height}")
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(height, width)
