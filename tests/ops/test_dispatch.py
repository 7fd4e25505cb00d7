import os
import subprocess
import sys

import pytest
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


# ----------------------------------------------------------------------------- auto on CUDA: the verified table
def test_auto_on_cuda_runs_the_reference_until_a_gpu_run_verified_a_backend(monkeypatch):
    from ripu_kernels import _verified

    cuda = torch.device("cuda")
    monkeypatch.setattr(_verified, "VERIFIED", {})
    for op in ("pixel_entropy", "region_scores", "select_regions", "local_consistency_loss"):
        assert _dispatch.auto_candidates(op, cuda) == ("reference",)
        assert _dispatch.resolve(op, "auto", cuda) == "reference"


def test_auto_on_cuda_takes_the_first_available_verified_backend(monkeypatch):
    from ripu_kernels import _verified

    cuda = torch.device("cuda")
    monkeypatch.setattr(_verified, "VERIFIED", {"region_scores": ("triton", "cuda"), "pixel_scores": ("cuda",)})
    available = {"reference": None, "cuda": None, "triton": "pretend triton is missing"}
    monkeypatch.setattr(_dispatch, "unavailable_reason", lambda name, device: available[name])
    assert _dispatch.resolve("region_scores", "auto", cuda) == "cuda"     # triton first, but unavailable
    assert _dispatch.resolve("pixel_scores", "auto", cuda) == "cuda"
    assert _dispatch.resolve("select_regions", "auto", cuda) == "reference"  # not in the table
    available["triton"] = None
    assert _dispatch.resolve("region_scores", "auto", cuda) == "triton"
    # explicit choices ignore the table
    assert _dispatch.resolve("select_regions", "cuda", cuda) == "cuda"


def test_available_backends_still_lists_what_can_run(monkeypatch):
    monkeypatch.setattr(_dispatch, "unavailable_reason",
                        lambda name, device: None if name in ("cuda", "reference") else "no")
    assert _dispatch.available_backends("cuda") == ["cuda", "reference"]


# ------------------------------------------------------------------ the compiled extension: missing or stale
def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **env))


_FALLBACK = """
import sys, types, warnings
{setup}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch, ripu_kernels as rk
    x = torch.randn(1, 3, 5, 6)
    a = rk.region_scores(x).score
    b = rk.region_scores(x).score
    torch.testing.assert_close(a, rk.region_scores(x, backend="reference").score)
mine = [w for w in caught if issubclass(w.category, rk.ExtensionUnavailableWarning)]
assert len(mine) == 1, [str(w.message) for w in caught]
print("WARNING:", mine[0].message)
print("AUTO:", rk._dispatch.resolve("region_scores", "auto", torch.device("cpu")))
try:
    rk.region_scores(x, backend="cpu")
except ValueError as exc:
    print("EXPLICIT:", exc)
"""


def test_extension_that_fails_to_load_falls_back_to_the_reference_with_one_warning():
    res = _python(_FALLBACK.format(setup="sys.modules['ripu_kernels._C'] = None  # an import that fails"))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "AUTO: reference" in out
    assert "WARNING: ripu_kernels: the compiled extension is unavailable" in out and "ripu_kernels._C" in out
    assert "EXPLICIT: ripu::region_scores: backend 'cpu' is not available for a cpu tensor: it could not be imported" \
        in out


def test_stale_extension_is_reported_with_both_versions():
    fake = ("stale = types.ModuleType('ripu_kernels._C'); stale.TORCH_VERSION = '1.0.0'; stale.WITH_CUDA = 0\n"
            "sys.modules['ripu_kernels._C'] = stale")
    res = _python(_FALLBACK.format(setup=fake))
    assert res.returncode == 0, res.stderr
    assert f"built against torch 1.0.0, running torch {torch.__version__}: rebuild with" in res.stdout
    assert "AUTO: reference" in res.stdout


@pytest.mark.skipif(_dispatch.unavailable_reason("cpu", torch.device("cpu")) is not None, reason="no extension")
def test_extension_records_the_torch_it_was_built_against():
    from ripu_kernels import _C

    assert _C.TORCH_VERSION == torch.__version__
    assert _C.WITH_CUDA in (0, 1)


def test_backends_are_imported_with_the_package_not_in_an_op_call():
    """torch.compile cannot trace an import: every backend module is loaded once, at package import."""
    code = ("import sys, ripu_kernels\n"
            "from ripu_kernels import _dispatch\n"
            "assert set(_dispatch._LOADED) == set(_dispatch.BACKENDS), _dispatch._LOADED\n"
            "assert 'ripu_kernels.reference._impl' in sys.modules")
    res = _python(code)
    assert res.returncode == 0, res.stderr
