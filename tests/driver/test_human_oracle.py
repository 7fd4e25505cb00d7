"""active.oracle=human: the run stops after each round's export, a person (played from ground truth through the
tools' formats) labels the queries, `ripu import-labels` and `ripu train --resume` continue; the run ends with the
masks and ledger of the simulated oracle."""
from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ripu_kernels.driver.annotate import rle
from ripu_kernels.driver.annotate.geometry import Grid
from ripu_kernels.driver.cli import main

from ._fake_city import make_tree, overrides, truth


def original_query(export, e):
    sel = np.asarray(Image.open(export / e["mask"])) > 0
    return Grid((e["label_height"], e["label_width"]), (e["height"], e["width"])).to_original(sel)


def annotate_cvat_mask(export, city, dest):
    """A person in CVAT: loads cvat-mask/, paints the truth into the query areas, exports Segmentation mask 1.1
    (a zip: labelmap.txt, SegmentationClass/, ImageSets/), void left as background."""
    meta = json.loads((export / "regions.json").read_text())
    colours = {c["id"]: c["color"] for c in meta["classes"]}
    with zipfile.ZipFile(dest, "w") as z:
        z.write(export / "cvat-mask" / "labelmap.txt", "labelmap.txt")
        z.writestr("ImageSets/Segmentation/default.txt",
                   "".join(e["file"][:-4] + "\n" for e in meta["images"]))
        for e in meta["images"]:
            gt = truth(city, e["id"])
            ask = original_query(export, e)
            rgb = np.zeros(gt.shape + (3,), np.uint8)
            for cls, col in colours.items():
                rgb[ask & (gt == cls)] = col
            rgb[ask & (gt == 255)] = (0, 0, 0)
            import io
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="PNG")
            z.writestr(f"SegmentationClass/{e['file'][:-4]}.png", buf.getvalue())


def annotate_coco(export, city, dest):
    """A person whose tool exports COCO: one RLE annotation per class and image, names from our categories."""
    meta = json.loads((export / "regions.json").read_text())
    cats = [{"id": c["id"] + 10, "name": c["name"]} for c in meta["classes"]]  # another tool's ids
    images, anns = [], []
    for i, e in enumerate(meta["images"]):
        gt = truth(city, e["id"])
        ask = original_query(export, e)
        images.append({"id": i, "file_name": "/somewhere/leftImg8bit/train/" + e["file"], "width": e["width"],
                       "height": e["height"]})
        for c in meta["classes"]:
            m = ask & (gt == c["id"])
            if m.any():
                anns.append({"id": len(anns), "image_id": i, "category_id": c["id"] + 10, "iscrowd": 1,
                             "segmentation": rle.encode(m), "bbox": [0, 0, 1, 1], "area": int(m.sum())})
    dest.write_text(json.dumps({"images": images, "categories": cats, "annotations": anns}))


def _state(out):
    led = json.loads((out / "state" / "ledger.json").read_text())
    for e in led["images"].values():
        for r in e["rounds"].values():
            r.pop("labelled", None)
    pngs = {str(p.relative_to(out / "state")): p.read_bytes()
            for sub in ("labels", "active") for p in sorted((out / "state" / sub).rglob("*.png"))}
    return led, pngs


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("human")
    make_tree(root)
    sim = root / "simulated"
    assert main(["train", "--config", "gtav_cityscapes_ra_2.2", "--no-progress", *overrides(root, sim)]) == 0
    return root, sim


def test_a_human_run_ends_like_the_simulated_one(tree, tmp_path, capsys):
    root, sim = tree
    city = root / "cityscapes"
    out = tmp_path / "human"
    args = ["train", "--config", "gtav_cityscapes_ra_2.2", "--no-progress", *overrides(root, out),
            "active.oracle=human"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    q0 = out / "queries" / "round_0"
    assert "round 0 waits for people" in printed and f"ripu import-labels {q0} --from EXPORT" in printed
    assert f"ripu train --resume {out}" in printed and "Segmentation mask 1.1" in printed
    assert not (out / "metrics.json").exists() and not (out / "state" / "labels").exists()
    # resuming before the labels are in is refused, naming what is missing
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    assert "round 0 still waits for the labels of 4 image(s)" in capsys.readouterr().err
    # round 0 through CVAT's Segmentation mask 1.1 (a zip)
    annotate_cvat_mask(q0, city, tmp_path / "cvat_r0.zip")
    assert main(["import-labels", str(q0), "--from", str(tmp_path / "cvat_r0.zip"), "--strict"]) == 0
    assert "of 4 images (cvat-mask" in capsys.readouterr().out
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "round 1 waits for people" in printed
    # round 1 through COCO
    q1 = out / "queries" / "round_1"
    annotate_coco(q1, city, tmp_path / "coco_r1.json")
    assert main(["import-labels", str(q1), "--from", str(tmp_path / "coco_r1.json")]) == 0
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "final mIoU" in capsys.readouterr().out
    # the same masks and ledger as the simulated oracle (and, on the CPU, the same weights)
    led_h, png_h = _state(out)
    led_s, png_s = _state(sim)
    assert png_h.keys() == png_s.keys() and len(png_h) == 8
    assert [k for k in png_h if png_h[k] != png_s[k]] == []
    assert led_h == led_s
    labelled = json.loads((out / "state" / "ledger.json").read_text())
    for image_id, e in labelled["images"].items():
        lab = np.asarray(Image.open(out / "state" / "labels" / (image_id + ".png")))
        assert sum(r["labelled"] for r in e["rounds"].values()) == int((lab != 255).sum())
    w_h = torch.load(out / "checkpoints" / "final.pth", weights_only=True)["model"]
    w_s = torch.load(sim / "checkpoints" / "final.pth", weights_only=True)["model"]
    assert all(torch.equal(w_h[k], w_s[k]) for k in w_s)
    m_h, m_s = (json.loads((d / "metrics.json").read_text()) for d in (out, sim))
    assert m_h["miou_final"] == m_s["miou_final"] and m_h["labelled_fraction"] == m_s["labelled_fraction"]


def test_partial_labels_need_a_flag(tree, tmp_path, capsys):
    root, _ = tree
    out = tmp_path / "human"
    assert main(["train", "--config", "gtav_cityscapes_ra_2.2", "--no-progress", *overrides(root, out),
                 "active.oracle=human", "active.export_formats=[coco]"]) == 0
    q0 = out / "queries" / "round_0"
    assert sorted(p.name for p in q0.iterdir()) == ["coco", "masks", "queries", "regions.json"]
    annotate_coco(q0, root / "cityscapes", tmp_path / "all.json")
    doc = json.loads((tmp_path / "all.json").read_text())
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] == 0]
    (tmp_path / "one.json").write_text(json.dumps(doc))
    assert main(["import-labels", str(q0), "--from", str(tmp_path / "one.json")]) == 0
    assert "3 queried images have no labels yet" in capsys.readouterr().out
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    assert "3 image(s)" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--no-progress", "--allow-missing-labels"]) == 0
    assert "round 1 waits for people" in capsys.readouterr().out
