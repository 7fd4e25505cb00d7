"""Round-level budget units (pool, images) over 2 gloo ranks and after a kill: the result of one process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from ripu_kernels.driver.cli import main

from .test_distributed import KILL, ROOT, TINY, _env, _files, _free_port

UNITS = {"pool": ["active.unit=pool", "active.ratio=0.2"],
         "images": ["active.unit=images", "active.ratio=0.5", "active.strategy=entropy"]}


def _torchrun(out, tmp_path, extra, crash_at=None):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           *([str(KILL), crash_at] if crash_at else ["-m", "ripu_kernels"]), "train", "--no-progress",
           "--config", "demo", f"out_dir={out}", *TINY, *extra]
    return subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", params=sorted(UNITS))
def single(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"one_{request.param}")
    assert main(["train", "--config", "demo", "--no-progress", f"out_dir={out}", *TINY, *UNITS[request.param]]) == 0
    return request.param, out


def test_two_gloo_ranks_take_the_round_level_budget_of_one_process(single, tmp_path):
    unit, one = single
    two = tmp_path / "two"
    proc = _torchrun(two, tmp_path, UNITS[unit])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (one / "state" / "ledger.json").read_bytes() == (two / "state" / "ledger.json").read_bytes()
    m1, m2 = _files(one / "state"), _files(two / "state")
    assert m1.keys() == m2.keys() and all(m1[k] == m2[k] for k in m1)
    led = json.loads((two / "state" / "ledger.json").read_text())
    budget = led["round_budgets"]["0"]
    assert budget["unit"] == unit and led["unit"] == unit
    field = "regions" if unit == "pool" else "images"
    taken = sum(e["rounds"]["0"][field] for e in led["images"].values())
    # 6 images of 24x48: pool ceil(6 * 1152 * 0.2 / 9) = 154 windows; images ceil(6 * 0.5) = 3 whole images
    assert budget[field] == (154 if unit == "pool" else 3) and 0 < taken <= budget[field]
    if unit == "images":
        assert taken == 3 and led["summary"]["labelled_fraction"] == 0.5
    # each rank held 3 images; the plan ranked all 6 (candidates from both ranks)
    shards = [json.loads((two / "state" / "ledgers" / "round_0" / f"shard_{s}_of_2.json").read_text())
              for s in range(2)]
    assert [len(s["images"]) for s in shards] == [3, 3]
    assert (two / "state" / "ledgers" / "round_0" / "plan.npz").is_file()


def test_a_round_killed_after_its_plan_resumes_to_the_same_masks(single, tmp_path):
    unit, one = single
    out = tmp_path / "killed"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, str(KILL), "journal:1", "train", "--config", "demo", "--no-progress",
                           f"out_dir={out}", *TINY, *UNITS[unit], "active.batch_size=2"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "state" / "ledgers" / "round_0" / "plan.npz").is_file()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert (one / "state" / "ledger.json").read_bytes() == (out / "state" / "ledger.json").read_bytes()
    m1, m2 = _files(one / "state"), _files(out / "state")
    assert m1.keys() == m2.keys() and all(m1[k] == m2[k] for k in m1)
