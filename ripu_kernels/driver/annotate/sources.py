"""Annotators' files are untrusted input: a folder or a zip read through one small interface, with checks.

* zip archives are never extracted: entries are read into memory one at a time; a name that is absolute, holds
  ``..``, a drive or a backslash, a symlink entry, an entry over ``MAX_FILE_BYTES`` (declared or actual), a
  total over ``MAX_TOTAL_BYTES`` or a compression ratio over ``MAX_RATIO`` is refused, naming the archive and
  the entry;
* XML is parsed by the standard library's expat parser only after refusing any ``<!DOCTYPE``/``<!ENTITY``
  (no entity expansion, no external resources);
* PNG sizes are read from the header and checked before a PNG is decoded (no decompression bombs);
* JSON is ``json.loads`` (no code runs); nothing is ever ``eval``-ed.
"""
from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import DataError, LabelImportError
from .. import io as driver_io

MAX_FILE_BYTES = 512 * 2**20        # one file of an export (a COCO JSON of a large round is big)
MAX_TOTAL_BYTES = 16 * 2**30        # everything read from one archive
MAX_RATIO = 1000                    # uncompressed / compressed size of a zip entry
MAX_PIXELS = 2**28                  # one decoded image
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Tree:
    """The files of a folder or of a zip archive, by relative POSIX path."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._zip = None
        self._read_total = 0
        if self.path.is_dir():
            self._names = sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*")
                                 if p.is_file() and not p.is_symlink())
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            self._infos = {}
            for info in self._zip.infolist():
                if info.is_dir():
                    continue
                name = self._check_entry(info)
                self._infos[name] = info
            self._names = sorted(self._infos)
        elif self.path.is_file():
            self._names = [self.path.name]
        else:
            raise FileNotFoundError(f"import-labels: {self.path} not found")

    def __repr__(self) -> str:
        return f"Tree({str(self.path)!r})"

    def _check_entry(self, info: zipfile.ZipInfo) -> str:
        raw = info.filename
        where = f"import-labels: {self.path}: entry {raw!r}"
        if "\\" in raw or raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or "\x00" in raw:
            raise LabelImportError(f"{where} has an absolute or non-POSIX name; refused")
        parts = PurePosixPath(raw).parts
        if any(p in ("..", "") for p in parts):
            raise LabelImportError(f"{where} leaves the archive ('..'); refused")
        mode = (info.external_attr >> 16) & 0xFFFF
        if stat.S_ISLNK(mode):
            raise LabelImportError(f"{where} is a symbolic link; refused")
        if info.file_size > MAX_FILE_BYTES:
            raise LabelImportError(f"{where} is {info.file_size} bytes uncompressed, over the limit of "
                                   f"{MAX_FILE_BYTES}; refused")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise LabelImportError(f"{where} expands {info.file_size / info.compress_size:.0f}-fold; refused "
                                   "(a zip bomb?)")
        return PurePosixPath(*parts).as_posix()

    @property
    def is_archive(self) -> bool:
        return self._zip is not None

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def where(self, name: str) -> str:
        """How errors name a file of the tree."""
        if self._zip is not None:
            return f"{self.path}:{name}"
        if self.path.is_file():
            return str(self.path)
        return str(self.path / name)

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            info = self._infos[name]
            with self._zip.open(info) as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise LabelImportError(f"import-labels: {self.where(name)} is over {MAX_FILE_BYTES} bytes; refused")
            self._read_total += len(data)
            if self._read_total > MAX_TOTAL_BYTES:
                raise LabelImportError(f"import-labels: {self.path}: more than {MAX_TOTAL_BYTES} bytes read from "
                                       "the archive; refused")
            return data
        path = self.path if self.path.is_file() else self.path / name
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LabelImportError(f"import-labels: {path} is {size} bytes, over the limit of {MAX_FILE_BYTES}")
        return path.read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def read_json(data: bytes, where: str):
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelImportError(f"import-labels: {where} is not valid JSON: {exc}") from None


def parse_xml(data: bytes, where: str):
    """The root element of an XML document that declares no DTD and no entities."""
    import xml.etree.ElementTree as ET

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelImportError(f"import-labels: {where} is not UTF-8 XML; refused") from None
    if re.search(r"<!\s*(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise LabelImportError(f"import-labels: {where} declares a DTD or entities; refused (untrusted XML)")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise LabelImportError(f"import-labels: {where} is not valid XML: {exc}") from None


def png_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise LabelImportError(f"import-labels: {where} is not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def decode_png(data: bytes, where: str, expect_wh: list[tuple[int, int]] | None = None,
               rgb: bool = False) -> np.ndarray:
    """A PNG as stored: (H, W) grey / palette indices (``rgb``: palette colours) or (H, W, 3|4) RGB(A); its size
    is checked (``expect_wh``: the allowed (width, height)) before anything is decoded."""
    w, h = png_size(data, where)
    if expect_wh is not None and (w, h) not in expect_wh:
        sizes = " or ".join(f"{a}x{b}" for a, b in expect_wh)
        raise LabelImportError(f"import-labels: {where} is {w}x{h}; expected {sizes}")
    if w * h > MAX_PIXELS:
        raise LabelImportError(f"import-labels: {where} is {w}x{h}, too large; refused")
    try:
        return driver_io.decode_png(data, where, palette_as_rgb=rgb)
    except DataError as exc:
        raise LabelImportError(f"import-labels: {exc}") from None
