"""Smoke test of ``bench/``: the runner on a tiny shape writes consistent results, plots and tables; the
authors'-style baseline computes what the reference computes (so speedups are claimed against the right thing).

No timing is asserted anywhere: only that the files exist and agree with each other.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ripu_kernels as rk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import authors  # noqa: E402
from bench import _harness as H  # noqa: E402
from bench import gpu_check as bench_gpu_check  # noqa: E402
from bench import __main__ as bench_main  # noqa: E402

TABLES = ("pixel_entropy", "region_scores", "pixel_scores", "select_regions", "local_consistency_loss",
          "negative_learning_loss", "k_sweep", "size_sweep")
PUBLIC_OPS = {"pixel_entropy", "region_scores", "pixel_scores", "select_regions", "local_consistency_loss",
              "negative_learning_loss"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-out")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    # one thread: tiny shapes gain nothing from two, and a loaded machine makes OpenMP barriers crawl
    cmd = [sys.executable, "-m", "bench", "--quick", "--device", "cpu", "--shape", "1x5x12x20", "--budget", "0.01",
           "--threads", "1", "--out", str(out), "--save", str(out / "saved")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"python -m bench failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out, proc


def test_runner_writes_consistent_results(quick_run):
    out, proc = quick_run
    data = json.loads((out / "results.json").read_text())
    meta, rows = data["meta"], data["rows"]
    assert meta["device_type"] == "cpu" and meta["torch"] == torch.__version__
    assert meta["device_name"] and meta["git_sha"] and meta["main_shape"] == "1x5x12x20" and meta["complete"]
    assert meta["threads"] == 1
    assert {r["table"] for r in rows} == set(TABLES)
    assert {r["op"] for r in rows} == PUBLIC_OPS  # rows carry the public op names (the sweeps: region_scores)
    backends = set(H.backends_for(torch.device("cpu")))
    assert "authors" in backends and "reference" in backends and "triton" not in backends
    by_case: dict = {}
    for r in rows:
        assert r["status"] == "ok", r
        assert r["device"] == "cpu" and r["dtype"] == "float32"
        assert r["median_ms"] > 0 and r["repeats"] >= 1 and r["q20_ms"] <= r["q80_ms"]
        assert r["peak_mem_mib"] is None or r["peak_mem_mib"] >= 0
        by_case.setdefault((r["table"], r["case"]), {})[r["backend"]] = r
    for (op, case), group in by_case.items():
        assert set(group) == backends, (op, case, sorted(group))
        ref, auth = group["reference"], group["authors"]
        for r in group.values():  # ratios are the baseline's median over the row's median
            assert math.isclose(r["vs_reference"], ref["median_ms"] / r["median_ms"], rel_tol=1e-9)
            assert math.isclose(r["vs_authors"], auth["median_ms"] / r["median_ms"], rel_tol=1e-9)
    ks = sorted(r["x"] for r in rows if r["table"] == "k_sweep" and r["backend"] == "reference")
    assert ks == [0, 1, 2, 4, 8, 16, 32]
    sizes = sorted(r["x"] for r in rows if r["table"] == "size_sweep" and r["backend"] == "reference")
    assert sizes == [3 * 5, 6 * 10, 12 * 20]
    for table, k in (("region_scores", 1), ("pixel_scores", 32)):  # the driver's path: size= from 1/8
        size_row = by_case[(table, f"k={k} size=12x20 from 1x2")]["reference"]
        assert size_row["shape"] == "1x5x1x2" and size_row["params"] == {"k": k, "size": [12, 20]}
    assert {c for t, c in by_case if t == "local_consistency_loss"} == {"l1 n8", "kl n8"}
    assert {c for t, c in by_case if t == "negative_learning_loss"} == {"t=0.05"}
    select = by_case[("select_regions", "RA k=1")]["reference"]
    assert select["params"] == {"n": math.ceil(12 * 20 * 0.01 / 9), "radius": 1, "mask_radius": 2}
    # targets: the CPU ones, each reported (the cpu backend may or may not be built here)
    assert len(data["targets"]) == 4 and all(t["status"] in ("pass", "FAIL", "not measured")
                                             for t in data["targets"])


def test_runner_writes_markdown_and_plots(quick_run):
    out, proc = quick_run
    md = (out / "results.md").read_text()
    assert md == proc.stdout.rstrip("\n") or md in proc.stdout  # printed, then saved
    data = json.loads((out / "results.json").read_text())
    for op in TABLES:
        assert f"## {H.TABLE_TITLES[op]}" in md
    table_rows = [line for line in md.splitlines() if line.startswith("| ") and " | float32 | cpu | " in line]
    assert len(table_rows) == len(data["rows"])
    assert "## targets" in md
    assert sorted(data["plots"]) == ["k_sweep.png", "size_sweep.png"]
    for name in data["plots"]:
        blob = (out / name).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 1000
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"


def test_save_names_the_machine_and_renders_the_readme_table(quick_run):
    """--save writes <machine>.json/.md named after the CPU model (and '-quick'), with the machine, versions, SHA
    and date inside; bench.readme_table renders the README's table from it, one row per op case."""
    out, proc = quick_run
    saved = sorted((out / "saved").glob("*.json"))
    assert len(saved) == 1, saved
    data = json.loads(saved[0].read_text())
    meta = data["meta"]
    assert saved[0].stem == meta["machine"] == H.machine_name(meta)
    assert saved[0].stem.startswith("cpu-") and saved[0].stem.endswith("-quick")
    assert H.slug(meta["cpu_model"].replace("(R)", " ").replace("(TM)", " ")).split("-")[0] in saved[0].stem
    for key in ("cpu_model", "cpu_count", "threads", "torch", "triton", "git_sha", "time_utc"):
        assert key in meta
    assert (out / "saved" / (saved[0].stem + ".md")).read_text().startswith("# ripu_kernels benchmarks")
    proc2 = subprocess.run([sys.executable, "-m", "bench.readme_table", str(saved[0])], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert proc2.returncode == 0, proc2.stderr
    table = proc2.stdout
    assert "Quick run" in table and meta["git_sha"][:10] in table and meta["device_name"] in table
    body = [line for line in table.splitlines() if line.startswith("| `")]
    cases = {(r["table"], r["case"]) for r in data["rows"] if r["table"] in PUBLIC_OPS}
    assert len(body) == len(cases)
    for op in PUBLIC_OPS:
        assert any(line.startswith(f"| `{op}` |") for line in body), op
    k1 = next(line for line in body if line.startswith("| `region_scores` | k=1 |"))
    ref = next(r for r in data["rows"] if (r["table"], r["case"], r["backend"]) == ("region_scores", "k=1",
                                                                                    "reference"))
    from bench.readme_table import fmt_time
    assert fmt_time(ref["median_ms"]) in k1


def test_readme_table_refuses_other_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"rows": []}')
    proc = subprocess.run([sys.executable, "-m", "bench.readme_table", str(bad)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "not a results file" in proc.stderr


def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The GPU check's plumbing on tiny shapes on the CPU: copy bandwidth, the k sweep of both score ops, size=,
    the RA round and the zero plateau, both losses, GB/s against the copy, the pass/fail targets."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-m", "bench", "--device", "cpu", "--preset", "gpu-check", "--dry-run",
                           "--threads", "1", "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    meta, rows = data["meta"], data["rows"]
    assert meta["preset"] == "gpu-check" and meta["dry_run"] and meta["complete"] and meta["copy_gbps"] > 0
    assert meta["machine"].endswith("-gpu-check-dry-run")
    copy = [r for r in rows if r["table"] == "copy"]
    assert len(copy) == 1 and copy[0]["backend"] == "torch" and copy[0]["gbps"] == meta["copy_gbps"]
    for op in ("region_scores", "pixel_scores"):
        ks = sorted(r["params"]["k"] for r in rows if r["table"] == op and r["backend"] == "reference"
                    and r["params"].get("size") is None)
        assert ks == [1, 2, 4, 8, 16, 32, 64]
        assert any(r["table"] == op and r["params"].get("size") == [32, 64] for r in rows)
    assert {r["case"] for r in rows if r["table"] == "select_regions"} == {"RA k=1", "RA k=1, 99.9% zeros"}
    timed = [r for r in rows if r["status"] == "ok" and r["table"] != "copy" and r["bytes"]]
    assert timed and all(r["gbps"] > 0 and math.isclose(r["pct_copy"], 100 * r["gbps"] / meta["copy_gbps"])
                         for r in timed)
    ra = [r for r in rows if r["case"] == "RA k=1" and r["status"] == "ok"]
    assert ra and all(r["host_sync"] == "not checked (CPU)" for r in ra)
    skipped = [r for r in rows if r["backend"] == "authors" and r["status"] == "skipped"]
    assert skipped and all("gpu-check runs the authors' baseline only" in r["note"] for r in skipped)
    targets = data["targets"]
    assert {t["target"] for t in targets} == {t.text for t in bench_gpu_check.TARGETS}
    assert all(t["note"].startswith("dry run") and t["status"] in ("pass", "FAIL", "not measured") for t in targets)
    md = (tmp_path / "results.md").read_text()
    assert "% copy" in md and "measured device-to-device copy" not in md  # CPU: no GPU header line
    assert "## targets" in md and "dry run" in md
    # the same rows as a GPU run reports them (GPU header lines, bandwidth columns): the report of a real
    # gpu-check must render, it cannot be tried here otherwise
    from bench import _harness

    gpu_meta = {**meta, "device_type": "cuda", "device_name": "NVIDIA H200", "peak_gbps": 4800.0,
                "driver": "580.159", "cuda": "13.0"}
    gpu_md = _harness.markdown(gpu_meta, rows, targets, [])
    assert f"measured device-to-device copy: {meta['copy_gbps']:.0f} GB/s" in gpu_md
    assert "% peak" in gpu_md and "driver 580.159" in gpu_md


def test_cuda_without_a_gpu_fails_at_once():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, "-m", "bench", "--device", "cuda", "--preset", "gpu-check", "--out",
                           "unused-bench-out"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "torch sees no CUDA device" in proc.stderr and "nothing was run" in proc.stderr
    assert not (ROOT / "unused-bench-out").exists()


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--quick", "--out", "--ops", "--backends", "--device", "--shape", "--budget", "--threads", "--preset",
                "--dry-run", "--save"):
        assert opt in text


@pytest.mark.parametrize("bad", [["--shape", "1x19x0x4"], ["--ops", "nonsense"], ["--backends", "gpu"]])
def test_bad_arguments_are_named(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main.main(bad)
    assert exc.value.code == 2 and bad[0] in capsys.readouterr().err


def test_peak_bandwidth_table():
    assert H.peak_bandwidth_gbps("NVIDIA H100 80GB HBM3") == 3350.0
    assert H.peak_bandwidth_gbps("NVIDIA H100 PCIe") == 2000.0
    assert H.peak_bandwidth_gbps("NVIDIA H200") == 4800.0
    assert H.peak_bandwidth_gbps("NVIDIA A100-SXM4-80GB") == 2039.0
    assert H.peak_bandwidth_gbps("NVIDIA A100-SXM4-40GB") == 1555.0
    assert H.peak_bandwidth_gbps("Some Future GPU") is None


# ------------------------------------------------------------------ the baseline computes the same quantities
def _logits(shape=(2, 19, 23, 31), seed=0):
    return H.smooth_logits(shape, "cpu", seed=seed, cell=4)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_authors_region_scores_match_reference(k):
    x = _logits()
    score, impurity, uncertainty = authors.region_scores(x, k=k)
    ref = rk.reference.region_scores(x, k=k)
    # the authors add 1e-6 inside the logarithms: a few 1e-6 per pixel after normalisation by log C
    torch.testing.assert_close(impurity, ref.impurity, atol=5e-5, rtol=0)
    torch.testing.assert_close(uncertainty, ref.uncertainty, atol=5e-5, rtol=0)
    torch.testing.assert_close(score, ref.score, atol=5e-5, rtol=0)


def test_authors_pixel_scores_match_reference():
    x = _logits()
    score, purity, entropy = authors.pixel_scores(x, k=2)
    ref = rk.reference.pixel_scores(x, k=2)
    log_c = math.log(x.shape[1])  # the authors' PA maps are not normalised
    torch.testing.assert_close(purity / log_c, ref.impurity, atol=5e-5, rtol=0)
    torch.testing.assert_close(entropy / log_c, ref.uncertainty, atol=5e-5, rtol=0)
    torch.testing.assert_close(authors.pixel_entropy(x), rk.reference.pixel_entropy(x), atol=5e-5, rtol=0)


@pytest.mark.parametrize("radius,mask_radius", [(1, 2), (0, 3)])
def test_authors_selection_matches_reference(radius, mask_radius):
    g = torch.Generator().manual_seed(3)
    score = torch.rand((2, 40, 50), generator=g)  # distinct values: no ties, so the tie rules do not matter
    active = torch.rand((2, 40, 50), generator=g) < 0.1
    n = 12
    centers, act, sel = authors.select_regions(score, n, radius=radius, mask_radius=mask_radius, active=active)
    ref = rk.reference.select_regions(score, n, radius=radius, mask_radius=mask_radius, active=active)
    assert torch.equal(ref.counts, torch.full((2,), n))
    assert torch.equal(centers, ref.centers)
    assert torch.equal(act, ref.active) and torch.equal(sel, ref.selected)


@pytest.mark.parametrize("kind", ["l1", "kl"])
def test_authors_losses_match_reference(kind):
    x = _logits((2, 7, 17, 19)).requires_grad_(True)
    labels = H.label_map((2, 7, 17, 19), "cpu")
    got = authors.local_consistency_loss(x, labels, kind=kind)
    want = rk.reference.local_consistency_loss(x, labels, kind=kind)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    g_got, = torch.autograd.grad(got, x)
    g_want, = torch.autograd.grad(want, x)
    torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-3)
    nl_got = authors.negative_learning_loss(x, 0.05)
    torch.testing.assert_close(nl_got, rk.reference.negative_learning_loss(x, 0.05), atol=1e-6, rtol=1e-5)
