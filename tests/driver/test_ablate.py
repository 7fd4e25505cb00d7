"""``ripu ablate``: shared source-only phase, forks per strategy, both bounds, results, resume, refusal."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ripu_kernels.driver.ablate import QUICK
from ripu_kernels.driver.cli import main

ROOT = Path(__file__).resolve().parents[2]
KILL = Path(__file__).resolve().parent / "_kill.py"
ARGS = ["ablate", "--quick", "--seeds", "2", "--strategies", "ra,random,entropy", "--no-progress"]


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate") / "out"
    assert main([*ARGS, "--jobs", "1", "--out", str(out), "threads=1"]) == 0
    return out


def test_results_follow_the_schema(study):
    res = json.loads((study / "ablation.json").read_text())
    assert res["settings"]["strategies"] == ["ra", "random", "entropy"] and set(res["strategies"]) == {
        "ra", "random", "entropy"}
    for name, entry in res["strategies"].items():
        assert set(entry["seeds"]) == {"0", "1"}
        for curve in entry["seeds"].values():
            assert [r["round"] for r in curve] == [0, 1]
            assert all(set(r) == {"round", "labelled_fraction", "miou"} and 0 <= r["miou"] <= 100 for r in curve)
            assert 0 < curve[0]["labelled_fraction"] < curve[1]["labelled_fraction"] < 0.1
        assert len(entry["mean"]) == len(entry["std"]) == 2
        m0 = sum(c[0]["miou"] for c in entry["seeds"].values()) / 2
        assert entry["mean"][0]["miou"] == pytest.approx(m0)
    assert 0 <= res["source_only"]["miou"] <= 100 and set(res["source_only"]["seeds"]) == {"0", "1"}
    assert 0 <= res["target_supervised"]["miou"] <= 100
    md = (study / "ablation.md").read_text()
    assert "| budget | ra | random | entropy |" in md and "±" in md and "Target supervised" in md
    with Image.open(study / "ablation.png") as img:
        assert img.size[0] > 300
    assert json.loads((study / "ablate.json").read_text())["seeds"] == [0, 1]


def test_strategies_fork_from_one_source_only_phase(study):
    for seed in (0, 1):
        base = study / "runs" / f"seed_{seed}"
        src = json.loads((base / "source_only" / "source_done.json").read_text())
        assert src["iteration"] == 2
        # every fork (and the upper bound) evaluated the same source-only model before the first round ...
        before = {n: json.loads((base / n / "metrics.json").read_text())["miou_before_rounds"]
                  for n in ("ra", "random", "entropy", "target_supervised")}
        assert len(set(before.values())) == 1, before
        # ... and holds the same weights at the first round (the round's checkpoint: no step since the fork)
        w = {n: _weights(base / n / "checkpoints" / "round_0.pth") for n in ("ra", "random", "entropy")}
        assert _equal(w["ra"], w["random"]) and _equal(w["ra"], w["entropy"])
        assert not _equal(_weights(base / "ra" / "checkpoints" / "final.pth"),
                          _weights(base / "random" / "checkpoints" / "final.pth"))
        led = {n: json.loads((base / n / "state" / "ledger.json").read_text()) for n in ("ra", "random", "entropy")}
        assert {n: (d["strategy"], d["unit"]) for n, d in led.items()} == {
            "ra": ("ra", "ratio"), "random": ("random", "ratio"), "entropy": ("entropy", "ratio")}
        # the same budget schedule: ceil(28.8 / 9) = 4 windows of 3x3 or 29 single pixels per image and round
        # (24x48 at 2.5%)
        for n, d in led.items():
            for e in d["images"].values():
                assert all(rec["budget"] == (29 if n == "entropy" else 4) for rec in e["rounds"].values())
        up = json.loads((base / "target_supervised" / "state" / "ledger.json").read_text())
        assert up["unit"] == "images" and up["summary"]["labelled_fraction"] == 1.0
        assert up["summary"]["rounds"][0]["iteration"] == 2


def test_a_fork_trains_exactly_like_a_run_from_scratch(study, tmp_path):
    out = tmp_path / "scratch"
    assert main(["train", "--config", "demo", "--no-progress", f"out_dir={out}", *QUICK, "threads=1",
                 "active.strategy=random", "seed=1"]) == 0
    assert _equal(_weights(out / "checkpoints" / "final.pth"),
                  _weights(study / "runs" / "seed_1" / "random" / "checkpoints" / "final.pth"))
    assert (out / "state" / "ledger.json").read_bytes() == \
        (study / "runs" / "seed_1" / "random" / "state" / "ledger.json").read_bytes()


def test_rerun_reuses_finished_runs_and_other_settings_are_refused(study, capsys):
    metrics = sorted(study.rglob("metrics.json"))
    stamps = {p: p.stat().st_mtime_ns for p in metrics}
    before = json.loads((study / "ablation.json").read_text())
    assert main([*ARGS, "--jobs", "1", "--out", str(study), "threads=1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in metrics} == stamps
    assert json.loads((study / "ablation.json").read_text())["strategies"] == before["strategies"]
    capsys.readouterr()
    assert main([*ARGS[:3], "1", *ARGS[4:], "--out", str(study), "threads=1"]) == 2
    assert "seeds ([0, 1] -> [0])" in capsys.readouterr().err
    assert main([*ARGS, "--out", str(study), "threads=1", "train.iters=7"]) == 2
    assert "config.train.iters (6 -> 7)" in capsys.readouterr().err
    assert main(["ablate", "--quick", "--seeds", "2", "--strategies", "ra,best", "--out", str(study)]) == 2
    assert "--strategies must name strategies among" in capsys.readouterr().err


def test_killed_ablation_resumes_to_the_uninterrupted_result(study, tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # SIGKILL in the first fork of seed 0 after 5 of its 6 iterations (jobs=1: the whole ablation dies)
    proc = subprocess.run([sys.executable, str(KILL), "iteration:5", *ARGS, "--jobs", "1", "--out", str(out),
                           "threads=1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "runs" / "seed_0" / "source_only" / "source_done.json").is_file()
    assert not (out / "runs" / "seed_0" / "ra" / "metrics.json").exists()
    assert (out / "runs" / "seed_0" / "ra" / "checkpoints" / "resume.pth").is_file()
    # the same command again, now with two worker processes
    assert main([*ARGS, "--jobs", "2", "--out", str(out), "threads=1"]) == 0
    a = json.loads((study / "ablation.json").read_text())
    b = json.loads((out / "ablation.json").read_text())
    for key in ("strategies", "source_only", "target_supervised"):
        assert a[key] == b[key], key


def test_a_fork_refuses_a_config_that_changes_the_shared_phase(study, tmp_path):
    from ripu_kernels.driver.ablate import fork
    from ripu_kernels.driver.config import load_config
    from ripu_kernels.driver.errors import ConfigError

    src = study / "runs" / "seed_0" / "source_only"
    cfg = load_config("demo", [*QUICK, "threads=1", f"out_dir={tmp_path / 'x'}", "train.lr=0.01"])
    with pytest.raises(ConfigError, match=r"cannot fork .*train\.lr"):
        fork(src, cfg, tmp_path / "x")
    cfg = load_config("demo", [*QUICK, "threads=1", f"out_dir={tmp_path / 'y'}", "active.rounds_at=[3, 4]"])
    with pytest.raises(ConfigError, match="first round at 2 -> 3"):
        fork(src, cfg, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_per_class_tables_of_an_ablation(study, capsys):
    """tools/ablation_classes.py (the per-class tables of docs/benchmark-data.md) reads a finished ablation: one
    IoU row per class with the source-only model first and the bound last, and a class mix per strategy whose
    shares add up to 100."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablation_classes", ROOT / "tools" / "ablation_classes.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(study)]) == 0
    iou_table, mix_table = capsys.readouterr().out.strip().split("\n\n")
    rows = iou_table.splitlines()
    assert rows[0].split(" | ")[1] == "source_only" and rows[0].rstrip(" |").endswith("target_supervised")
    assert len(rows) == 2 + 19
    mix = {r.split(" | ")[0].strip("| "): [float(v) for v in r.strip("| ").split(" | ")[1:-1]]
           for r in mix_table.splitlines()[2:]}
    assert set(mix) == {"all target train pixels", "ra", "random", "entropy"}
    assert all(abs(sum(v) - 100) < 0.2 for v in mix.values())
