"""Driver configuration: packaged YAML files, overrides, clear errors naming the key and the file."""
from __future__ import annotations

import glob
import os

import pytest

from ripu_kernels.driver.config import ConfigError, load_config, packaged_config

PACKAGED = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(os.path.dirname(packaged_config("demo")),
                                                                             "*.yaml")))


def test_packaged_configs_cover_the_paper_settings():
    assert {"demo", "gtav_cityscapes_ra_2.2", "gtav_cityscapes_ra_5", "gtav_cityscapes_pa_40",
            "synthia_cityscapes_ra_2.2"} <= set(PACKAGED)


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_configs_load(name):
    cfg = load_config(name)
    if cfg.active.mode == "none":  # source-only: no rounds
        assert cfg.active.rounds_at == []
    else:
        assert cfg.train.iters > max(cfg.active.rounds_at)
        assert len(cfg.active.rounds_at) == 5


def test_paper_defaults():
    ra = load_config("gtav_cityscapes_ra_2.2")
    assert (ra.train.lr, ra.train.head_lr_mult, ra.train.power) == (2.5e-4, 10.0, 0.9)
    assert (ra.train.lcr_weight, ra.train.nl_weight, ra.train.nl_threshold) == (0.1, 1.0, 0.05)
    assert (ra.active.mode, ra.active.ratio, ra.window_k) == ("ra", 0.022, 1)
    assert ra.data.source_size == [1280, 720] and ra.data.target_size == [1280, 640]
    assert ra.model.aspp_dilations == [6, 12, 18, 24] and ra.model.output_stride == 8
    pa = load_config("gtav_cityscapes_pa_40")
    assert (pa.active.mode, pa.active.pixels, pa.window_k) == ("pa", 40.0, 32)
    assert load_config("gtav_cityscapes_ra_5").active.ratio == 0.05
    syn = load_config("synthia_cityscapes_ra_2.2")
    assert (syn.data.source, syn.data.num_classes) == ("synthia", 16)


def test_overrides_parse_yaml_values():
    cfg = load_config("demo", ["train.iters=20", "active.rounds_at=[2, 5]", "train.lr=1e-3", "train.flip=false",
                               "data.synthetic.height=32"])
    assert cfg.train.iters == 20 and cfg.active.rounds_at == [2, 5] and cfg.train.lr == 1e-3
    assert cfg.train.flip is False and cfg.data.synthetic.height == 32


def test_unknown_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lrr'"):
        load_config("demo", ["train.lrr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  iters: 10\n  bogus: 3\n")
    with pytest.raises(ConfigError, match=rf"{bad}: unknown config key 'train.bogus'"):
        load_config(str(bad))
    bad.write_text("nonsense: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'nonsense'"):
        load_config(str(bad))


def test_bad_values_are_named(tmp_path):
    with pytest.raises(ConfigError, match="override: bad value for config key 'train.iters'"):
        load_config("demo", ["train.iters=abc"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: demo\ntrain:\n  flip: maybe\ndata:\n  target_size: [10, x]\n")
    with pytest.raises(ConfigError, match=rf"{bad}: bad value for config key 'train.flip'"):
        load_config(str(bad))
    bad.write_text("data:\n  target_size: [10, x]\n")
    with pytest.raises(ConfigError, match=r"bad value for config key 'data.target_size\[1\]'"):
        load_config(str(bad))
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="active.mode must be"):
        load_config("demo", ["active.mode=xx"])
    with pytest.raises(ConfigError, match="active.rounds_at must be increasing"):
        load_config("demo", ["active.rounds_at=[5, 2]"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config("demo", ["train.iters"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(broken))


def test_base_chain(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: gtav_cityscapes_ra_2.2\nactive:\n  ratio: 0.01\n")
    cfg = load_config(str(child))
    assert cfg.active.ratio == 0.01 and cfg.data.source == "gtav"
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(str(loop))
