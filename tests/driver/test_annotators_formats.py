"""The export formats against the tools' own readers (pycocotools, datumaro, Label Studio's converter), and
what those tools write read back by `ripu import-labels`. The exported images are 1.5x the label resolution."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
from PIL import Image

from ripu_kernels.driver.annotate.classes import CITYSCAPES_COLORS
from ripu_kernels.driver.annotate.geometry import Grid
from ripu_kernels.driver.annotate.importer import import_labels
from ripu_kernels.driver.cli import main

from ._fake_city import ORIG_H, ORIG_W, TRAIN_H, TRAIN_W, init_checkpoint, make_tree, truth


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmt")
    make_tree(root)
    ckpt = init_checkpoint(root, root / "run")
    exp, state = root / "exp", root / "state"
    assert main(["select", "--checkpoint", str(ckpt), "--out", str(state), "--export", str(exp), "--format", "all",
                 "--no-progress"]) == 0
    meta = json.loads((exp / "regions.json").read_text())
    return root, exp, state, meta


def _grid(e):
    return Grid((e["label_height"], e["label_width"]), (e["height"], e["width"]))


def _query(exp, e):
    return np.asarray(Image.open(exp / e["mask"])) > 0


def _expected(exp, e, original_labels):
    """What import must reveal for original-size labels: their cells' samples, inside the queries."""
    g = _grid(e)
    q = _query(exp, e)
    return np.where(q, g.to_label(np.where(g.to_original(q), original_labels, 255)), 255).astype(np.uint8)


def _fresh_state(state, tmp_path):
    dst = tmp_path / "state"
    shutil.copytree(state, dst)
    return dst


