"""The RIPU training driver (the ``ripu`` command): the application half of the package.

It uses only the kernel library's public API (``import ripu_kernels as rk``: ``rk.region_scores`` etc. and
``ripu_kernels.reference``; a test enforces it) and brings its own dependencies with the ``driver`` extra:
``pip install --no-build-isolation "ripu_kernels[driver]"``.

| room | holds |
| --- | --- |
| ``cli`` | the ``ripu`` command line |
| ``config`` + ``configs/`` | the config schema (OmegaConf structured), loading, the packaged configs |
| ``data/`` | datasets (embedded synthetic, GTAV, SYNTHIA, Cityscapes, image folders), data order |
| ``models/`` | ResNet backbones, DeepLab-v2/v3+ heads |
| ``active/`` | the active-learning state: strategies, budget units, mask store, ledger, journal, acquisition, state joins |
| ``annotate/`` | people in the loop: exports for CVAT / COCO / Label Studio, imports of theirs, the human oracle |
| ``engine/`` | the trainer, checkpoints and resume state, LR schedule, the process group |
| ``evaluate`` | mIoU, per-class IoU, flip test-time augmentation |
| ``plots`` / ``demo`` / ``ablate`` | figures, the demo (RA and random), ``ripu ablate`` (strategies over seeds, with bounds) |
| ``io`` / ``errors`` | atomic writes and the label-PNG reader; the user-facing errors |
"""
from __future__ import annotations

import importlib.util

# import name -> distribution, for the one-line message of ``ripu`` when the extra is not installed
DEPENDENCIES = {"yaml": "pyyaml", "omegaconf": "omegaconf", "tqdm": "tqdm", "PIL": "pillow",
                "matplotlib": "matplotlib", "cv2": "opencv-python-headless", "torchdata": "torchdata"}


def missing_dependencies() -> list[str]:
    """Distributions of the ``driver`` extra that cannot be imported here."""
    missing = []
    for module, dist in DEPENDENCIES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing
