"""Kill-and-resume: a run killed (SIGKILL) at any point and resumed ends as the uninterrupted run."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ripu_kernels.driver.cli import main
from ripu_kernels.driver.data.synthetic import SyntheticStreets
from ripu_kernels.driver.data.base import collate
from ripu_kernels.driver.data.sampling import BatchStream

ROOT = Path(__file__).resolve().parents[2]
KILL = Path(__file__).resolve().parent / "_kill.py"
# 6 target images acquired in batches of 2 (3 journalled commits per round), rounds at 2 and 4,
# resume points every 3 iterations and before each round
TINY = ["threads=1", "data.batch_size=2", "data.synthetic.height=24", "data.synthetic.width=48",
        "data.synthetic.n_source=8", "data.synthetic.n_target_train=6", "data.synthetic.n_target_val=4",
        "model.width=8", "train.iters=6", "active.rounds_at=[2, 4]", "train.log_every=2",
        "train.checkpoint_every=3", "active.batch_size=2", "eval.batch_size=4"]


def _state(out: Path) -> dict[str, bytes]:
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "state").rglob("*.png"))}
    if (out / "state" / "ledger.json").exists():
        files["ledger.json"] = (out / "state" / "ledger.json").read_bytes()
    return files


def _weights(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "final.pth", weights_only=True)["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(["train", "--config", "demo", "--no-progress", f"out_dir={out}", *TINY]) == 0
    return out


def _killed_run(out: Path, crash_at: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, str(KILL), crash_at, "train", "--config", "demo", "--no-progress",
                           f"out_dir={out}", *TINY], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    return proc


@pytest.mark.parametrize("crash_at", [
    "iteration:4",   # killed after 4 steps: the last resume point is iteration 3, round 1 comes at 4
    "journal:2",     # killed inside round 0, after committing its 2nd batch, before that batch's ledger/masks
    "write:5",       # killed after round 0's first batch was recorded in the ledger, before any of its masks
    "write:8",       # killed between the masks of that batch (suppression written, labels half written)
])
def test_killed_run_resumes_to_the_uninterrupted_result(reference, tmp_path, crash_at):
    out = tmp_path / "run"
    _killed_run(out, crash_at)
    assert not (out / "metrics.json").exists() and (out / "checkpoints" / "resume.pth").is_file()
    revealed_before = {k: v for k, v in _state(out).items() if k.startswith("state/labels/")}
    if crash_at.startswith(("journal", "write")):
        assert list((out / "state" / "ledgers" / "round_0").glob("*.journal.npz"))
    # a plain `train` into the killed run's folder is refused; --resume continues it
    assert main(["train", "--config", "demo", "--no-progress", f"out_dir={out}", *TINY]) == 2
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    got, want = _state(out), _state(reference)
    assert got.keys() == want.keys()
    assert [k for k in want if got[k] != want[k]] == []
    w_got, w_want = _weights(out), _weights(reference)
    assert all(torch.equal(w_got[k], w_want[k]) for k in w_want)
    assert not list(out.rglob("*.journal.npz")) and not list(out.rglob("*.tmp"))
    # nothing revealed before the kill was overwritten
    from PIL import Image
    import io

    for name, data in revealed_before.items():
        before = np.asarray(Image.open(io.BytesIO(data)))
        after = np.asarray(Image.open(out / name))
        shown = before != 255
        np.testing.assert_array_equal(after[shown], before[shown])


def test_resume_refuses_a_changed_config_and_a_missing_run(reference, tmp_path, capsys):
    with pytest.raises(SystemExit, match="has finished"):
        main(["train", "--resume", str(reference), "--no-progress"])
    unfinished = tmp_path / "unfinished"
    shutil.copytree(reference, unfinished)
    (unfinished / "metrics.json").unlink()
    assert main(["train", "--resume", str(unfinished), "train.lr=0.1", "--no-progress"]) == 2
    assert "train.lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "holds no run" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="drop --config"):
        main(["train", "--resume", str(reference), "--config", "demo"])


class InfiniteBatches:
    """The test oracle of the data order: endless shuffled batches of a plain DataLoader, each epoch a new
    permutation from one seeded generator, the incomplete last batch dropped."""

    def __init__(self, dataset, batch_size: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.n, self.batch, self.gen, self.dataset = len(dataset), min(batch_size, len(dataset)), gen, dataset
        self._batches = iter(())

    def __next__(self) -> dict:
        batch = next(self._batches, None)
        if batch is None:
            perm = torch.randperm(self.n, generator=self.gen).tolist()
            sampler = [perm[i * self.batch:(i + 1) * self.batch] for i in range(self.n // self.batch)]
            self._batches = iter(torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate))
            batch = next(self._batches)
        return batch


def test_batch_stream_follows_the_oracle_order_and_resumes_mid_epoch():
    ds = SyntheticStreets("source", "train", 7, height=24, width=48)
    for batch in (3, 7):
        a, b = InfiniteBatches(ds, batch, 5), BatchStream(ds, batch, 5)
        assert [next(a)["index"].tolist() for _ in range(9)] == [next(b)["index"].tolist() for _ in range(9)]
    full = BatchStream(ds, 3, 11)
    seq = [next(full)["index"].tolist() for _ in range(7)]
    part = BatchStream(ds, 3, 11)
    [next(part) for _ in range(3)]
    state = part.state_dict()
    again = BatchStream(ds, 3, 11)
    again.load_state_dict(state)
    assert [next(again)["index"].tolist() for _ in range(4)] == seq[3:]
    # with workers: prefetching does not move the saved position (torchdata's StatefulDataLoader)
    w = BatchStream(ds, 3, 11, num_workers=2)
    [next(w) for _ in range(2)]
    resumed = BatchStream(ds, 3, 11, num_workers=2)
    resumed.load_state_dict(w.state_dict())
    assert [next(resumed)["index"].tolist() for _ in range(5)] == seq[2:]
    # ranks load their slices of the same global batches
    r0, r1 = BatchStream(ds, 2, 11, rank=0, world_size=2), BatchStream(ds, 2, 11, rank=1, world_size=2)
    glob = BatchStream(ds, 2, 11)
    for _ in range(5):
        assert next(r0)["index"].tolist() + next(r1)["index"].tolist() == next(glob)["index"].tolist()
    with pytest.raises(ValueError, match="divisible by the world size"):
        BatchStream(ds, 3, 11, rank=0, world_size=2)


def test_resume_with_other_workers_is_refused_naming_the_key(reference, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(reference, unfinished)
    (unfinished / "metrics.json").unlink()
    assert main(["train", "--resume", str(unfinished), "data.num_workers=1", "--no-progress"]) == 2
    assert "data.num_workers" in capsys.readouterr().err
