import os
import subprocess
import sys

import torch

import ripu_kernels as rk
from ripu_kernels import _dispatch


def test_reference_always_available():
    assert "reference" in rk.available_backends("cpu")
    assert _dispatch.unavailable_reason("reference", torch.device("cpu")) is None


def test_auto_on_cpu_prefers_the_compiled_backend():
    expected = "cpu" if _dispatch.unavailable_reason("cpu", torch.device("cpu")) is None else "reference"
    assert _dispatch.resolve("region_scores", "auto", torch.device("cpu")) == expected


def test_available_backends_lists_auto_choice_first():
    assert rk.available_backends("cpu")[0] == _dispatch.resolve("pixel_entropy", "auto", torch.device("cpu"))


def test_reference_module_pins_the_backend():
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(rk.reference.region_scores(x).score, rk.region_scores(x, backend="reference").score)
    try:
        rk.reference.region_scores(x, backend="cpu")
    except TypeError as exc:
        assert "takes no backend" in str(exc)
    else:
        raise AssertionError("reference accepted a backend argument")


def test_package_imports_without_triton_imported():
    code = "import sys, ripu_kernels; assert 'triton' not in sys.modules, 'triton imported eagerly'"
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
