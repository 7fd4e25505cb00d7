"""Dataset loaders: the embedded synthetic data and tiny fake trees in the published layouts."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ripu_kernels.driver.data import DataError
from ripu_kernels.driver.data.cityscapes import ID_TO_TRAINID_19, Cityscapes
from ripu_kernels.driver.data.folder_images import ImageFolder
from ripu_kernels.driver.data.gtav import GTAV
from ripu_kernels.driver.data.synthetic import CLASS_NAMES, SyntheticStreets, make_sample
from ripu_kernels.driver.data.synthia import Synthia
from ripu_kernels.driver.io import read_label_png, read_png


def test_synthetic_is_deterministic_and_two_domains_differ():
    a_img, a_lab = make_sample(0, "source", "train", 3, 40, 80)
    b_img, b_lab = make_sample(0, "source", "train", 3, 40, 80)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    t_img, t_lab = make_sample(0, "target", "train", 3, 40, 80)
    assert np.abs(t_img - a_img).mean() > 0.05  # another rendering (palette, blur, lighting)
    assert not np.array_equal(make_sample(1, "source", "train", 3, 40, 80)[1], a_lab)
    ds = SyntheticStreets("target", "val", 100, height=60, width=120)
    labels = np.stack([ds.load_label(i) for i in range(len(ds))])
    assert set(np.unique(labels)) == set(range(len(CLASS_NAMES))) and len(CLASS_NAMES) == 19  # every class shows up
    item = ds[0]
    assert item["image"].shape == (3, 60, 120) and item["label"].shape == (60, 120) and item["id"] == "target/val/00000"
    hidden = SyntheticStreets("target", "train", 2, height=40, width=80, hide_labels=True)
    assert "label" not in hidden[0] and hidden.load_label(0).shape == (40, 80)
    with pytest.raises(ValueError, match="domain"):
        make_sample(0, "night", "train", 0, 40, 80)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rgb(h, w, seed=0):
    return np.random.RandomState(seed).randint(0, 255, (h, w, 3)).astype(np.uint8)


def make_cityscapes(root, split="train", cities=("aachen", "bremen"), h=8, w=16):
    raw = np.zeros((h, w), np.uint8)
    raw[:, :4], raw[:, 4:8], raw[:, 8:12], raw[:, 12:] = 7, 26, 0, 33  # road, car, unlabeled, bicycle
    for c in cities:
        stem = f"{c}/{c}_000000_000019"
        _png(root / "leftImg8bit" / split / f"{stem}_leftImg8bit.png", _rgb(h, w))
        _png(root / "gtFine" / split / f"{stem}_gtFine_labelIds.png", raw)
    return raw


def test_cityscapes_layout_and_mapping(tmp_path):
    make_cityscapes(tmp_path)
    ds = Cityscapes(str(tmp_path), "train", size_wh=None)
    assert ds.ids == ["aachen/aachen_000000_000019", "bremen/bremen_000000_000019"]
    lab = ds.load_label(0)
    assert lab[0, 0] == 0 and lab[0, 5] == 13 and lab[0, 9] == 255 and lab[0, 13] == 18
    ds16 = Cityscapes(str(tmp_path), "train", size_wh=None, num_classes=16)
    lab16 = ds16.load_label(0)
    assert lab16[0, 5] == 12 and lab16[0, 13] == 15 and len(ds16.class_names) == 16
    # resize: image bilinear, label nearest; val may keep the full label resolution
    small = Cityscapes(str(tmp_path), "train", size_wh=(8, 4))
    assert small[0]["image"].shape == (3, 4, 8) and small[0]["label"].shape == (4, 8)
    full = Cityscapes(str(tmp_path), "train", size_wh=(8, 4), native_labels=True)
    assert full[0]["image"].shape == (3, 4, 8) and full[0]["label"].shape == (8, 16)
    # list file with the authors' relative paths
    lst = tmp_path / "list.txt"
    lst.write_text("bremen/bremen_000000_000019_leftImg8bit.png\n")
    assert Cityscapes(str(tmp_path), "train", list_file=str(lst)).ids == ["bremen/bremen_000000_000019"]
    assert ID_TO_TRAINID_19[33] == 18


def test_cityscapes_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="folder not found: .*nowhere"):
        Cityscapes(str(tmp_path / "nowhere"), "train")
    make_cityscapes(tmp_path)
    (tmp_path / "gtFine/train/bremen/bremen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DataError, match="bremen_000000_000019_leftImg8bit.png has no label file"):
        Cityscapes(str(tmp_path), "train")
    _png(tmp_path / "gtFine/train/bremen/bremen_000000_000019_gtFine_labelIds.png", np.zeros((5, 5), np.uint8))
    ds = Cityscapes(str(tmp_path), "train", size_wh=None)
    with pytest.raises(DataError, match="size mismatch: image .*bremen.* is 16x8 but its label .* is 5x5"):
        ds.load_label(1)
    (tmp_path / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="cannot read image file .*aachen_000000_000019_leftImg8bit.png"):
        ds[0]


def test_gtav_layout(tmp_path):
    raw = np.array([[7, 8, 11, 255]], np.uint8).repeat(4, 0)
    for name in ("00001.png", "00002.png"):
        _png(tmp_path / "images" / name, _rgb(4, 4))
        _png(tmp_path / "labels" / name, raw)
    ds = GTAV(str(tmp_path), size_wh=None)
    assert ds.ids == ["00001", "00002"] and ds.num_classes == 19
    np.testing.assert_array_equal(ds.load_label(0)[0], [0, 1, 2, 255])
    (tmp_path / "list.txt").write_text("00002.png\n")
    assert GTAV(str(tmp_path), list_file=str(tmp_path / "list.txt")).ids == ["00002"]
    (tmp_path / "labels" / "00001.png").unlink()
    with pytest.raises(DataError, match="00001.png has no label file"):
        GTAV(str(tmp_path))
    with pytest.raises(DataError, match="list file not found"):
        GTAV(str(tmp_path), list_file=str(tmp_path / "nope.txt"))


def _png_filter_types(path) -> set[int]:
    """The PNG filter type byte of every row of a non-interlaced PNG (to prove which filter a file uses)."""
    import struct
    import zlib

    blob = path.read_bytes()
    pos, idat, header = 8, b"", None
    while pos < len(blob):
        length, tag = struct.unpack(">I4s", blob[pos:pos + 8])
        body = blob[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = header[:4]
    stride = width * {0: 1, 2: 3, 4: 2, 6: 4}[colour] * depth // 8 + 1
    raw = zlib.decompress(idat)
    return {raw[y * stride] for y in range(height)}


def _write_png16_with(path, rgb: np.ndarray, png_filter: int) -> None:
    """A 16-bit RGB PNG written by OpenCV (libpng) with one PNG row filter."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_PNG_FILTER, png_filter])
    assert ok


