"""The build's promises: Python >= 3.10 everywhere (requirement, wheel tag, stable-ABI level), one Py_LIMITED_API
definition (torch's), the Triton minimum the kernels need, an arch list for CUDA builds without a GPU."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch.utils.cpp_extension as cpp_extension

SETUP = Path(__file__).resolve().parents[2] / "setup.py"


def _setup_tree() -> ast.Module:
    return ast.parse(SETUP.read_text())


def _constant(name: str):
    for node in _setup_tree().body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py defines no {name}")


def _setup_keyword(name: str):
    for node in ast.walk(_setup_tree()):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for kw in node.keywords:
                if kw.arg == name:
                    return kw.value
    raise AssertionError(f"setup() has no {name}=")


def test_python_requirement_wheel_tag_and_stable_abi_agree():
    requires = ast.literal_eval(_setup_keyword("python_requires"))
    assert requires == ">=3.10"
    tag = _constant("PY_LIMITED")
    assert tag == "cp310"
    major, minor = 3, int(tag[3:])
    assert requires == f">={major}.{minor}"
    # torch's BuildExtension defines Py_LIMITED_API itself, to the oldest CPython it supports: it must be the level
    # the wheel is tagged with, and setup.py must not define it a second time (the "redefined" warning).
    level = getattr(cpp_extension, "min_supported_cpython", None)
    if level is not None:
        assert int(level, 16) >> 16 == (major << 8 | minor), f"torch builds for {level}, the wheel says {tag}"
    assert "Py_LIMITED_API\"" not in SETUP.read_text() and "(\"Py_LIMITED_API\"" not in SETUP.read_text()


def test_triton_extra_and_cuda_arch_default():
    extras = _setup_keyword("extras_require")
    triton = [v for k, v in zip(extras.keys, extras.values) if ast.literal_eval(k) == "triton"]
    assert [ast.literal_eval(v) for v in triton] == [["triton>=3.3"]]  # tl.gather
    archs = _constant("DEFAULT_CUDA_ARCHS")
    assert re.fullmatch(r"\d+\.\d+(;\d+\.\d+)*", archs)
    assert 'setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)' in SETUP.read_text()


def test_built_extension_is_stable_abi():
    import ripu_kernels

    built = list(Path(ripu_kernels.__file__).parent.glob("_C*.so"))
    if not built:
        pytest.skip("the extension is not built")
    assert all(p.name == "_C.abi3.so" for p in built), built
