"""Lets ``pytest bench/ --benchmark-only`` collect the ``bench_*.py`` files (pytest looks for ``test_*.py``)."""
from __future__ import annotations

import pytest


def pytest_collect_file(file_path, parent):
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):  # explicit paths are collected by pytest itself
        return pytest.Module.from_parent(parent, path=file_path)
    return None
