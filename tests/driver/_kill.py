"""Run ``ripu`` with a fault injected from outside the production code: SIGKILL at a chosen point.

    python tests/driver/_kill.py SPEC [ripu arguments ...]      (also as torchrun's script)

SPEC is ``write:N`` (before the N-th atomic file write of this process), ``journal:N`` (right after the N-th
acquisition batch is committed to its journal, before its ledger and masks), or ``iteration:N`` (before
training iteration N starts, i.e. after N iterations, before a round at N). The kill tests use it to show that
a run killed anywhere resumes to the uninterrupted result.
"""
from __future__ import annotations

import os
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(spec: str) -> None:
    where, _, count = spec.partition(":")
    target = int(count)
    calls = [0]
    if where == "write":
        from ripu_kernels.driver import io

        original = io.atomic_write

        def atomic_write(*args, **kwargs):
            calls[0] += 1
            if calls[0] == target:
                _die()
            return original(*args, **kwargs)

        io.atomic_write = atomic_write  # the atomic_* helpers look it up in their module at call time
    elif where == "journal":
        from ripu_kernels.driver.active.commit import Journal

        original = Journal.commit

        def commit(self, *args, **kwargs):
            original(self, *args, **kwargs)
            calls[0] += 1
            if calls[0] == target:
                _die()

        Journal.commit = commit
    elif where == "iteration":
        from ripu_kernels.driver.engine.trainer import Trainer

        for name in ("step", "_round"):
            original = getattr(Trainer, name)

            def wrapped(self, *args, _original=original, **kwargs):
                if self.iteration == target:
                    _die()
                return _original(self, *args, **kwargs)

            setattr(Trainer, name, wrapped)
    else:
        raise SystemExit(f"_kill.py: unknown SPEC {spec!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    from ripu_kernels.driver.cli import main

    sys.exit(main(sys.argv[2:]))
