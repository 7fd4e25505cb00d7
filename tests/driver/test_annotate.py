"""Human annotators: `ripu select --export DIR`, labels drawn into DIR/labels, `ripu import-labels DIR`."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ripu_kernels.driver.annotate.export import image_entry
from ripu_kernels.driver.cli import main
from ripu_kernels.driver.data.synthetic import SyntheticStreets

TINY = ["threads=1", "data.synthetic.height=24", "data.synthetic.width=48", "model.width=8", "train.iters=3",
        "active.rounds_at=[1]", "active.batch_size=2"]
H, W = 24, 48


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ripu_kernels.driver.config import load_config
    from ripu_kernels.driver.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("ann")
    cfg = load_config("demo", [f"out_dir={root / 'run'}", *TINY])
    ckpt = Trainer(cfg, progress=False).save_checkpoint("init.pth")
    target = SyntheticStreets("target", "train", 3, height=H, width=W, seed=6)
    (root / "imgs" / "city").mkdir(parents=True)
    truth = {}
    for i in range(3):
        name = f"city/{i}"
        Image.fromarray((target.load_image(i) * 255).astype(np.uint8)).save(root / "imgs" / f"{name}.png")
        truth[name] = target.load_label(i).astype(np.uint8)
    return root, ckpt, truth


def _export(root, ckpt, state, export, *extra):
    return main(["select", "--checkpoint", str(ckpt), "--images", str(root / "imgs"), "--out", str(state),
                 "--export", str(export), "--no-progress", *extra])


def _annotate(export, truth, meta):
    """A perfect annotator: the truth inside each mask, 255 elsewhere."""
    for e in meta["images"]:
        mask = np.asarray(Image.open(export / e["mask"])) > 0
        lab = np.where(mask, truth[e["id"]], 255).astype(np.uint8)
        (export / e["label"]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(lab).save(export / e["label"])


def test_boxes_are_clipped_windows():
    sel = np.zeros((24, 48), bool)
    sel[0:2, 0:2] = sel[4:7, 46:48] = True
    e = image_entry("a", "a.png", (24, 48), sel, np.array([[0, 0], [5, 47]]), 1)
    r0, r1 = e["regions"]
    # [x, y] everywhere; boxes [x0, y0, x1, y1] with exclusive upper bounds; same pixels at scale 1
    assert r0 == {"center": [0.5, 0.5], "box": [0, 0, 2, 2], "label_center": [0.5, 0.5], "label_box": [0, 0, 2, 2],
                  "pixels": 4}
    assert r1["box"] == r1["label_box"] == [46, 4, 48, 7] and r1["center"] == [47.5, 5.5] and r1["pixels"] == 6
    assert e["scale"] == [1.0, 1.0] and e["pixels"] == e["original_pixels"] == 10
    # the original file twice as large: boxes and centres in its pixels. Ground truth is resized with PIL's
    # nearest, which reads original pixel 2j+1 for label pixel j: label column 47 is original [95, 96), 46 is
    # [93, 95), and label row/column 0 also takes original pixel 0 (read by no label pixel)
    e2 = image_entry("a", "a.png", (48, 96), sel, np.array([[0, 0], [5, 47]]), 1)
    assert e2["regions"][1]["box"] == [93, 9, 96, 15] and e2["regions"][1]["center"] == [95.5, 12.0]
    assert e2["regions"][0]["box"] == [0, 0, 5, 5]
    assert e2["scale"] == [2.0, 2.0] and e2["original_pixels"] == 5 * 5 + 3 * 6 and e2["pixels"] == 10


def test_export_and_import_round_trip(setup, tmp_path, capsys):
    root, ckpt, truth = setup
    state, export = tmp_path / "state", tmp_path / "export"
    assert _export(root, ckpt, state, export) == 0
    assert "queries for annotators" in capsys.readouterr().out
    meta = json.loads((export / "regions.json").read_text())
    assert meta["round"] == 0 and meta["mode"] == "ra" and meta["num_classes"] == 19
    assert [e["id"] for e in meta["images"]] == ["city/0", "city/1", "city/2"]
    ledger = json.loads((state / "ledger.json").read_text())
    for e in meta["images"]:
        mask = np.asarray(Image.open(export / e["mask"])) > 0
        assert e["file"] == e["id"] + ".png" and (e["height"], e["width"]) == (H, W)
        assert (e["label_height"], e["label_width"]) == (H, W) and e["scale"] == [1.0, 1.0]
        # the mask is exactly the union of the boxes; RA windows of one round do not overlap
        union = np.zeros((H, W), bool)
        for reg in e["regions"]:
            x0, y0, x1, y1 = reg["box"]
            assert not union[y0:y1, x0:x1].any()
            union[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(union, mask)
        rec = ledger["images"][e["id"]]["rounds"]["0"]
        assert rec["regions"] == len(e["regions"]) and rec["pixels"] == mask.sum() > 0
        selected = np.asarray(Image.open(state / "selected" / (e["id"] + ".png"))) > 0
        np.testing.assert_array_equal(selected, mask)
    assert not (state / "labels").exists()  # nothing revealed before the annotators answer
    # two images labelled so far: a partial import, then the rest
    _annotate(export, truth, meta)
    (export / "labels" / "city" / "2.png").rename(tmp_path / "later.png")
    assert main(["import-labels", str(export)]) == 0
    out = capsys.readouterr().out
    assert "of 2 images" in out and "no labels yet" in out and "city/2" in out
    (tmp_path / "later.png").rename(export / "labels" / "city" / "2.png")
    assert main(["import-labels", str(export)]) == 0
    ledger = json.loads((state / "ledger.json").read_text())
    for e in meta["images"]:
        mask = np.asarray(Image.open(export / e["mask"])) > 0
        revealed = np.asarray(Image.open(state / "labels" / (e["id"] + ".png")))
        np.testing.assert_array_equal(revealed, np.where(mask, truth[e["id"]], 255))
        assert ledger["images"][e["id"]]["rounds"]["0"]["labelled"] == mask.sum()
    # importing again changes nothing; the next round avoids the labelled regions
    before = {p: p.read_bytes() for p in sorted(state.rglob("*.png"))}
    assert main(["import-labels", str(export), "--out", str(state)]) == 0
    assert {p: p.read_bytes() for p in sorted(state.rglob("*.png"))} == before
    assert _export(root, ckpt, state, tmp_path / "export1", "--round", "1") == 0
    meta1 = json.loads((tmp_path / "export1" / "regions.json").read_text())
    for e0, e1 in zip(meta["images"], meta1["images"]):
        m0 = np.asarray(Image.open(export / e0["mask"])) > 0
        m1 = np.asarray(Image.open(tmp_path / "export1" / e1["mask"])) > 0
        assert m1.any() and not (m0 & m1).any()


@pytest.fixture
def answered(setup, tmp_path):
    root, ckpt, truth = setup
    state, export = tmp_path / "state", tmp_path / "export"
    assert _export(root, ckpt, state, export) == 0
    meta = json.loads((export / "regions.json").read_text())
    _annotate(export, truth, meta)
    return state, export, meta, truth


def _edit(export, entry, fn):
    path = export / entry["label"]
    lab = np.asarray(Image.open(path)).copy()
    Image.fromarray(fn(lab, np.asarray(Image.open(export / entry["mask"])) > 0)).save(path)


def _refused(state, export, capsys, match, *extra):
    before = {p: p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}
    assert main(["import-labels", str(export), *extra]) == 2
    err = capsys.readouterr().err
    assert match in err, err
    # a refused import writes nothing, not even for the images that were fine
    assert {p: p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()} == before


def _outside(lab, mask):
    r, c = np.argwhere(~mask)[0]
    lab[r, c] = 3
    return lab


def test_labels_outside_the_queried_regions_are_counted_or_refused(answered, capsys):
    state, export, meta, truth = answered
    _edit(export, meta["images"][2], _outside)
    _refused(state, export, capsys, "outside the queried regions of image 'city/2'", "--strict")
    assert main(["import-labels", str(export)]) == 0
    assert "ignored 1 labelled pixels outside the queried regions" in capsys.readouterr().out
    e = meta["images"][2]
    mask = np.asarray(Image.open(export / e["mask"])) > 0
    revealed = np.asarray(Image.open(state / "labels" / (e["id"] + ".png")))
    np.testing.assert_array_equal(revealed, np.where(mask, truth[e["id"]], 255))  # the outside pixel is not used


def test_bad_class_ids_sizes_and_formats_are_refused(answered, capsys):
    state, export, meta, _ = answered
    entry = meta["images"][1]
    _edit(export, entry, lambda lab, mask: np.where(mask, 23, lab).astype(np.uint8))  # 19 classes: 0..18
    _refused(state, export, capsys, "class id 23")
    Image.fromarray(np.full((H, W + 1), 255, np.uint8)).save(export / entry["label"])
    _refused(state, export, capsys, "is 49x24; expected 48x24")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(export / entry["label"])
    _refused(state, export, capsys, "single-channel")


def test_relabelling_a_revealed_pixel_is_refused(answered, capsys):
    state, export, meta, truth = answered
    assert main(["import-labels", str(export)]) == 0
    capsys.readouterr()
    entry = meta["images"][0]
    _edit(export, entry, lambda lab, mask: np.where(mask, (lab + 1) % 8, lab).astype(np.uint8))
    _refused(state, export, capsys, "never overwritten")


def test_an_export_of_another_state_is_refused(answered, tmp_path, capsys):
    state, export, meta, _ = answered
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(state / "ledger.json", other / "ledger.json")
    led = json.loads((other / "ledger.json").read_text())
    led["images"].pop("city/1")
    (other / "ledger.json").write_text(json.dumps(led))
    assert main(["import-labels", str(export), "--out", str(other)]) == 2
    assert "no round 0 for image 'city/1'" in capsys.readouterr().err
    assert main(["import-labels", str(tmp_path / "nowhere")]) == 2
    assert "regions.json not found" in capsys.readouterr().err
