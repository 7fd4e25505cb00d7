"""Annotators' files: moved to :mod:`ripu_kernels.driver.annotate` (one module per format); kept for imports."""
from __future__ import annotations

from ..annotate.export import EXPORT_VERSION, Exporter, load_manifest
from ..annotate.geometry import window_box
from ..annotate.importer import import_labels

__all__ = ["EXPORT_VERSION", "Exporter", "load_manifest", "window_box", "import_labels"]
