"""`ripu prepare` (class statistics, SYNTHIA's 8-bit labels, staleness), the pre-flight pass over every file, and the
guards against silent waste (no ImageNet weights, device=cuda without CUDA)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from ripu_kernels.driver.cli import main
from ripu_kernels.driver.config import load_config
from ripu_kernels.driver.data import build_datasets
from ripu_kernels.driver.data.prepared import load_prepared
from ripu_kernels.driver.errors import ConfigError, DataError
from ripu_kernels.driver.io import read_png
from ripu_kernels.driver.preflight import check_weights, preflight

from ._trees import make_cityscapes, make_gtav, make_synthia, png, rgb


# ------------------------------------------------------------------------------------------------- prepare
def test_prepare_gtav_counts_the_pixels_of_every_class(tmp_path, capsys):
    root = make_gtav(tmp_path / "gtav", n=3, h=20, w=24)
    assert main(["prepare", "gtav", str(root), "--no-progress"]) == 0
    assert "class_stats.json" in capsys.readouterr().out
    stats = json.loads((root / "ripu_prepared" / "class_stats.json").read_text())
    assert stats["ids"] == ["00000", "00001", "00002"] and stats["num_files"] == 3 and stats["num_classes"] == 19
    from ripu_kernels.driver.data.cityscapes import ID_TO_TRAINID_19

    for i, image_id in enumerate(stats["ids"]):
        raw = np.asarray(Image.open(root / "labels" / f"{image_id}.png"))
        expected = [int(sum((raw == lid).sum() for lid, t in ID_TO_TRAINID_19.items() if t == c)) for c in range(19)]
        assert stats["pixels"][i] == expected
    assert not list(root.rglob("*.tmp"))
    prepared = load_prepared("gtav", str(root))
    assert prepared.presence(["00002", "00000"]).tolist() == [[v > 0 for v in stats["pixels"][k]] for k in (2, 0)]
    with pytest.raises(DataError, match="no class statistics for 1 image.*'09999'"):
        prepared.presence(["09999"])


def test_prepare_synthia_writes_8bit_train_ids_that_training_reads(tmp_path):
    root = make_synthia(tmp_path / "synthia", n=2, h=10, w=12)
    out = tmp_path / "prep"
    assert main(["prepare", "synthia", str(root), "--out", str(out), "--no-progress", "--workers", "2"]) == 0
    from ripu_kernels.driver.data.synthia import Synthia

    slow = Synthia(str(root), size_wh=None)
    for i in range(2):
        copy = read_png(out / "labels" / f"{i:07d}.png")
        assert copy.dtype == np.uint8 and copy.ndim == 2
        np.testing.assert_array_equal(copy, slow.load_label(i))
    cfg = load_config("synthia_cityscapes_ra_2.2", [f"data.source_root={root}", f"data.prepared_dir={out}",
                                                    "data.source_size=[12, 10]"])
    source, _, _ = build_datasets(cfg, need=("source",))
    assert source.pairs[0][2] == str(out / "labels" / "0000000.png") and source.mapping is None
    np.testing.assert_array_equal(source.load_label(1), slow.load_label(1))
    assert source.prepared.presence(source.ids).shape == (2, 16)


def test_stale_prepared_output_is_an_error_that_says_so(tmp_path):
    root = make_gtav(tmp_path / "gtav", n=2, h=8, w=8)
    assert main(["prepare", "gtav", str(root), "--no-progress"]) == 0
    moved = tmp_path / "copy"
    shutil.copytree(root, moved)  # the output came along, but it was made for the first root
    with pytest.raises(DataError, match=r"is stale: it was prepared for the root .*gtav, not .*copy .*ripu prepare"):
        load_prepared("gtav", str(moved))
    png(root / "images" / "00002.png", rgb(8, 8, 2))
    png(root / "labels" / "00002.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"stale: it was prepared for 2 label files, .*labels now holds 3"):
        load_prepared("gtav", str(root))
    cfg = load_config("gtav_cityscapes_ra_2.2", [f"data.source_root={root}"])
    with pytest.raises(DataError, match="stale"):
        build_datasets(cfg, need=("source",))
    empty = make_gtav(tmp_path / "fresh", n=1, h=8, w=8)
    with pytest.raises(DataError, match=r"data.balanced_sampling needs the class statistics of gtav, .*ripu prepare"):
        build_datasets(load_config("gtav_cityscapes_ra_2.2", [f"data.source_root={empty}"]), need=("source",))
    # without balanced sampling nothing needs them
    cfg = load_config("gtav_cityscapes_ra_2.2", [f"data.source_root={empty}", "data.balanced_sampling=false"])
    assert build_datasets(cfg, need=("source",))[0].prepared is None


# ----------------------------------------------------------------------------------------------- preflight
def test_preflight_names_every_problem_before_training(tmp_path, capsys):
    gtav = make_gtav(tmp_path / "gtav", n=3, h=12, w=16)
    city = tmp_path / "cityscapes"
    make_cityscapes(city, "train", h=16, w=32)
    make_cityscapes(city, "val", cities=("frankfurt",), h=16, w=32)
    (gtav / "images" / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")            # unreadable header
    png(gtav / "labels" / "00002.png", np.zeros((5, 5), np.uint8))                            # label of another size
    val_label = city / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png"
    png(val_label, np.zeros((16, 30), np.uint8))                                              # another size too
    out = tmp_path / "run"
    args = ["train", "--config", "gtav_cityscapes_ra_2.2", "--no-progress", f"out_dir={out}",
            f"data.source_root={gtav}", f"data.target_root={city}", "data.balanced_sampling=false",
            "model.backbone=small", "model.pretrained=none", "device=cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "preflight (headers): 3 problem(s)" in err
    assert "00001.png" in err and "size mismatch: image " in err and "00002.png is 16x12 but its label" in err
    assert "frankfurt_000000_000019_gtFine_labelIds.png is 30x16" in err
    assert not (out / "checkpoints").exists()  # nothing trained
    # missing files: every one of a dataset named at once, before any header is read
    (gtav / "labels" / "00000.png").unlink()
    (gtav / "labels" / "00002.png").unlink()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "gtav: 2 of 3 images are missing files" in err and "labels/00000.png" in err and "labels/00002.png" in err
    make_gtav(gtav, n=3, h=12, w=16)
    (city / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png").unlink()
    assert main(args) == 2
    assert "cityscapes-train: 1 of 2 images are missing files: image " in capsys.readouterr().err


def test_preflight_decode_finds_what_headers_do_not(tmp_path):
    root = make_gtav(tmp_path / "gtav", n=2, h=40, w=40)
    good = (root / "images" / "00001.png").read_bytes()
    (root / "images" / "00001.png").write_bytes(good[: len(good) // 2])  # truncated: the header still reads
    from ripu_kernels.driver.data.gtav import GTAV

    ds = GTAV(str(root), size_wh=None)
    assert preflight([ds], decode=False) == {"files": 2, "problems": 0}
    with pytest.raises(DataError, match=r"preflight \(decode\): 1 problem.*00001.png"):
        preflight([ds], decode=True)


# ------------------------------------------------------------------------------------------ no silent waste
def test_paper_configs_refuse_resnet_without_imagenet_weights(tmp_path, capsys, caplog):
    cfg = load_config("gtav_cityscapes_ra_2.2", ["model.pretrained=''"])
    with pytest.raises(ConfigError, match=r"model.pretrained is empty: .*resnet101-5d3b4d8f.pth.*pretrained=none"):
        check_weights(cfg)
    with pytest.raises(ConfigError, match=r"model.pretrained: no such file 'weights/resnet101-5d3b4d8f.pth'"):
        check_weights(load_config("gtav_cityscapes_ra_2.2"))
    check_weights(load_config("gtav_cityscapes_ra_2.2", ["model.pretrained=none"]))  # on purpose: allowed
    assert "starts from random weights" in caplog.text
    check_weights(load_config("gtav_cityscapes_ra_2.2_source_free"))  # the init checkpoint holds every weight
    # through the command line: one line naming the key and the file, before any data is read
    capsys.readouterr()
    assert main(["train", "--config", "gtav_cityscapes_ra_2.2", f"out_dir={tmp_path}", "device=cpu",
                 f"data.source_root={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.pretrained" in err[0] and "resnet101-5d3b4d8f.pth" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line_and_auto_falls_back_with_a_warning(tmp_path, capsys, caplog):
    from ripu_kernels.driver.engine.device import resolve_device

    assert main(["train", "--config", "demo", f"out_dir={tmp_path}", "device=cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device='cuda'" in err[0] and ("no CUDA" in err[0])
    with pytest.raises(ConfigError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        resolve_device("tpu")
    assert resolve_device("auto") == "cpu" and "very slow" in caplog.text
    assert resolve_device("cpu") == "cpu"
