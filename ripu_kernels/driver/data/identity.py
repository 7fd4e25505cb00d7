"""One identity per image: the id every command (``ripu train``, ``ripu select``, exports, imports) gives an image.

An image id is the path of the image file relative to its dataset's image folder, with ``/`` separators, without
its extension and without the suffix its dataset adds to every image file name (Cityscapes' ``_leftImg8bit``).
So ``leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png`` is ``aachen/aachen_000000_000019`` whether
the Cityscapes loader of a training run or ``ripu select --images leftImg8bit/train`` reads it, and the masks and
ledger records of one image are found by both.
"""
from __future__ import annotations

import os

# suffixes that a dataset appends to every image file name and that are not part of the image's identity
IMAGE_NAME_SUFFIXES = ("_leftImg8bit",)  # Cityscapes: <city>/<city>_<seq>_<frame>_leftImg8bit.png


def image_id_from_relpath(relpath: str) -> str:
    """The image id of a file at ``relpath`` (relative to its image folder): no extension, no dataset suffix."""
    stem = os.path.splitext(str(relpath).replace("\\", "/"))[0]
    for suffix in IMAGE_NAME_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix) and not stem.endswith("/" + suffix):
            return stem[: -len(suffix)]
    return stem
