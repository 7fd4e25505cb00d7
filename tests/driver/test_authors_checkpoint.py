"""The authors' released checkpoints ({feature_extractor, classifier, ...}) load and evaluate; `ripu eval` needs only
the target dataset."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ripu_kernels.driver.cli import main
from ripu_kernels.driver.config import load_config
from ripu_kernels.driver.engine.authors import model_for
from ripu_kernels.driver.errors import CheckpointError
from ripu_kernels.driver.evaluate import evaluate
from ripu_kernels.driver.models import build_model

from ._trees import make_cityscapes
from .test_fidelity import authors_resnet101_features, authors_v3plus_classifier


def _random(table: dict, prefix: str = "") -> dict:
    gen = torch.Generator().manual_seed(0)
    return {prefix + k: torch.randn(shape, generator=gen) for k, shape in table.items()}


@pytest.mark.parametrize("prefix", ["", "module."])
def test_a_state_dict_in_the_authors_resnet101_v3plus_layout_loads(prefix):
    """The real ResNet-101 / DeepLab-v3+ key names and shapes, as their train.py saves them (DataParallel's
    ``module.`` prefix too, as their test.py strips it)."""
    ckpt = {"iteration": 40000, "feature_extractor": _random(authors_resnet101_features(), prefix),
            "classifier": _random(authors_v3plus_classifier(19), prefix),
            "optimizer_fea": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
            "optimizer_cls": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}}
    cfg = load_config("gtav_cityscapes_ra_5_v3plus")
    model = model_for(cfg, ckpt, "ckpt.pth")
    state = model.state_dict()
    features = ckpt["feature_extractor"]
    assert torch.equal(state["backbone.layer3.22.conv2.weight"], features[prefix + "backbone.layer3.22.conv2.weight"])
    assert torch.equal(state["head.decoder.3.bias"], ckpt["classifier"][prefix + "decoder.3.bias"])
    with pytest.raises(CheckpointError, match="deeplabv3plus head, but the config has model.name='deeplabv2'"):
        model_for(load_config("gtav_cityscapes_ra_2.2"), ckpt, "ckpt.pth")
    with pytest.raises(CheckpointError, match="predicts 19 classes, the config data.num_classes=16"):
        model_for(load_config("synthia_cityscapes_ra_5_v3plus"), ckpt, "ckpt.pth")
    broken = dict(ckpt, classifier={k: v for k, v in ckpt["classifier"].items() if "bottleneck" not in k})
    with pytest.raises(CheckpointError, match=r"ckpt.pth: the weights do not fit .*bottleneck"):
        model_for(cfg, broken, "ckpt.pth")


def _tiny_config(tmp_path, city, name="deeplabv2"):
    path = tmp_path / "tiny.yaml"
    heads = "aspp_dilations: [1, 2]" if name == "deeplabv2" else "aspp_dilations: [1, 2]\n  head_channels: 16"
    path.write_text(f"base: gtav_cityscapes_ra_2.2\ndevice: cpu\nthreads: 1\n"
                    f"data:\n  source_root: {tmp_path / 'no_such_gtav'}\n  target_root: {city}\n"
                    f"  target_size: [64, 32]\n  num_workers: 0\n"
                    f"model:\n  name: {name}\n  backbone: small\n  width: 8\n  pretrained: none\n  {heads}\n")
    return str(path)


@pytest.mark.parametrize("name", ["deeplabv2", "deeplabv3plus"])
def test_ripu_eval_evaluates_an_authors_checkpoint_with_only_the_target_data(tmp_path, capsys, name):
    city = make_cityscapes(tmp_path / "cityscapes", "val", cities=("frankfurt", "lindau"), h=64, w=128)
    config = _tiny_config(tmp_path, city, name)
    cfg = load_config(config)
    torch.manual_seed(1)
    model = build_model(cfg.model, 19).eval()
    state = model.state_dict()
    authors = {"iteration": 40000,
               "feature_extractor": {k: v for k, v in state.items() if k.startswith("backbone.")},
               "classifier": {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")},
               "optimizer_fea": {"state": {}, "param_groups": []}, "optimizer_cls": {"state": {}, "param_groups": []}}
    ckpt = tmp_path / "model_iter040000.pth"
    torch.save(authors, ckpt)
    # data.source_root does not exist: evaluation reads only the target val set
    assert main(["eval", "--checkpoint", str(ckpt), "--config", config, "--no-progress",
                 "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "road" in out
    got = json.loads((tmp_path / "e.json").read_text())
    from ripu_kernels.driver.data import build_datasets

    _, _, val = build_datasets(cfg, need=("val",))
    direct = evaluate(model, val, 19, flip=True)  # the config's eval.flip (the authors' test.py flips)
    assert got["miou"] == pytest.approx(direct["miou"], abs=1e-9) and got["flip"] is True
    # without --config the file cannot say what it is
    assert main(["eval", "--checkpoint", str(ckpt), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and "authors' format" in err and "--config" in err


def test_checkpoint_errors_name_the_file_and_what_cannot_be_loaded(tmp_path, capsys):
    import numpy as np

    city = make_cityscapes(tmp_path / "cityscapes", "val", cities=("frankfurt",), h=64, w=128)
    config = _tiny_config(tmp_path, city)
    bad = tmp_path / "with_numpy.pth"
    torch.save({"feature_extractor": {}, "classifier": {}, "best_miou": np.float64(69.6)}, bad)
    assert main(["eval", "--checkpoint", str(bad), "--config", config, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "pickled numpy" in err and "weights_only=True" in err and "could run code" in err
    (tmp_path / "junk.pth").write_bytes(b"\x80\x02junk")
    assert main(["eval", "--checkpoint", str(tmp_path / "junk.pth"), "--config", config, "--no-progress"]) == 2
    assert "junk.pth" in capsys.readouterr().err
    torch.save({"feature_extractor": {"backbone.conv1.weight": torch.zeros(1)},
                "classifier": {"x.weight": torch.zeros(1)}}, tmp_path / "odd.pth")
    assert main(["eval", "--checkpoint", str(tmp_path / "odd.pth"), "--config", config, "--no-progress"]) == 2
    assert "neither the authors' DeepLab-v2" in capsys.readouterr().err


def test_init_checkpoint_in_either_format(tmp_path):
    from ripu_kernels.driver.engine.authors import from_model_state, read_weights

    cfg = load_config("gtav_cityscapes_ra_2.2_source_free", ["model.backbone=small", "model.width=8"])
    model = build_model(dataclasses.replace(cfg.model, pretrained="none", init_checkpoint=""), 19)
    torch.save(from_model_state(model.state_dict()), tmp_path / "authors.pth")
    torch.save({"model": model.state_dict()}, tmp_path / "ours.pth")
    for f in ("authors.pth", "ours.pth"):
        state = read_weights(tmp_path / f, cfg)
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError, match="deeplabv2 with 19 classes; the config has .*num_classes=16"):
        read_weights(tmp_path / "authors.pth", load_config("synthia_cityscapes_ra_2.2_source_free"))
    with pytest.raises(CheckpointError, match="checkpoint .*model.init_checkpoint.* not found"):
        read_weights(tmp_path / "missing.pth", cfg)