@pytest.mark.parametrize("name,code", [("none", 0), ("sub", 1), ("up", 2), ("average", 3), ("paeth", 4)])
def test_read_png_decodes_every_filter_of_16bit_rgb(tmp_path, name, code):
    import cv2

    flag = {"none": cv2.IMWRITE_PNG_FILTER_NONE, "sub": cv2.IMWRITE_PNG_FILTER_SUB, "up": cv2.IMWRITE_PNG_FILTER_UP,
            "average": cv2.IMWRITE_PNG_FILTER_AVG, "paeth": cv2.IMWRITE_PNG_FILTER_PAETH}[name]
    rgb = np.random.default_rng(code).integers(0, 65536, (37, 53, 3), dtype=np.uint16)
    rgb[0, 0] = (65535, 1, 256)  # high and low bytes distinct in each channel
    path = tmp_path / f"{name}.png"
    _write_png16_with(path, rgb, flag)
    assert _png_filter_types(path) == {code}, "the file does not use the filter under test"
    got = read_png(path)
    assert got.dtype == np.uint16 and got.shape == rgb.shape
    np.testing.assert_array_equal(got, rgb)          # every value, in RGB order
    np.testing.assert_array_equal(read_label_png(path), rgb[..., 0])


def test_read_png_keeps_palette_indices_and_names_bad_files(tmp_path):
    pal = Image.fromarray(np.array([[0, 7, 26], [33, 255, 7]], np.uint8), mode="P")
    pal.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "p.png"), [[0, 7, 26], [33, 255, 7]])
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="bad.png"):
        read_png(tmp_path / "bad.png")
    with pytest.raises(DataError, match="file not found: .*missing.png"):
        read_png(tmp_path / "missing.png")


def test_synthia_reads_paeth_filtered_16bit_labels(tmp_path):
    import cv2

    lab = np.zeros((4, 6, 3), np.uint16)
    lab[..., 0] = np.array([3, 4, 2, 8, 0, 300])[None, :]   # road, sidewalk, building, car, void, out of range
    lab[..., 1] = 1000                                       # instance ids in channel 1 must be ignored
    _png(tmp_path / "RGB" / "0000000.png", _rgb(4, 6))
    _write_png16_with(tmp_path / "GT" / "LABELS" / "0000000.png", lab, cv2.IMWRITE_PNG_FILTER_PAETH)
    ds = Synthia(str(tmp_path), size_wh=None)
    np.testing.assert_array_equal(ds.load_label(0)[0], [0, 1, 2, 12, 255, 255])
    assert ds.num_classes == 16 and ds[0]["label"].shape == (4, 6)


def test_image_folder(tmp_path):
    _png(tmp_path / "imgs" / "a" / "x.png", _rgb(6, 8))
    _png(tmp_path / "imgs" / "y.jpg", _rgb(6, 8, 1))
    ds = ImageFolder(str(tmp_path / "imgs"))
    assert ds.ids == ["a/x", "y"] and "label" not in ds[0]
    _png(tmp_path / "labs" / "a" / "x.png", np.ones((6, 8), np.uint8))
    with pytest.raises(DataError, match="y.jpg has no label file"):
        ImageFolder(str(tmp_path / "imgs"), labels_root=str(tmp_path / "labs"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .png/.jpg images"):
        ImageFolder(str(tmp_path / "empty"))
