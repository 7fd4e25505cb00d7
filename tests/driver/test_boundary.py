"""The driver (ripu_kernels.driver) uses only the kernel library's public API: ``ripu_kernels.<public name>``
and ``ripu_kernels.reference``. Checked on the source with the ast module."""
from __future__ import annotations

import ast
from pathlib import Path

import ripu_kernels

DRIVER = Path(ripu_kernels.__file__).resolve().parent / "driver"
PUBLIC = set(ripu_kernels.__all__)


def _module_of(path: Path) -> str:
    rel = path.relative_to(DRIVER.parent.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Uses of the library other than its public API in ``source`` (the text of ``module``)."""
    tree = ast.parse(source)
    found, aliases = [], set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "ripu_kernels":
                    aliases.add(a.asname or "ripu_kernels")
                elif a.name.startswith("ripu_kernels.") and not a.name.startswith(("ripu_kernels.driver",
                                                                                   "ripu_kernels.reference")):
                    found.append(f"line {node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ripu_kernels":
                bad = [a.name for a in node.names if a.name not in PUBLIC]
                if bad:
                    found.append(f"line {node.lineno}: from ripu_kernels import {', '.join(bad)}")
            elif target.startswith("ripu_kernels.reference"):
                bad = [a.name for a in node.names if a.name.startswith("_")] + (
                    [target] if target != "ripu_kernels.reference" else [])
                if bad:
                    found.append(f"line {node.lineno}: from {target} import {', '.join(a.name for a in node.names)}")
            elif target.startswith("ripu_kernels") and not target.startswith("ripu_kernels.driver"):
                found.append(f"line {node.lineno}: from {target} import ...")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr not in PUBLIC:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_driver_uses_only_the_public_api():
    files = sorted(DRIVER.rglob("*.py"))
    assert len(files) > 20
    problems = {str(f.relative_to(DRIVER)): v for f in files
                if (v := violations(f.read_text(encoding="utf-8"), _module_of(f), f.name == "__init__.py"))}
    assert problems == {}


def test_the_checker_catches_private_uses():
    mod = "ripu_kernels.driver.active.scoring"
    assert violations("import ripu_kernels as rk\nrk.region_scores(x)\n", mod) == []
    assert violations("from ripu_kernels import reference\nfrom ripu_kernels.reference import region_scores\n",
                      mod) == []
    assert violations("from ... import ops\n", mod) == ["line 1: from ripu_kernels import ops"]
    assert violations("from ...ops import region_scores\n", mod) == ["line 1: from ripu_kernels.ops import ..."]
    assert violations("from ripu_kernels import _dispatch\n", mod) == [
        "line 1: from ripu_kernels import _dispatch"]
    assert violations("import ripu_kernels.triton\n", mod) == ["line 1: import ripu_kernels.triton"]
    assert violations("import ripu_kernels as rk\nrk._dispatch.get()\n", mod) == ["line 2: rk._dispatch"]
    assert violations("from ripu_kernels.reference._impl import x\n", mod) != []
    assert violations("from ..io import read_png\n", mod) == []
