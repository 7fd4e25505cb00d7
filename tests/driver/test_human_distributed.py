"""active.oracle=human under torchrun (2 gloo ranks on CPU): each rank exports its shard's queries, rank 0
assembles them, the run stops; after the import a 2-rank resume ends with the simulated oracle's masks and
ledger."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from ripu_kernels.driver.cli import main
from ripu_kernels.driver.data.synthetic import SyntheticStreets

from .test_distributed import TINY, _env, _free_port


def _torchrun(tmp_path, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "ripu_kernels", "train",
           "--no-progress", *args]
    return subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)


def _state(out):
    led = json.loads((out / "state" / "ledger.json").read_text())
    for e in led["images"].values():
        for r in e["rounds"].values():
            r.pop("labelled", None)
    return led, {str(p.relative_to(out / "state")): p.read_bytes()
                 for sub in ("labels", "active") for p in sorted((out / "state" / sub).rglob("*.png"))}


def test_two_ranks_wait_for_people_and_end_like_the_simulated_oracle(tmp_path):
    sim, hum = tmp_path / "sim", tmp_path / "hum"
    assert main(["train", "--config", "demo", "--no-progress", f"out_dir={sim}", *TINY]) == 0
    proc = _torchrun(tmp_path, "--config", "demo", f"out_dir={hum}", *TINY, "active.oracle=human",
                     "active.export_formats=[label-studio]")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    q0 = hum / "queries" / "round_0"
    assert "round 0 waits for people" in proc.stdout and f"ripu import-labels {q0}" in proc.stdout
    meta = json.loads((q0 / "regions.json").read_text())
    tasks = json.loads((q0 / "label-studio" / "tasks.json").read_text())
    assert len(meta["images"]) == len(tasks) == 6  # both ranks' shards, assembled by rank 0
    assert all((q0 / "images" / e["file"]).is_file() for e in meta["images"])  # synthetic data: images written
    # the annotator: label-id PNGs named by image id, the truth inside each mask
    target = SyntheticStreets("target", "train", 6, height=24, width=48)
    for e in meta["images"]:
        mask = np.asarray(Image.open(q0 / e["mask"])) > 0
        lab = np.where(mask, target.load_label(target.index_of(e["id"])), 255).astype(np.uint8)
        (q0 / e["label"]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(lab).save(q0 / e["label"])
    assert main(["import-labels", str(q0), "--strict"]) == 0
    proc = _torchrun(tmp_path, "--resume", str(hum))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (hum / "metrics.json").is_file()
    assert _state(hum) == _state(sim)
