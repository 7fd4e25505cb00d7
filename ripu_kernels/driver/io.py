"""File I/O of the driver: atomic writes and the one reader of label PNGs.

Atomic writes go to a temporary file in the destination folder, are flushed and fsynced, then replace the
destination with ``os.replace`` (and the folder is fsynced): a reader sees the old file or the new one, never
half of one, and a crash never leaves a half-written mask, ledger or checkpoint.

Label PNGs are read by :func:`read_png`: OpenCV decodes 8- and 16-bit grey, RGB and RGBA files with every PNG
filter (SYNTHIA's labels are 16-bit RGB), returned in RGB(A) order; palette PNGs (GTAV's labels, PIL's "P"
mode) are read through Pillow so that the palette indices, not their colours, come back.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DataError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE = 3  # IHDR colour type of palette images


# ------------------------------------------------------------------------------------------ atomic writes
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, writer: Callable[[io.BufferedWriter], None]) -> Path:
    """Write ``path`` atomically: ``writer(fileobj)`` fills a temporary file that then replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a 2-D uint8/uint16 array or an (H, W, 3|4) uint8/uint16 array in RGB(A) order."""
    import cv2

    array = np.ascontiguousarray(array)
    if array.dtype not in (np.uint8, np.uint16) or array.ndim not in (2, 3) or (
            array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"encode_png: expected a uint8/uint16 (H, W) or (H, W, 3|4) array, got {array.dtype} "
                         f"of shape {array.shape}")
    if array.ndim == 3:  # OpenCV writes BGR(A)
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]
    ok, buf = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - OpenCV refuses only unsupported shapes, checked above
        raise ValueError("encode_png: OpenCV could not encode the array")
    return buf.tobytes()


def atomic_save_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save an array as PNG atomically (see :func:`encode_png` for what it takes)."""
    try:
        data = encode_png(array)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return atomic_write_bytes(path, data)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


# ------------------------------------------------------------------------------------------------ reading
def is_palette_png(head: bytes) -> bool:
    """Whether PNG bytes (at least their first 26) hold a palette image (IHDR colour type 3)."""
    return len(head) >= 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[25] == _PNG_PALETTE


def decode_png(data: bytes, where: str, palette_as_rgb: bool = False) -> np.ndarray:
    """Image bytes as stored: (H, W) or (H, W, 3|4) RGB(A), uint8 or uint16; palette PNGs as their indices (or,
    with ``palette_as_rgb``, their colours). Raises :class:`DataError` naming ``where`` when they cannot be
    decoded."""
    try:
        if is_palette_png(data[:26]):
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                return np.asarray(img.convert("RGB") if palette_as_rgb else img)
        import cv2

        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image file {where}: {exc}") from exc
    if arr is None:
        raise DataError(f"cannot read image file {where}: not an image OpenCV can decode (corrupt or truncated?)")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]
    return np.ascontiguousarray(arr)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """An image file as stored (see :func:`decode_png`). Raises :class:`DataError` naming the file when it is
    missing or cannot be decoded."""
    path = str(path)
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read image file {path}: {exc}") from exc
    return decode_png(data, path)


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """A label map as a 2-D integer array: grey or palette values, or channel 0 (red) of a colour file.

    SYNTHIA keeps its class id in the red channel of a 16-bit RGB PNG; GTAV stores Cityscapes label ids as
    palette indices; Cityscapes and our own masks are 8-bit grey.
    """
    arr = read_png(path)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr
