"""Small end-to-end runs of the driver on the embedded data: train, eval, select and demo through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import sys
from pathlib import Path

from ripu_kernels.driver.cli import main
from ripu_kernels.driver.data.synthetic import SyntheticStreets

TINY = ["threads=1", "data.batch_size=2", "data.synthetic.height=24", "data.synthetic.width=48",
        "data.synthetic.n_source=8", "data.synthetic.n_target_train=6", "data.synthetic.n_target_val=4",
        "model.width=8", "train.iters=6", "active.rounds_at=[2, 4]", "train.log_every=2",
        "train.checkpoint_every=3", "active.batch_size=4", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--config", "demo", "--no-progress", f"out_dir={out}", *TINY]) == 0
    return out


def test_train_writes_the_full_state(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert [r["iteration"] for r in metrics["rounds"]] == [2, 4]
    assert all(0 <= r["miou"] <= 100 for r in metrics["rounds"])
    ledger = json.loads((run / "state" / "ledger.json").read_text())
    # 24x48 at 5% over 2 rounds: ceil(1152 * 0.025 / 9) = 4 regions of 3x3 per image per round
    for entry in ledger["images"].values():
        for rec in entry["rounds"].values():
            assert rec["budget"] == 4 and rec["regions"] <= 4 and rec["pixels"] <= 36
    # the SPEC rounds picks up (ceil), so at most 2 rounds x 36 pixels of 1152 per image
    assert metrics["labelled_fraction"] == ledger["summary"]["labelled_fraction"] <= 2 * 36 / 1152
    assert metrics["labelled_pixels"] == sum(r["pixels"] for r in ledger["summary"]["rounds"])
    for name in ("round_0.pth", "round_1.pth", "iter_000003.pth", "iter_000006.pth", "final.pth"):
        assert (run / "checkpoints" / name).is_file(), name
    log = (run / "train.log").read_text()
    assert "[round 1] iteration 4" in log and "[final]" in log
    # masks: the simulated oracle's truth inside the revealed windows, 255 elsewhere
    target = SyntheticStreets("target", "train", 6, height=24, width=48)
    for i in range(6):
        revealed = np.asarray(Image.open(run / "state" / "labels" / (target.image_id(i) + ".png")))
        shown = revealed != 255
        assert shown.sum() == ledger["images"][target.image_id(i)]["rounds"]["0"]["pixels"] + \
            ledger["images"][target.image_id(i)]["rounds"]["1"]["pixels"]
        np.testing.assert_array_equal(revealed[shown], target.load_label(i)[shown])
    assert not list(run.rglob("*.tmp"))


def test_eval_reproduces_the_final_miou(run, capsys, tmp_path):
    assert main(["eval", "--checkpoint", str(run / "checkpoints" / "final.pth"), "--no-progress",
                 "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    final = json.loads((run / "metrics.json").read_text())["miou_final"]
    assert json.loads((tmp_path / "e.json").read_text())["miou"] == pytest.approx(final, abs=1e-9)
    assert "road" in out and "mIoU" in out
    assert main(["eval", "--checkpoint", str(run / "checkpoints" / "final.pth"), "--flip", "--no-progress"]) == 0


def test_select_on_a_folder(run, tmp_path, capsys):
    target = SyntheticStreets("target", "train", 3, height=24, width=48, seed=9)
    for i in range(3):
        (tmp_path / "imgs").mkdir(exist_ok=True)
        (tmp_path / "labs").mkdir(exist_ok=True)
        Image.fromarray((target.load_image(i) * 255).astype(np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
        Image.fromarray(target.load_label(i).astype(np.uint8)).save(tmp_path / "labs" / f"{i}.png")
    ckpt = str(run / "checkpoints" / "final.pth")
    out = tmp_path / "sel"
    for r in range(2):
        assert main(["select", "--checkpoint", ckpt, "--images", str(tmp_path / "imgs"), "--labels",
                     str(tmp_path / "labs"), "--out", str(out), "--round", str(r), "--no-progress"]) == 0
    ledger = json.loads((out / "ledger.json").read_text())
    assert len(ledger["summary"]["rounds"]) == 2
    for i in range(3):
        sel = np.asarray(Image.open(out / "selected" / f"{i}.png")) > 0
        revealed = np.asarray(Image.open(out / "labels" / f"{i}.png"))
        assert sel.sum() == ledger["images"][str(i)]["rounds"]["1"]["pixels"]
        assert (revealed[sel] == target.load_label(i)[sel]).all()
    # without labels: selection masks only; PA through an override
    assert main(["select", "--checkpoint", ckpt, "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "pa"),
                 "active.mode=pa", "active.k=32", "active.pixels=400000", "--no-progress"]) == 0
    led = json.loads((tmp_path / "pa" / "ledger.json").read_text())
    assert led["mode"] == "pa" and led["k"] == 32 and not (tmp_path / "pa" / "labels").exists()
    # 400000 / 2 rounds * 1152 / 819200 -> ceil(281.25) = 282 single pixels at most
    assert all(rec["regions"] <= 282 and rec["pixels"] == rec["regions"]
               for e in led["images"].values() for rec in e["rounds"].values())


def test_demo_writes_metrics_and_plots(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-progress", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("miou_source_only", "miou_final", "labelled_fraction", "rounds", "strategies", "gain_over_random"):
        assert key in metrics
    assert all(set(r) >= {"iteration", "labelled_fraction", "miou"} for r in metrics["rounds"])
    # RA and random at the same budget, both forked from the one source-only phase
    ra, rnd = metrics["strategies"]["ra"], metrics["strategies"]["random"]
    assert ra["rounds"] == [{k: r[k] for k in ("round", "iteration", "labelled_fraction", "miou")}
                            for r in metrics["rounds"]] and ra["miou_final"] == metrics["miou_final"]
    assert [r["iteration"] for r in rnd["rounds"]] == [2, 4] and 0 < rnd["labelled_fraction"] < 0.1
    assert metrics["gain_over_random"] == pytest.approx(metrics["miou_final"] - rnd["miou_final"])
    ledgers = {n: json.loads((out / n / "state" / "ledger.json").read_text()) for n in ("ra", "random")}
    assert ledgers["ra"]["strategy"] == "ra" and ledgers["random"]["strategy"] == "random"
    for d in ledgers.values():
        assert all(rec["budget"] == 4 for e in d["images"].values() for rec in e["rounds"].values())
    for png in ("miou_vs_labelled.png", "selected_regions.png"):
        with Image.open(out / png) as img:
            assert img.size[0] > 100
    printed = capsys.readouterr().out
    assert "round" in printed and "random mIoU" in printed and "RA over random at the same budget" in printed
    # a second demo into the same folder replaces the first; a second train run is refused
    assert main(["demo", "--out", str(out), "--no-progress", *TINY]) == 0
    assert json.loads((out / "metrics.json").read_text())["miou_final"] == metrics["miou_final"]
    assert main(["train", "--config", "demo", f"out_dir={out}", *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_cli_errors_name_the_key_or_file(tmp_path, capsys):
    assert main(["train", "--config", "demo", "train.bogus=1"]) == 2
    assert "unknown config key 'train.bogus'" in capsys.readouterr().err
    assert main(["train", "--config", "demo", f"out_dir={tmp_path}", "data.source=gtav", "data.target=cityscapes",
                 f"data.source_root={tmp_path / 'GTAV'}", "data.num_classes=19"]) == 2
    assert "GTAV" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pth")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train"])  # --config is required


def test_training_is_deterministic(tmp_path):
    from ripu_kernels.driver.config import load_config
    from ripu_kernels.driver.engine.trainer import Trainer

    results = []
    for name in ("a", "b"):
        cfg = load_config("demo", [f"out_dir={tmp_path / name}", *TINY, "train.iters=3", "active.rounds_at=[1]"])
        trainer = Trainer(cfg, progress=False)
        trainer.run()
        results.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_train_on_fake_gtav_and_cityscapes_trees(tmp_path):
    from .test_data import _png, _rgb, make_cityscapes

    gta = tmp_path / "GTAV"
    raw = np.zeros((16, 32), np.uint8)
    raw[:8], raw[8:] = 23, 7  # sky over road
    for i in range(4):
        _png(gta / "images" / f"{i:05d}.png", _rgb(16, 32, i))
        _png(gta / "labels" / f"{i:05d}.png", raw)
    city = tmp_path / "cityscapes"
    make_cityscapes(city, "train", h=16, w=32)
    make_cityscapes(city, "val", cities=("frankfurt",), h=32, w=64)
    out = tmp_path / "run"
    assert main(["prepare", "gtav", str(gta), "--no-progress"]) == 0  # class statistics for balanced sampling
    assert main(["train", "--config", "gtav_cityscapes_ra_2.2", "--no-progress", f"out_dir={out}", "device=cpu",
                 f"data.source_root={gta}", f"data.target_root={city}", "data.source_size=[32, 16]",
                 "data.target_size=[32, 16]", "data.num_workers=0", "model.backbone=small", "model.pretrained=none",
                 "model.width=8", "model.norm=gn", "model.aspp_dilations=[1, 2]", "train.iters=3",
                 "active.rounds_at=[1, 2]", "train.lr=0.001", "threads=1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["iou_final"]) == 19 and metrics["class_names"][13] == "car"
    ledger = json.loads((out / "state" / "ledger.json").read_text())
    # RA 2.2% over 2 rounds on 32x16 labels: ceil(512 * 0.011 / 9) = 1 region per image per round
    assert set(ledger["images"]) == {"aachen/aachen_000000_000019", "bremen/bremen_000000_000019"}
    assert all(rec["regions"] == 1 and rec["budget"] == 1 for e in ledger["images"].values()
               for rec in e["rounds"].values())
    assert (out / "state" / "labels" / "aachen" / "aachen_000000_000019.png").is_file()


def test_training_goes_through_the_public_fused_ops(tmp_path, monkeypatch):
    """LCR, NL and the acquisition (scores with size=label size, then select_regions) use the public ops."""
    import ripu_kernels as ops
    from ripu_kernels.driver.config import load_config
    from ripu_kernels.driver.engine.trainer import Trainer

    calls = {"lcr": 0, "nl": 0, "scores": [], "select": 0}
    real = {name: getattr(ops, name) for name in ("local_consistency_loss", "negative_learning_loss",
                                                   "region_scores", "select_regions")}

    def lcr(*a, **k):
        calls["lcr"] += 1
        return real["local_consistency_loss"](*a, **k)

    def nl(*a, **k):
        calls["nl"] += 1
        return real["negative_learning_loss"](*a, **k)

    def scores(logits, *a, **k):
        calls["scores"].append((tuple(logits.shape[-2:]), k.get("size"), k.get("k")))
        return real["region_scores"](logits, *a, **k)

    def select(*a, **k):
        calls["select"] += 1
        assert k["radius"] == 1 and k["mask_radius"] == 2 and k["active"] is not None
        return real["select_regions"](*a, **k)

    monkeypatch.setattr(ops, "local_consistency_loss", lcr)
    monkeypatch.setattr(ops, "negative_learning_loss", nl)
    monkeypatch.setattr(ops, "region_scores", scores)
    monkeypatch.setattr(ops, "select_regions", select)
    cfg = load_config("demo", [f"out_dir={tmp_path}", *TINY, "train.iters=4", "active.rounds_at=[1, 3]",
                               "model.output_stride=8"])
    Trainer(cfg, progress=False).run()
    assert calls["lcr"] == 4          # every iteration, on the source batch
    assert calls["nl"] == 3           # target terms only from the first round in the demo config
    assert calls["select"] == 4       # 6 target images in batches of 4, two rounds
    # logits at 1/8 of 24x48 are scored at the label resolution through the fused resize
    assert all(shape == (3, 6) and size == (24, 48) and k == 1 for shape, size, k in calls["scores"])


def test_eval_every_round_false_evaluates_only_at_the_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", "demo", "--no-progress", f"out_dir={out}", *TINY,
                 "train.eval_every_round=false"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "miou" not in metrics["rounds"][0] and 0 <= metrics["rounds"][-1]["miou"] <= 100
    assert "miou_before_rounds" not in metrics
    log = (out / "train.log").read_text()
    assert "before round" not in log and log.count("[final]") == 1 and "[round 1] iteration 4" in log
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["0", "2", table[1].split()[2], "-"]  # round 0 printed without an mIoU


def test_checkpoints_are_read_without_unpickling_code(run, tmp_path, capsys):
    """A checkpoint that carries a pickled object (code on load) is refused, naming the file; nothing runs."""
    class Payload:
        def __reduce__(self):
            return (print, ("PWNED",))

    evil = tmp_path / "evil.pth"
    state = torch.load(run / "checkpoints" / "final.pth", weights_only=True)
    state["extra"] = Payload()
    torch.save(state, evil)
    assert main(["eval", "--checkpoint", str(evil), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "PWNED" not in captured.out and str(evil) in captured.err and "weights_only" in captured.err
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main(["select", "--checkpoint", str(tmp_path / "junk.pth"), "--images", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "junk.pth" in capsys.readouterr().err
    torch.save({"model": {}}, tmp_path / "other.pth")
    assert main(["eval", "--checkpoint", str(tmp_path / "other.pth"), "--no-progress"]) == 2
    assert "is not a ripu_kernels checkpoint" in capsys.readouterr().err