def test_regions_are_in_the_original_images_pixels(exported):
    root, exp, _, meta = exported
    assert meta["images_root"] == str((root / "cityscapes" / "leftImg8bit" / "train").resolve())
    assert meta["classes"][0] == {"id": 0, "name": "road", "color": list(CITYSCAPES_COLORS["road"])}
    assert len(meta["classes"]) == 19 and meta["void"]["color"] == [0, 0, 0] and meta["query"]["name"] == "query"
    assert len(meta["images"]) == 4
    for e in meta["images"]:
        assert e["file"] == e["id"].replace("_000019", "_000019_leftImg8bit") + ".png"
        assert (e["width"], e["height"], e["label_width"], e["label_height"]) == (ORIG_W, ORIG_H, TRAIN_W, TRAIN_H)
        assert e["scale"] == [1.5, 1.5]
        g, q = _grid(e), _query(exp, e)
        union = np.zeros((ORIG_H, ORIG_W), bool)
        for reg in e["regions"]:
            x0, y0, x1, y1 = reg["box"]
            lx0, ly0, lx1, ly1 = reg["label_box"]
            assert 0 <= x0 < x1 <= ORIG_W and 0 <= y0 < y1 <= ORIG_H
            # the box is the cells of the label box: x0 = s(lx0) ... and contains every sample read back
            assert x0 == g.cols.samples[lx0] and y0 == g.rows.samples[ly0]
            assert x1 > g.cols.samples[lx1 - 1] and y1 > g.rows.samples[ly1 - 1]
            assert x0 <= reg["center"][0] <= x1 and y0 <= reg["center"][1] <= y1
            union[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(union, g.to_original(q))
        assert e["original_pixels"] == union.sum() and e["pixels"] == q.sum()


def test_coco_rle_is_pycocotools_encoding(exported):
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO

    _, exp, _, meta = exported
    path = exp / "coco" / "annotations" / "instances_default.json"
    coco = COCO(str(path))
    by_file = {e["file"]: e for e in meta["images"]}
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())][-1] == "query"
    n = 0
    for img in coco.loadImgs(coco.getImgIds()):
        e = by_file[img["file_name"]]
        assert (img["width"], img["height"]) == (e["width"], e["height"])
        union = np.zeros((e["height"], e["width"]), bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            m = coco.annToMask(ann).astype(bool)
            x, y, w, h = ann["bbox"]
            box = np.zeros_like(m)
            box[y:y + h, x:x + w] = True
            np.testing.assert_array_equal(m, box)
            assert ann["area"] == m.sum() == int(mask_api.area(ann["segmentation"]))
            assert mask_api.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode() == \
                ann["segmentation"]["counts"]
            union |= m
            n += 1
        np.testing.assert_array_equal(union, _grid(e).to_original(_query(exp, e)))
    assert n == sum(len(e["regions"]) for e in meta["images"]) > 0


def test_cvat_xml_lists_a_box_per_region(exported):
    _, exp, _, meta = exported
    root = ET.parse(exp / "cvat" / "annotations.xml").getroot()
    assert root.findtext("version") == "1.1"
    labels = [lab.findtext("name") for lab in root.iter("label")]
    assert labels[:2] == ["road", "sidewalk"] and labels[-2:] == ["background", "query"]
    images = root.findall("image")
    assert [im.get("name") for im in images] == [e["file"] for e in meta["images"]]
    for im, e in zip(images, meta["images"]):
        assert (int(im.get("width")), int(im.get("height"))) == (e["width"], e["height"])
        boxes = [[float(b.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")] for b in im.findall("box")]
        assert boxes == [[float(v) for v in r["box"]] for r in e["regions"]]
    assert json.loads((exp / "cvat" / "labels.json").read_text())[-1]["name"] == "query"


def test_label_studio_converter_reads_our_tasks(exported, tmp_path):
    converter = pytest.importorskip("label_studio_converter")
    _, exp, _, meta = exported
    tasks = json.loads((exp / "label-studio" / "tasks.json").read_text())
    # what Label Studio exports once the predictions are accepted as annotations
    done = [{**t, "id": i + 1, "annotations": [{"id": i + 1, "result": t["predictions"][0]["result"]}]}
            for i, t in enumerate(tasks)]
    (tmp_path / "export.json").write_text(json.dumps(done))
    conv = converter.Converter(str(exp / "label-studio" / "config.xml"), str(tmp_path), download_resources=False)
    assert "COCO" in conv.supported_formats
    conv.convert_to_coco(str(tmp_path / "export.json"), str(tmp_path / "coco"), is_dir=False)
    doc = json.loads((tmp_path / "coco" / "result.json").read_text())
    got = [a["bbox"] for a in doc["annotations"]]
    want = [[x0, y0, x1 - x0, y1 - y0] for e in meta["images"] for (x0, y0, x1, y1) in (r["box"] for r in e["regions"])]
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert {c["name"] for c in doc["categories"]} >= {"query", "road", "car"}


def _region_labels(exp, e, city):
    """A person who labels each query region with the class most of it shows (a box per region)."""
    gt = truth(city, e["id"])
    out = []
    for reg in e["regions"]:
        x0, y0, x1, y1 = reg["box"]
        vals = gt[y0:y1, x0:x1].ravel()
        vals = vals[vals != 255]
        out.append((reg["box"], int(np.bincount(vals).argmax()) if vals.size else 0))
    return out


def _painted(e, regions):
    lab = np.full((e["height"], e["width"]), 255, np.uint8)
    for (x0, y0, x1, y1), cls in regions:
        lab[y0:y1, x0:x1] = cls
    return lab


def test_label_studio_polygons_back_as_json_and_through_its_coco_export(exported, tmp_path):
    converter = pytest.importorskip("label_studio_converter")
    root, exp, state, meta = exported
    names = [c["name"] for c in meta["classes"]]
    tasks = json.loads((exp / "label-studio" / "tasks.json").read_text())
    done, expected = [], {}
    for i, (t, e) in enumerate(zip(tasks, meta["images"])):
        regs = _region_labels(exp, e, root / "cityscapes")
        W, H = e["width"], e["height"]
        result = [{"id": f"p{j}", "from_name": "label", "to_name": "image", "type": "polygonlabels",
                   "original_width": W, "original_height": H,
                   "value": {"points": [[100 * x / W, 100 * y / H] for x, y in
                                        ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], "polygonlabels": [names[c]]}}
                  for j, ((x0, y0, x1, y1), c) in enumerate(regs)]
        done.append({**t, "id": i + 1, "annotations": [{"id": i + 1, "result": result}]})
        expected[e["id"]] = _expected(exp, e, _painted(e, regs))
    (tmp_path / "ls.json").write_text(json.dumps(done))
    conv = converter.Converter(str(exp / "label-studio" / "config.xml"), str(tmp_path), download_resources=False)
    conv.convert_to_coco(str(tmp_path / "ls.json"), str(tmp_path / "lscoco"), is_dir=False)
    for src in (tmp_path / "ls.json", tmp_path / "lscoco" / "result.json"):
        st = tmp_path / src.parent.name / "st"
        shutil.copytree(state, st)
        res = import_labels(exp, src, "auto", st, strict=True)
        assert res["format"] == ("label-studio" if src.name == "ls.json" else "coco") and res["images"] == 4
        for image_id, want in expected.items():
            got = np.asarray(Image.open(st / "labels" / (image_id + ".png")))
            np.testing.assert_array_equal(got, want)


datumaro = pytest.importorskip("datumaro")


def _dm_import(path, fmt):
    from datumaro.components.dataset import Dataset

    return Dataset.import_from(str(path), fmt)


def _with_images(src, dst, meta, root):
    shutil.copytree(src, dst)
    for e in meta["images"]:
        p = dst / "images" / e["file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "cityscapes" / "leftImg8bit" / "train" / e["file"], p)
    return dst


def test_datumaro_imports_our_exports(exported, tmp_path):
    from datumaro.components.annotation import AnnotationType

    root, exp, _, meta = exported
    by_item = {e["file"][:-4]: e for e in meta["images"]}
    # CVAT for images 1.1 (datumaro needs the images beside the XML, as CVAT's own export with images)
    ds = _dm_import(_with_images(exp / "cvat", tmp_path / "cvat", meta, root), "cvat")
    cats = ds.categories()[AnnotationType.label]
    assert sorted(it.id for it in ds) == sorted(by_item)
    for it in ds:
        e = by_item[it.id]
        boxes = [[a.x, a.y, a.x + a.w, a.y + a.h] for a in it.annotations]
        assert all(cats[a.label].name == "query" for a in it.annotations)
        assert boxes == [[float(v) for v in r["box"]] for r in e["regions"]]
    # COCO 1.0: masks decoded by datumaro equal ours
    ds = _dm_import(_with_images(exp / "coco", tmp_path / "coco", meta, root), "coco_instances")
    for it in ds:
        e = by_item[it.id]
        union = np.zeros((e["height"], e["width"]), bool)
        for a in it.annotations:
            if a.type == AnnotationType.mask:
                union |= a.image.astype(bool)
        np.testing.assert_array_equal(union, _grid(e).to_original(_query(exp, e)))
    # Segmentation mask 1.1: the query colour decodes to the 'query' label over exactly the queried pixels
    ds = _dm_import(exp / "cvat-mask", "voc_segmentation")
    cats = ds.categories()[AnnotationType.label]
    assert [c.name for c in cats][0] == "background" and "query" in [c.name for c in cats]
    for it in ds:
        e = by_item[it.id]
        query = np.zeros((e["height"], e["width"]), bool)
        for a in it.annotations:
            if cats[a.label].name == "query":
                query |= a.image.astype(bool)
        np.testing.assert_array_equal(query, _grid(e).to_original(_query(exp, e)))


def test_what_datumaro_exports_imports_back(exported, tmp_path):
    from datumaro.components.annotation import Bbox, Mask
    from datumaro.components.dataset import Dataset
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image as DmImage

    root, exp, state, meta = exported
    city = root / "cityscapes"
    names = [c["name"] for c in meta["classes"]]
    masks_items, box_items, exp_masks, exp_boxes = [], [], {}, {}
    for e in meta["images"]:
        gt = truth(city, e["id"])
        ask = _grid(e).to_original(_query(exp, e))
        media = DmImage.from_file(str(city / "leftImg8bit" / "train" / e["file"]))
        anns = [Mask(image=(ask & (gt == c)).astype(np.uint8), label=c) for c in np.unique(gt[ask]) if c != 255]
        masks_items.append(DatasetItem(id=e["file"][:-4], media=media, annotations=anns))
        regs = _region_labels(exp, e, city)
        box_items.append(DatasetItem(id=e["file"][:-4], media=media, annotations=[
            Bbox(x0, y0, x1 - x0, y1 - y0, label=c) for (x0, y0, x1, y1), c in regs]))
        exp_masks[e["id"]] = _expected(exp, e, np.where(ask, gt, 255))
        exp_boxes[e["id"]] = _expected(exp, e, _painted(e, regs))
    label_map = {"background": [(0, 0, 0), [], []], **{n: [tuple(c["color"]), [], []]
                                                        for n, c in zip(names, meta["classes"])}}
    runs = [("voc_segmentation", dict(label_map=label_map, apply_colormap=True), masks_items, exp_masks, "cvat-mask"),
            ("coco_instances", dict(segmentation_mode="mask"), masks_items, exp_masks, "coco"),
            ("cvat", {}, box_items, exp_boxes, "cvat")]
    for fmt, kwargs, items, expected, ours in runs:
        ds = Dataset.from_iterable(items, categories=names)
        out = tmp_path / fmt
        ds.export(str(out), fmt, save_media=False, **kwargs)
        archive = tmp_path / f"{fmt}.zip"  # what CVAT hands out: a zip of that folder
        with zipfile.ZipFile(archive, "w") as z:
            for p in sorted(out.rglob("*")):
                if p.is_file():
                    z.write(p, p.relative_to(out).as_posix())
        st = tmp_path / f"{fmt}_state"
        shutil.copytree(state, st)
        res = import_labels(exp, archive, "auto", st, strict=True)
        assert res["format"] == ours and res["images"] == 4, res
        for image_id, want in expected.items():
            got = np.asarray(Image.open(st / "labels" / (image_id + ".png")))
            np.testing.assert_array_equal(got, want, err_msg=f"{fmt} {image_id}")


def test_exports_at_the_original_label_size_are_in_file_pixels(tmp_path):
    """With active.label_size=original (the paper configs) acquisition happens at the files' own size: the export's
    scale is 1 and its boxes are the label boxes."""
    make_tree(tmp_path)
    ckpt = init_checkpoint(tmp_path, tmp_path / "run", ["active.label_size=original"])
    exp = tmp_path / "exp"
    assert main(["select", "--checkpoint", str(ckpt), "--out", str(tmp_path / "state"), "--export", str(exp),
                 "--format", "coco", "--no-progress"]) == 0
    meta = json.loads((exp / "regions.json").read_text())
    for e in meta["images"]:
        assert (e["width"], e["height"], e["label_width"], e["label_height"]) == (ORIG_W, ORIG_H, ORIG_W, ORIG_H)
        assert e["scale"] == [1.0, 1.0] and e["original_pixels"] == e["pixels"] == _query(exp, e).sum()
        assert all(r["box"] == r["label_box"] for r in e["regions"])
    led = json.loads((tmp_path / "state" / "ledger.json").read_text())
    assert {(v["height"], v["width"]) for v in led["images"].values()} == {(ORIG_H, ORIG_W)}
