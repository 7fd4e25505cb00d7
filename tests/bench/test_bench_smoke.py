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
from bench import __main__ as bench_main  # noqa: E402

TABLES = ("pixel_entropy", "region_scores", "pixel_scores", "select_regions", "losses", "k_sweep", "size_sweep")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-out")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    # one thread: tiny shapes gain nothing from two, and a loaded machine makes OpenMP barriers crawl
    cmd = [sys.executable, "-m", "bench", "--quick", "--device", "cpu", "--shape", "1x5x12x20", "--budget", "0.01",
           "--threads", "1", "--out", str(out)]
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
    assert {r["op"] for r in rows} == set(TABLES)
    backends = set(H.backends_for(torch.device("cpu")))
    assert "authors" in backends and "reference" in backends and "triton" not in backends
    by_case: dict = {}
    for r in rows:
        assert r["status"] == "ok", r
        assert r["device"] == "cpu" and r["dtype"] == "float32"
        assert r["median_ms"] > 0 and r["repeats"] >= 1 and r["q20_ms"] <= r["q80_ms"]
        assert r["peak_mem_mib"] is None or r["peak_mem_mib"] >= 0
        by_case.setdefault((r["op"], r["case"]), {})[r["backend"]] = r
    for (op, case), group in by_case.items():
        assert set(group) == backends, (op, case, sorted(group))
        ref, auth = group["reference"], group["authors"]
        for r in group.values():  # ratios are the baseline's median over the row's median
            assert math.isclose(r["vs_reference"], ref["median_ms"] / r["median_ms"], rel_tol=1e-9)
            assert math.isclose(r["vs_authors"], auth["median_ms"] / r["median_ms"], rel_tol=1e-9)
    ks = sorted(r["x"] for r in rows if r["op"] == "k_sweep" and r["backend"] == "reference")
    assert ks == [0, 1, 2, 4, 8, 16, 32]
    sizes = sorted(r["x"] for r in rows if r["op"] == "size_sweep" and r["backend"] == "reference")
    assert sizes == [3 * 5, 6 * 10, 12 * 20]
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


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--quick", "--out", "--ops", "--backends", "--device", "--shape", "--budget", "--threads"):
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
