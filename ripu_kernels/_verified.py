"""Which compiled backends ``backend="auto"`` may pick for CUDA tensors: those a GPU run has verified.

Written by ``tools/update_verified.py`` from a passing ``make gpu-check`` run (do not edit by hand). ``VERIFIED``
maps an op to the backends that passed every GPU test of that op in that run, fastest first as measured there;
``auto`` takes the first of them that is available, else the pure-PyTorch reference. ``PROVENANCE`` says which run
the table comes from (GPU, git commit, date, torch, triton, CUDA and driver versions).

No GPU run has been recorded yet: the table is empty and ``auto`` runs the reference on CUDA tensors.
"""
from __future__ import annotations

PROVENANCE: dict[str, str] | None = None

VERIFIED: dict[str, tuple[str, ...]] = {}
