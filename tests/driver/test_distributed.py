"""Distributed training (2 gloo processes on CPU through torchrun) and sharded selection against one process."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ripu_kernels.driver.cli import main
from ripu_kernels.driver.data.synthetic import SyntheticStreets
from ripu_kernels.driver.data.sampling import shard_indices

ROOT = Path(__file__).resolve().parents[2]
KILL = Path(__file__).resolve().parent / "_kill.py"
# source-only steps (target losses start at the round, LCR/NL off) so that 1 and 2 ranks do the same maths
TINY = ["threads=1", "data.batch_size=2", "data.synthetic.height=24", "data.synthetic.width=48",
        "data.synthetic.n_source=8", "data.synthetic.n_target_train=6", "data.synthetic.n_target_val=4",
        "model.width=8", "train.iters=3", "active.rounds_at=[2]", "train.log_every=1", "train.checkpoint_every=2",
        "active.batch_size=4", "eval.batch_size=4", "train.lcr_weight=0", "train.nl_weight=0",
        "train.target_losses_before_rounds=false"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_shards_are_disjoint_and_cover_every_image():
    ids = [f"img{i:02d}" for i in (5, 3, 9, 0, 7, 1, 2)]
    parts = [shard_indices(ids, s, 3) for s in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(len(ids)))
    ordered = sorted(ids)
    assert sorted(ids[i] for i in parts[1]) == ordered[1::3] and parts[1] == sorted(parts[1])
    assert shard_indices(ids, 0, 1) == list(range(len(ids)))
    assert parts[2] and len(shard_indices(ids[:2], 2, 3)) == 0  # more shards than images: empty, no padding
    with pytest.raises(ValueError, match="shard must be in"):
        shard_indices(ids, 3, 3)
    with pytest.raises(ValueError, match="not unique"):
        shard_indices(["a", "a"], 0, 2)


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    assert main(["train", "--config", "demo", "--no-progress", f"out_dir={out}", *TINY]) == 0
    return out


def _torchrun(out, tmp_path, crash_at=None, resume=False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           *([str(KILL), crash_at] if crash_at else ["-m", "ripu_kernels"]), "train",
           "--no-progress", *(["--resume", str(out)] if resume else ["--config", "demo", f"out_dir={out}", *TINY])]
    return subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_two_gloo_ranks_match_one_process(one, tmp_path):
    two = tmp_path / "two"
    proc = _torchrun(two, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the acquisition round: each rank selected its own shard; the merged ledger and masks equal one process
    assert (one / "state" / "ledger.json").read_bytes() == (two / "state" / "ledger.json").read_bytes()
    m1, m2 = _files(one / "state"), _files(two / "state")
    assert len(m1) == 12 and m1.keys() == m2.keys()
    assert all(m1[k] == m2[k] for k in m1), [k for k in m1 if m1[k] != m2[k]]
    shards = sorted(p.name for p in (two / "state" / "ledgers" / "round_0").iterdir())
    assert shards == ["shard_0_of_2.json", "shard_1_of_2.json"]
    s0, s1 = (json.loads((two / "state" / "ledgers" / "round_0" / n).read_text()) for n in shards)
    assert len(s0["images"]) == len(s1["images"]) == 3  # 6 images, 3 per rank, none twice
    # training: DDP with half the global batch per rank does the maths of one process with the whole batch
    w1 = torch.load(one / "checkpoints" / "round_0.pth", weights_only=True)["model"]
    w2 = torch.load(two / "checkpoints" / "round_0.pth", weights_only=True)["model"]
    diff = max(float((w2[k] - w1[k]).abs().max()) for k in w1 if w1[k].is_floating_point())
    print(f"largest weight difference between 1 and 2 ranks after 2 steps: {diff:.3g}")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-5, rtol=1e-4, msg=lambda m: f"{k}: {m}")
    m_one = json.loads((one / "metrics.json").read_text())
    m_two = json.loads((two / "metrics.json").read_text())
    # evaluation before the round (sharded over ranks, confusion matrices summed) sees the same model
    assert m_two["rounds"][0]["labelled_fraction"] == m_one["rounds"][0]["labelled_fraction"] > 0
    assert abs(m_two["miou_before_rounds"] - m_one["miou_before_rounds"]) < 1e-6
    assert not (two / "train.rank1.log").exists() and "[round 0]" in (two / "train.log").read_text()


@pytest.mark.parametrize("resume_ranks", [1, 2])
def test_killed_two_rank_round_resumes(one, tmp_path, resume_ranks):
    """Ranks SIGKILLed inside the round: rank 0 after its journal commit, rank 1 between its masks (or
    earlier, when torchrun takes it down first); resumed on one process or on two ranks again."""
    two = tmp_path / "two"
    proc = _torchrun(two, tmp_path, crash_at="write:6")
    assert proc.returncode != 0
    rdir = two / "state" / "ledgers" / "round_0"
    assert (rdir / "shard_0_of_2.journal.npz").is_file() and not (two / "state" / "ledger.json").exists()
    if resume_ranks == 1:
        assert main(["train", "--resume", str(two), "--no-progress"]) == 0
    else:
        proc = _torchrun(two, tmp_path, resume=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (one / "state" / "ledger.json").read_bytes() == (two / "state" / "ledger.json").read_bytes()
    m1, m2 = _files(one / "state"), _files(two / "state")
    assert m1.keys() == m2.keys() and all(m1[k] == m2[k] for k in m1)
    assert not list(two.rglob("*.journal.npz"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A checkpoint of a freshly initialised tiny model and a folder of 5 target images with labels."""
    from ripu_kernels.driver.config import load_config
    from ripu_kernels.driver.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("sel")
    cfg = load_config("demo", [f"out_dir={root / 'run'}", *TINY])
    Trainer(cfg, progress=False).save_checkpoint("init.pth")
    target = SyntheticStreets("target", "train", 5, height=24, width=48, seed=4)
    for i in range(5):
        (root / "imgs" / "sub").mkdir(parents=True, exist_ok=True)
        (root / "labs" / "sub").mkdir(parents=True, exist_ok=True)
        name = f"sub/{i}" if i % 2 else f"{i}"
        Image.fromarray((target.load_image(i) * 255).astype(np.uint8)).save(root / "imgs" / f"{name}.png")
        Image.fromarray(target.load_label(i).astype(np.uint8)).save(root / "labs" / f"{name}.png")
    return root


