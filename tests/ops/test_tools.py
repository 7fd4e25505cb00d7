"""The GPU-check tooling on a machine without a GPU: the script's refusal and dry run, the report's per-op verdicts,
and the verified table that ``backend="auto"`` follows on CUDA tensors (tools/gpu_check.sh, gpu_check_report.py,
update_verified.py)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
HAS_GPU = torch.cuda.is_available() or shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidia0")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_script(tmp_path, **env):
    full = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(TOOLS / "gpu_check.sh")], capture_output=True, text=True, env=full, cwd=ROOT,
                          timeout=120)


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: the script would run for real")
def test_gpu_check_refuses_a_machine_without_gpu(tmp_path):
    res = _run_script(tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "no CUDA GPU" in res.stderr and "RIPU_GPU_CHECK_DRY_RUN=1" in res.stderr
    assert not (tmp_path / "out").exists(), "it must stop before writing anything"


def test_gpu_check_dry_run_plumbing(tmp_path):
    res = _run_script(tmp_path, RIPU_GPU_CHECK_DRY_RUN="1")
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    names = [s["name"] for s in summary["steps"]]
    assert names == ["provenance", "build", "cuda-available", "tests-cuda", "tests-triton", "tests-cpu",
                     "sanitizer-memcheck", "sanitizer-racecheck", "timings", "bench"]
    assert all(s["status"] == "dry-run" for s in summary["steps"][1:]) and summary["steps"][0]["status"] == "pass"
    logs = {p.stem: p.read_text() for p in (out / "logs").glob("*.log")}
    assert "TORCH_CUDA_ARCH_LIST" in logs["build"] and "build_ext --inplace --force" in logs["build"]
    assert "-m gpu" in logs["tests-cuda"] and "--junitxml" in logs["tests-cuda"]
    assert "test_triton_backend.py" in logs["tests-triton"]
    assert "--tool memcheck" in logs["sanitizer-memcheck"] and "--tool racecheck" in logs["sanitizer-racecheck"]
    assert "--preset gpu-check" in logs["bench"] and "gpu_timings.py" in logs["timings"]
    assert summary["provenance"]["torch"] == torch.__version__
    assert "DRY RUN" in (out / "summary.md").read_text()
    results = list((out / "bench" / "results").glob("*.json"))
    assert len(results) == 1 and json.loads(results[0].read_text())["dry_run"] is True


def _junit(path: Path, cases: dict[str, str]) -> None:
    body = []
    for nodeid, outcome in cases.items():
        cls, name = nodeid.split("::")
        inner = {"pass": "", "fail": "<failure message='x'/>", "skip": "<skipped message='x'/>"}[outcome]
        body.append(f'<testcase classname="{cls}" name="{name}">{inner}</testcase>')
    path.write_text(f"<testsuites><testsuite>{''.join(body)}</testsuite></testsuites>")


def _fake_run(out: Path, steps: dict[str, str], cuda: dict, triton: dict, primary: dict) -> None:
    out.mkdir(parents=True)
    (out / "steps.tsv").write_text("".join(f"{n}\t{s}\t1\tyes\n" for n, s in steps.items()))
    (out / "provenance.json").write_text(json.dumps({"gpu": "NVIDIA H200", "git_sha": "abc123", "git_dirty": False,
                                                     "torch": "2.11.0+cu130", "triton": "3.6.0"}))
    _junit(out / "junit-cuda.xml", cuda)
    _junit(out / "junit-triton.xml", triton)
    (out / "timings.json").write_text(json.dumps({"primary": primary, "rows": [], "copy_gbps": 4000.0}))


STEPS_OK = {"provenance": "pass", "build": "pass", "cuda-available": "pass", "tests-cuda": "pass",
            "tests-triton": "pass", "sanitizer-memcheck": "pass", "sanitizer-racecheck": "skipped"}
PRIMARY = {"region_scores": {"reference": 9.0, "cuda": 0.5, "triton": 0.4},
           "pixel_scores": {"reference": 9.0, "cuda": 0.6, "triton": 12.0},
           "select_regions": {"reference": 900.0, "cuda": 1.0, "triton": 1.0},
           "pixel_entropy": {"reference": 3.0, "cuda": 0.3}}


def test_report_verifies_per_op(tmp_path):
    report = _load("gpu_check_report")
    cuda = {"tests.ops.test_cuda_backend::test_scores_parity[region_scores-float32]": "pass",
            "tests.ops.test_gpu_real_sizes::test_pixel_scores_real_size[cuda-contiguous]": "pass",
            "tests.ops.test_gpu_real_sizes::test_select_regions_many_exact_zeros[cuda]": "fail",
            "tests.ops.test_cuda_backend::test_pixel_entropy_parity[float32]": "pass"}
    triton = {"tests.ops.test_triton_backend::test_region_scores[contiguous]": "pass",
              "tests.ops.test_gpu_real_sizes::test_pixel_scores_real_size[triton-contiguous]": "pass",
              "tests.ops.test_triton_backend::test_nl_forward": "skip"}
    _fake_run(tmp_path / "out", STEPS_OK, cuda, triton, PRIMARY)
    assert report.write_report(tmp_path / "out") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    v = summary["verified"]
    assert v["region_scores"] == ["triton", "cuda"]       # both verified, triton measured faster
    assert v["pixel_scores"] == ["cuda"]                  # triton verified but slower than the reference
    assert v["select_regions"] == []                      # cuda failed a selection test, triton ran none
    assert v["pixel_entropy"] == ["cuda"]
    assert v["local_consistency_loss"] == [] and v["negative_learning_loss"] == []  # no test ran
    assert "failing" in summary["ops"]["select_regions"]["cuda"]["why_not"]
    assert summary["ops"]["negative_learning_loss"]["triton"]["why_not"] == "no test of this op ran"
    assert (tmp_path / "out" / "bench" / "results" / "nvidia-h200.json").exists()


def test_report_holds_an_unattributed_failure_or_sanitizer_errors_against_every_op(tmp_path):
    report = _load("gpu_check_report")
    cuda = {"tests.ops.test_cuda_backend::test_scores_parity[region_scores-float32]": "pass",
            "tests.ops.test_cuda_backend::test_empty_inputs": "fail"}
    _fake_run(tmp_path / "a", STEPS_OK, cuda, {}, PRIMARY)
    report.write_report(tmp_path / "a")
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["verified"]["region_scores"] == []
    cuda = {"tests.ops.test_cuda_backend::test_scores_parity[region_scores-float32]": "pass"}
    _fake_run(tmp_path / "b", {**STEPS_OK, "sanitizer-memcheck": "fail"}, cuda, {}, PRIMARY)
    assert report.write_report(tmp_path / "b") == 1  # a required step failed
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["verified"]["region_scores"] == [] and not summary["ok"]


def test_update_verified_writes_an_importable_table(tmp_path):
    report, update = _load("gpu_check_report"), _load("update_verified")
    cuda = {"tests.ops.test_cuda_backend::test_scores_parity[region_scores-float32]": "pass"}
    _fake_run(tmp_path / "out", STEPS_OK, cuda, {}, PRIMARY)
    report.write_report(tmp_path / "out")
    target = tmp_path / "_verified.py"
    assert update.main([str(tmp_path / "out" / "summary.json"), "--out", str(target)]) == 0
    spec = importlib.util.spec_from_file_location("v", target)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert table.VERIFIED == {"region_scores": ("cuda",)}
    assert table.PROVENANCE["gpu"] == "NVIDIA H200" and table.PROVENANCE["git_sha"] == "abc123"


@pytest.mark.parametrize("change,message", [
    (lambda s: s.update(dry_run=True), "dry run"),
    (lambda s: s.update(ok=False), "did not pass"),
    (lambda s: s["provenance"].update(git_dirty=True), "uncommitted changes"),
    (lambda s: s["verified"].update(region_scores=["gpu"]), "unknown backend"),
])
def test_update_verified_refuses_runs_it_cannot_trust(tmp_path, change, message):
    update = _load("update_verified")
    summary = {"ok": True, "dry_run": False, "steps": [],
               "provenance": {"gpu": "NVIDIA H200", "git_sha": "abc", "git_dirty": False},
               "verified": {"region_scores": ["cuda"]}}
    change(summary)
    with pytest.raises(ValueError, match=message):
        update.build_table(summary)


def test_committed_table_is_consistent():
    """The committed table names only known ops and backends, and records where it comes from when not empty."""
    from ripu_kernels import _verified
    from ripu_kernels.ops import __all__ as ops

    for op, backends in _verified.VERIFIED.items():
        assert op in ops and backends and set(backends) <= {"cuda", "triton"}
    if _verified.VERIFIED:
        assert _verified.PROVENANCE and _verified.PROVENANCE.get("gpu") and _verified.PROVENANCE.get("git_sha")
