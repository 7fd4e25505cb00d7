"""A small PNG reader that keeps 16-bit samples (Pillow reduces 16-bit RGB to 8 bits).

SYNTHIA stores its labels as 16-bit multi-channel PNGs; this reads any non-interlaced PNG of bit depth
8 or 16 and colour type grey, grey+alpha, RGB or RGBA into a NumPy array (uint8 or uint16). Other PNGs
(palette, interlaced, low bit depth) are read through Pillow.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    data = np.frombuffer(raw, dtype=np.uint8)
    if data.size != height * (stride + 1):
        raise ValueError(f"PNG data has {data.size} bytes, expected {height * (stride + 1)}")
    rows = data.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        ftype, line = rows[y, 0], rows[y, 1:]
        if ftype == 0:
            cur = line.copy()
        elif ftype == 1:  # Sub: a running sum per byte position modulo bpp
            cur = np.empty(stride, dtype=np.uint8)
            for off in range(bpp):
                cur[off::bpp] = np.cumsum(line[off::bpp], dtype=np.uint64).astype(np.uint8)
        elif ftype == 2:  # Up
            cur = line + prev
        elif ftype in (3, 4):  # Average, Paeth: sequential along the row
            cur = bytearray(stride)
            ln, pv = line.tolist(), prev.tolist()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = pv[i]
                if ftype == 3:
                    cur[i] = (ln[i] + ((a + b) >> 1)) & 0xFF
                else:
                    c = pv[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur[i] = (ln[i] + pred) & 0xFF
            cur = np.frombuffer(bytes(cur), dtype=np.uint8)
        else:
            raise ValueError(f"unknown PNG filter type {ftype} in row {y}")
        out[y] = cur
        prev = out[y]
    return out


def read_png(path: str) -> np.ndarray:
    """(H, W) or (H, W, C) array of a PNG, uint16 for 16-bit files."""
    with open(path, "rb") as fh:
        blob = fh.read()
    if not blob.startswith(_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    pos, header, chunks = 8, None, []
    while pos + 8 <= len(blob):
        length, ctype = struct.unpack(">I4s", blob[pos:pos + 8])
        body = blob[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"{path}: truncated PNG chunk {ctype!r}")
        if ctype == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            chunks.append(body)
        elif ctype == b"IEND":
            break
        pos += 12 + length
    if header is None or not chunks:
        raise ValueError(f"{path}: PNG without IHDR or IDAT")
    width, height, depth, ctype_, _, _, interlace = header
    if depth not in (8, 16) or ctype_ not in _CHANNELS or interlace != 0:
        from PIL import Image

        with Image.open(path) as img:
            return np.asarray(img)
    channels = _CHANNELS[ctype_]
    bpp = channels * depth // 8
    try:
        raw = zlib.decompress(b"".join(chunks))
    except zlib.error as exc:
        raise ValueError(f"{path}: corrupt PNG data: {exc}") from exc
    flat = _unfilter(raw, height, width * bpp, bpp)
    arr = flat.view(">u2").astype(np.uint16) if depth == 16 else flat
    arr = arr.reshape(height, width, channels)
    return arr[..., 0] if channels == 1 else arr


def write_png16(path: str, array: np.ndarray) -> None:
    """Write a uint16 (H, W) or (H, W, 3|4) array as a 16-bit PNG (used to build test fixtures)."""
    arr = np.asarray(array, dtype=np.uint16)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    h, w = arr.shape[:2]
    rows = arr.reshape(h, w * channels).astype(">u2").tobytes()
    stride = w * channels * 2
    raw = b"".join(b"\x00" + rows[y * stride:(y + 1) * stride] for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    data = (_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    from .io import atomic_write_bytes

    atomic_write_bytes(path, data)