def _select(folder, out, *extra):
    return main(["select", "--checkpoint", str(folder / "run" / "checkpoints" / "init.pth"), "--images",
                 str(folder / "imgs"), "--labels", str(folder / "labs"), "--out", str(out), "--no-progress",
                 *extra])


def test_select_shards_give_the_masks_and_ledger_of_one_run(folder, tmp_path, capsys):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    for r in range(2):
        assert _select(folder, single, "--round", str(r)) == 0
        for shard in (1, 2, 0):  # any order; the last one to finish merges the ledger
            assert _select(folder, sharded, "--round", str(r), "--shard", str(shard), "--num-shards", "3") == 0
            out = capsys.readouterr().out
            if shard != 0:
                assert "waiting for the other shards" in out
                assert not (r == 0 and (sharded / "ledger.json").exists())
        assert (single / "ledger.json").read_bytes() == (sharded / "ledger.json").read_bytes()
    a, b = _files(single), _files(sharded)
    assert len(a) == 5 * 3 and a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    led = json.loads((sharded / "ledger.json").read_text())
    assert set(led["images"]) == {"0", "2", "4", "sub/1", "sub/3"}
    assert all(set(e["rounds"]) == {"0", "1"} for e in led["images"].values())
    # merge-ledger by hand: complete rounds merge (idempotent), incomplete ones name the missing shard
    before = (sharded / "ledger.json").read_bytes()
    assert main(["merge-ledger", str(sharded), "--round", "1", "--num-shards", "3"]) == 0
    assert (sharded / "ledger.json").read_bytes() == before
    assert main(["merge-ledger", str(sharded), "--round", "1", "--num-shards", "4"]) == 2
    assert "shard_3_of_4.json" in capsys.readouterr().err


def test_killed_select_reruns_to_the_same_result(folder, tmp_path):
    single, killed = tmp_path / "single", tmp_path / "killed"
    assert _select(folder, single, "active.batch_size=2") == 0
    # killed after the journal and the shard ledger, between the masks of the 1st batch
    args = [sys.executable, str(KILL), "write:4", "select", "--checkpoint",
            str(folder / "run" / "checkpoints" / "init.pth"), "--images", str(folder / "imgs"), "--labels",
            str(folder / "labs"), "--out", str(killed), "--no-progress", "active.batch_size=2"]
    proc = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert list(killed.rglob("*.journal.npz"))
    assert _select(folder, killed, "active.batch_size=2") == 0  # the same command again
    assert (single / "ledger.json").read_bytes() == (killed / "ledger.json").read_bytes()
    a, b = _files(single), _files(killed)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_sharded_export_lists_every_image(folder, tmp_path):
    for shard in range(2):
        assert _select(folder, tmp_path / "state", "--shard", str(shard), "--num-shards", "2", "--export",
                       str(tmp_path / "export")) == 0
    meta = json.loads((tmp_path / "export" / "regions.json").read_text())
    assert [e["id"] for e in meta["images"]] == ["0", "2", "4", "sub/1", "sub/3"]
    assert all(e["regions"] for e in meta["images"])


def test_select_shard_arguments_are_checked(folder, tmp_path, capsys):
    with pytest.raises(SystemExit, match="--shard must be in"):
        _select(folder, tmp_path / "o", "--shard", "2", "--num-shards", "2")
