"""Every packaged paper config trains, at its own sizes scaled down 16x (same aspect ratios; source 80x45 and target
80x40 differ, as 1280x720 and 1280x640 do), with a tiny backbone, on tiny trees in the published layouts; and
`ripu config` prints what will run."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ripu_kernels.driver.cli import main
from ripu_kernels.driver.config import load_config, packaged_config_names

from ._trees import make_cityscapes, make_gtav, make_synthia

PAPER = [n for n in packaged_config_names() if n != "demo"]
SCALE = 16


def scaled(size):
    w, h = size
    assert w % SCALE == 0 and (h * 10) % SCALE == 0
    return [w // SCALE, round(h / SCALE)]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("trees")
    gtav = make_gtav(root / "gtav", n=4, h=66, w=120)          # 1914x1052 / 16
    synthia = make_synthia(root / "synthia", n=4, h=48, w=80)  # 1280x760 / 16
    city = root / "cityscapes"
    make_cityscapes(city, "train", h=64, w=128)                # 2048x1024 / 16
    make_cityscapes(city, "val", cities=("frankfurt",), h=64, w=128)
    for name, path in (("gtav", gtav), ("synthia", synthia)):
        assert main(["prepare", name, str(path), "--no-progress"]) == 0
    return {"gtav": gtav, "synthia": synthia, "cityscapes": city}


def test_the_model_zoo_has_a_config_per_row():
    rows = {f"{src}_cityscapes_{setting}" for src in ("gtav", "synthia")
            for setting in ("source_only", "ra_2.2", "pa_40", "ra_5_v3plus", "ra_2.2_source_free")}
    assert rows <= set(PAPER)
    for src in ("gtav", "synthia"):
        v3 = load_config(f"{src}_cityscapes_ra_5_v3plus")
        assert (v3.model.name, v3.active.ratio, v3.model.aspp_dilations) == ("deeplabv3plus", 0.05, [6, 12, 18])
        so = load_config(f"{src}_cityscapes_source_only")
        assert (so.active.mode, so.train.lr, so.train.max_iter, so.train.iters, so.train.lcr_weight) == \
            ("none", 5e-4, 31250, 20000, 0.0)
        sf = load_config(f"{src}_cityscapes_ra_2.2_source_free")
        assert (sf.data.source, sf.window_k, sf.active.rounds_at, sf.train.iters, sf.train.max_iter) == \
            ("none", 9, [0, 2000, 4000, 6000, 8000], 30000, 62500)
    # the old name still works: the paper's RA 5% row is DeepLab-v3+
    assert load_config("gtav_cityscapes_ra_5").model.name == "deeplabv3plus"
    assert load_config("synthia_cityscapes_ra_2.2_source_free").data.target_size == [1024, 512]
    assert load_config("synthia_cityscapes_ra_2.2").data.source_size == [1280, 720]


@pytest.mark.parametrize("name", PAPER)
def test_paper_configs_use_the_authors_settings(name):
    cfg = load_config(name)
    assert cfg.device == "auto" and cfg.model.backbone == "resnet101" and cfg.model.norm == "frozen_bn"
    assert cfg.model.pretrained.endswith("resnet101-5d3b4d8f.pth")
    assert (cfg.train.flip, cfg.eval.flip, cfg.data.image_interpolation) == (False, True, "bicubic")
    assert cfg.data.balanced_sampling == (cfg.data.source != "none")
    assert (cfg.active.label_size, cfg.active.resize_via_input) == ("original", True)
    assert cfg.train.max_iter in (62500, 31250) and cfg.train.iters < cfg.train.max_iter


def test_ripu_config_prints_the_resolved_yaml(capsys, tmp_path):
    assert main(["config", "gtav_cityscapes_pa_40", "train.iters=30000"]) == 0
    printed = capsys.readouterr().out
    values = yaml.safe_load(printed)
    assert values["active"]["mode"] == "pa" and values["active"]["k"] == 32 and values["train"]["iters"] == 30000
    assert values["train"]["max_iter"] == 62500 and values["data"]["source_size"] == [1280, 720]
    assert "data:\n  source: gtav" in printed and "source_size: [1280, 720]" in printed
    (tmp_path / "resolved.yaml").write_text(printed)  # it loads again, to the same config
    assert load_config(str(tmp_path / "resolved.yaml")) == load_config("gtav_cityscapes_pa_40", ["train.iters=30000"])
    assert main(["config", "--list"]) == 0
    assert "gtav_cityscapes_ra_5_v3plus" in capsys.readouterr().out.split()
    assert main(["config", "gtav_cityscapes_ra_2.2", "active.nope=1"]) == 2
    assert "unknown config key 'active.nope'" in capsys.readouterr().err


def _authors_init(tmp_path, cfg) -> str:
    """A source-only model in the authors' checkpoint layout, for the source-free configs."""
    import dataclasses

    from ripu_kernels.driver.engine.authors import from_model_state
    from ripu_kernels.driver.models import build_model

    model = build_model(dataclasses.replace(cfg.model, pretrained="none", init_checkpoint=""), cfg.data.num_classes)
    path = tmp_path / "model_iter020000.pth"
    torch.save({"iteration": 20000, **from_model_state(model.state_dict())}, path)
    return str(path)


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_trains_at_its_own_sizes(name, trees, tmp_path):
    paper = load_config(name)
    src_size, tgt_size = scaled(paper.data.source_size), scaled(paper.data.target_size)
    out = tmp_path / "run"
    over = [f"out_dir={out}", f"data.target_root={trees['cityscapes']}", f"data.source_size={src_size}",
            f"data.target_size={tgt_size}", "data.num_workers=0", "model.backbone=small", "model.pretrained=none",
            "model.width=8", "model.head_channels=16", "threads=1", "train.max_iter=10", "train.log_every=1"]
    if paper.data.source != "none":
        over += [f"data.source_root={trees[paper.data.source]}"]
    if paper.active.mode == "none":
        over += ["train.iters=2"]
    else:
        rounds = [0, 1] if paper.active.rounds_at[0] == 0 else [1, 2]
        over += ["train.iters=3", f"active.rounds_at={rounds}"]
    cfg = load_config(name, over)
    if cfg.model.init_checkpoint:
        over.append(f"model.init_checkpoint={_authors_init(tmp_path, cfg)}")
    assert main(["train", "--config", name, "--no-progress", *over]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == cfg.train.iters and len(metrics["iou_final"]) == cfg.data.num_classes
    if cfg.data.num_classes == 16:
        assert "miou13_final" in metrics
    log = (out / "train.log").read_text()
    assert f"LR poly to iteration 10, training stops at {cfg.train.iters}" in log
    if cfg.data.source == "none":
        assert "no source" in log and "src_ce" not in log
    if cfg.active.mode == "none":
        assert "no target train" in log and not (out / "state" / "ledger.json").exists()
        return
    ledger = json.loads((out / "state" / "ledger.json").read_text())
    # budgets on the original 64x128 labels (Cityscapes' 1024x2048 / 16), not on the resized input
    h, w = 64, 128
    if cfg.active.mode == "ra":
        expected = math.ceil(h * w * cfg.active.ratio / 2 / (2 * cfg.window_k + 1) ** 2 - 1e-9)
    else:
        expected = math.ceil(cfg.active.pixels / 2 * h * w / (1280 * 640) - 1e-9)
    for image_id, entry in ledger["images"].items():
        assert (entry["height"], entry["width"]) == (h, w)
        assert {rec["budget"] for rec in entry["rounds"].values()} == {expected}
        revealed = np.asarray(Image.open(out / "state" / "labels" / f"{image_id}.png"))
        assert revealed.shape == (h, w)
        assert (revealed != 255).sum() <= sum(rec["pixels"] for rec in entry["rounds"].values())
