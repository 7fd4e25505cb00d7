"""Which device a run uses: ``device: auto | cpu | cuda | cuda:N``, resolved once, with one-line errors.

``auto`` is CUDA when this PyTorch build sees a GPU, else the CPU with a warning that the paper's settings
(ResNet-101 at 1280x720, 40,000 iterations) will take weeks there. ``cuda`` on a build or machine without CUDA is a
:class:`ConfigError` naming the key, not a traceback from deep inside the first ``.to(device)``.
"""
from __future__ import annotations

import logging

import torch

from ..errors import ConfigError

log = logging.getLogger("ripu")

CPU_WARNING = ("device=auto: no CUDA device is available (torch {version}); running on the CPU, which is very slow "
               "for the paper's ResNet-101 settings. Set device=cpu to silence this warning.")


def resolve_device(spec: str, warn: bool = True) -> str:
    """The concrete device (``"cpu"``, ``"cuda"``, ``"cuda:N"``) for the config value ``spec``."""
    spec = str(spec).strip()
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if warn:
            log.warning(CPU_WARNING.format(version=torch.__version__))
        return "cpu"
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
    if torch.version.cuda is None:
        raise ConfigError(f"device={spec!r} but this PyTorch build has no CUDA support (torch {torch.__version__}); "
                          "use device=auto or device=cpu, or install a CUDA build of PyTorch")
    if not torch.cuda.is_available():
        raise ConfigError(f"device={spec!r} but no CUDA device is visible (torch {torch.__version__}, CUDA "
                          f"{torch.version.cuda}); check the driver and CUDA_VISIBLE_DEVICES, or use device=auto")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device={spec!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return spec


def warn_if_cpu(requested: str, resolved: str) -> None:
    """The warning of ``device: auto`` falling back to the CPU (for callers that resolved with ``warn=False``
    before their log was set up)."""
    if str(requested).strip() == "auto" and resolved == "cpu":
        log.warning(CPU_WARNING.format(version=torch.__version__))
