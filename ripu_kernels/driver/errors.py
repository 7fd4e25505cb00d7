"""The driver's errors. Each names the file, the image or the config key that is wrong.

``ripu`` prints any :class:`RipuError` as one line (``ripu <command>: error: ...``) and exits with status 2.
"""
from __future__ import annotations


class RipuError(ValueError):
    """Base class of the driver's user-facing errors."""


class ConfigError(RipuError):
    """A bad configuration file, key or value."""


class DataError(RipuError):
    """A dataset problem (missing folder, unpaired image, corrupt file, size mismatch); names the file."""


class AcquisitionError(RipuError, RuntimeError):
    """Acquisition cannot go on (non-finite logits, a budget overrun, a corrupt mask or ledger); names the image."""


class LabelImportError(AcquisitionError):
    """Annotators' files that cannot be imported (names the file and the rule)."""


class CheckpointError(RipuError):
    """A checkpoint that cannot be loaded (missing, malformed, of another kind); names the file."""
