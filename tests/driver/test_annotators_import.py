"""`ripu import-labels` on untrusted files: unknown classes and colours, sizes, zips that leave the archive,
XML with entities, --strict; every refusal names the file, the image and the value, and writes nothing."""
from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from ripu_kernels.driver.annotate import rle
from ripu_kernels.driver.annotate.geometry import Grid
from ripu_kernels.driver.cli import main

from ._fake_city import init_checkpoint, make_tree


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("imp")
    make_tree(root)
    ckpt = init_checkpoint(root, root / "run")
    assert main(["select", "--checkpoint", str(ckpt), "--out", str(root / "state"), "--export", str(root / "exp"),
                 "--format", "cvat-mask", "--no-progress"]) == 0
    return root, json.loads((root / "exp" / "regions.json").read_text())


@pytest.fixture
def case(exported, tmp_path):
    root, meta = exported
    shutil.copytree(root / "state", tmp_path / "state")
    shutil.copytree(root / "exp", tmp_path / "exp")
    return tmp_path / "state", tmp_path / "exp", meta


def _snapshot(state):
    return {p: p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}


def _refused(state, exp, src, capsys, *match, extra=()):
    before = _snapshot(state)
    assert main(["import-labels", str(exp), "--from", str(src), *extra]) == 2
    err = capsys.readouterr().err
    for m in match:
        assert m in err, err
    assert _snapshot(state) == before


def _coco(meta, anns, cats=None):
    e = meta["images"][0]
    return {"images": [{"id": 1, "file_name": e["file"], "width": e["width"], "height": e["height"]}],
            "categories": cats or [{"id": 1, "name": "road"}], "annotations": anns}


def _first_region(e):
    x0, y0, x1, y1 = e["regions"][0]["box"]
    m = np.zeros((e["height"], e["width"]), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_unknown_classes_and_colours_are_refused(case, tmp_path, capsys):
    state, exp, meta = case
    e = meta["images"][0]
    doc = _coco(meta, [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle.encode(_first_region(e))}],
                [{"id": 1, "name": "tree"}])
    (tmp_path / "c.json").write_text(json.dumps(doc))
    _refused(state, exp, tmp_path / "c.json", capsys, "unknown class 'tree'", repr(e["id"]), "c.json")
    # a CVAT mask with a colour its labelmap does not declare
    src = tmp_path / "mask"
    shutil.copytree(exp / "cvat-mask", src)
    png = src / "SegmentationClass" / (e["file"][:-4] + ".png")
    arr = np.asarray(Image.open(png)).copy()
    arr[_first_region(e)] = (1, 2, 3)
    Image.fromarray(arr).save(png)
    _refused(state, exp, src, capsys, "colour (1, 2, 3), which labelmap.txt does not declare", repr(e["id"]))
    # a label the labelmap declares that is not one of our classes
    (src / "labelmap.txt").write_text((exp / "cvat-mask" / "labelmap.txt").read_text() + "tree:1,2,3::\n")
    _refused(state, exp, src, capsys, "label 'tree' (colour (1, 2, 3))")
    # label-id PNGs: ids outside 0..18
    lab = np.where(_first_region(e), 40, 255).astype(np.uint8)
    (tmp_path / "ids" / "aachen").mkdir(parents=True)
    Image.fromarray(lab).save(tmp_path / "ids" / (e["id"] + ".png"))
    _refused(state, exp, tmp_path / "ids", capsys, "class id 40", repr(e["id"]))
    # and a wrong size
    Image.fromarray(np.full((5, 7), 255, np.uint8)).save(tmp_path / "ids" / (e["id"] + ".png"))
    _refused(state, exp, tmp_path / "ids", capsys, "is 7x5; expected 48x24 or 32x16")


def test_outside_labels_are_counted_or_refused_with_strict(case, tmp_path, capsys):
    state, exp, meta = case
    e = meta["images"][0]
    g = Grid((e["label_height"], e["label_width"]), (e["height"], e["width"]))
    q = g.to_original(np.asarray(Image.open(exp / e["mask"])) > 0)
    lab = np.where(q, 0, 255).astype(np.uint8)
    r, c = np.argwhere(~q)[0]
    lab[r, c] = 1
    (tmp_path / "ids" / "aachen").mkdir(parents=True)
    Image.fromarray(lab).save(tmp_path / "ids" / (e["file"]))  # named by file name, at the original size
    _refused(state, exp, tmp_path / "ids", capsys, "1 pixel(s) outside the queried regions", repr(e["id"]),
             extra=["--strict"])
    assert main(["import-labels", str(exp), "--from", str(tmp_path / "ids")]) == 0
    assert "ignored 1 labelled pixels outside" in capsys.readouterr().out
    got = np.asarray(Image.open(state / "labels" / (e["id"] + ".png")))
    sel = np.asarray(Image.open(exp / e["mask"])) > 0
    np.testing.assert_array_equal(got, np.where(sel, 0, 255))
    led = json.loads((state / "ledger.json").read_text())
    assert led["images"][e["id"]]["rounds"]["0"]["labelled"] == sel.sum()


def test_untrusted_archives_and_xml_are_refused(case, tmp_path, capsys):
    state, exp, meta = case
    for name, match in (("../evil.png", "leaves the archive"), ("/abs/evil.png", "absolute"),
                        ("a\\..\\b.png", "non-POSIX")):
        z = tmp_path / "bad.zip"
        with zipfile.ZipFile(z, "w") as f:
            f.writestr("labelmap.txt", "background:0,0,0::\n")
            f.writestr(name, b"x")
        _refused(state, exp, z, capsys, match, "bad.zip")
    link = zipfile.ZipInfo("SegmentationClass/x.png")
    link.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as f:
        f.writestr(link, "/etc/passwd")
    _refused(state, exp, tmp_path / "link.zip", capsys, "symbolic link")
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.writestr("annotations/instances_default.json", b" " * (20 * 2**20))
    _refused(state, exp, tmp_path / "bomb.zip", capsys, "expands")
    (tmp_path / "x.xml").write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><annotations>&b;'
                                    "</annotations>")
    _refused(state, exp, tmp_path / "x.xml", capsys, "declares a DTD or entities")


def test_an_image_name_is_matched_by_path_suffix_and_upload_prefix(case, tmp_path, capsys):
    state, exp, meta = case
    e = meta["images"][1]
    m = _first_region(e)
    base = e["file"].rsplit("/", 1)[1]
    for file_name in ("/data/cs/leftImg8bit/train/" + e["file"], f"images/1/0a1b2c3d-{base}"):
        doc = _coco(meta, [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle.encode(m)}])
        doc["images"][0].update(file_name=file_name, width=e["width"], height=e["height"])
        (tmp_path / "c.json").write_text(json.dumps(doc))
        assert main(["import-labels", str(exp), "--from", str(tmp_path / "c.json")]) == 0
        assert "of 1 images (coco" in capsys.readouterr().out
    doc["images"][0]["file_name"] = "nothing-like-it.png"
    (tmp_path / "c.json").write_text(json.dumps(doc))
    assert main(["import-labels", str(exp), "--from", str(tmp_path / "c.json")]) == 0
    assert "not queried in this round and were ignored" in capsys.readouterr().out
