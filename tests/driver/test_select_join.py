"""One identity per image and one state layout: `ripu select` into a training run's state joins it or refuses."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ripu_kernels.driver.cli import main
from ripu_kernels.driver.data.cityscapes import Cityscapes
from ripu_kernels.driver.data.folder_images import ImageFolder
from ripu_kernels.driver.data.identity import image_id_from_relpath

from ._fake_city import make_tree, overrides


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("join")
    make_tree(root)
    out = root / "run"
    assert main(["train", "--config", "gtav_cityscapes_ra_2.2", "--no-progress", *overrides(root, out)]) == 0
    return root, out


def _pngs(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*.png"))}


def test_one_identity_for_the_cityscapes_loader_and_an_image_folder(run):
    root, _ = run
    city = Cityscapes(str(root / "cityscapes"), "train", size_wh=None)
    folder = ImageFolder(str(root / "cityscapes" / "leftImg8bit" / "train"))
    assert folder.ids == city.ids == ["aachen/aachen_000000_000019", "aachen/aachen_000002_000019",
                                      "bremen/bremen_000001_000019", "bremen/bremen_000003_000019"]
    assert image_id_from_relpath("a/b_leftImg8bit.jpg") == "a/b" and image_id_from_relpath("_leftImg8bit.png") == \
        "_leftImg8bit"


def test_two_files_with_one_id_are_refused(tmp_path):
    (tmp_path / "x").mkdir()
    for name in ("a.png", "a_leftImg8bit.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x" / name)
    with pytest.raises(ValueError, match="are both image 'a'"):
        ImageFolder(str(tmp_path / "x"))


@pytest.mark.parametrize("how", ["images", "target_set"])
def test_select_into_a_training_runs_state(run, tmp_path, how, capsys):
    """The issue's scenario: train a tiny run, then `ripu select --checkpoint RUN/checkpoints/round_1.pth
    --images ... --out RUN/state --round 2` (or over the config's target set): one ledger entry per image, the same
    total_pixels, the right labelled fraction, and no centre inside an earlier suppression mask."""
    root, out0 = run
    out = tmp_path / "run"
    shutil.copytree(out0, out)
    state = out / "state"
    before = json.loads((state / "ledger.json").read_text())
    active_before = {p.relative_to(state / "active"): np.asarray(Image.open(p)) > 0
                     for p in sorted((state / "active").rglob("*.png"))}
    assert len(before["images"]) == 4 and len(active_before) == 4
    where = ["--images", str(root / "cityscapes" / "leftImg8bit" / "train")] if how == "images" else ["--reveal"]
    assert main(["select", "--checkpoint", str(out / "checkpoints" / "round_1.pth"), *where, "--out", str(state),
                 "--round", "2", "--export", str(tmp_path / "q"), "--format", "png", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    after = json.loads((state / "ledger.json").read_text())
    assert sorted(after["images"]) == sorted(before["images"])  # no second entry for any image
    assert after["summary"]["total_pixels"] == before["summary"]["total_pixels"] == 4 * 32 * 16
    px = sum(r["pixels"] for e in after["images"].values() for r in e["rounds"].values())
    assert all(set(e["rounds"]) == {"0", "1", "2"} for e in after["images"].values())
    assert px > before["summary"]["labelled_pixels"]
    assert after["summary"]["labelled_fraction"] == pytest.approx(px / (4 * 32 * 16))
    assert f"{100 * px / (4 * 32 * 16):.3f}%" in printed
    assert len(list((state / "active").rglob("*.png"))) == 4  # the same mask files, no `_leftImg8bit` twins
    regions = json.loads((tmp_path / "q" / "regions.json").read_text())
    n_centres = 0
    for e in regions["images"]:
        old = active_before[__import__("pathlib").Path(e["id"] + ".png")]
        for reg in e["regions"]:
            col, row = (int(v) for v in reg["label_center"])
            assert not old[row, col], (e["id"], row, col)  # suppression of rounds 0 and 1 honoured
            n_centres += 1
        new = np.asarray(Image.open(state / "active" / (e["id"] + ".png"))) > 0
        assert (new | ~old).all()  # suppression only grows
    assert n_centres > 0
    (tmp_path / f"{how}.json").write_text(json.dumps(after))


def test_both_ways_of_selecting_give_the_same_state(run, tmp_path):
    root, out0 = run
    results = []
    for how in ("images", "target"):
        out = tmp_path / how
        shutil.copytree(out0, out)
        where = ["--images", str(root / "cityscapes" / "leftImg8bit" / "train")] if how == "images" else []
        assert main(["select", "--checkpoint", str(out / "checkpoints" / "round_1.pth"), *where, "--out",
                     str(out / "state"), "--round", "2", "--no-progress"]) == 0
        results.append(((out / "state" / "ledger.json").read_bytes(), _pngs(out / "state")))
    assert results[0] == results[1]


def test_a_selection_that_would_not_join_is_refused(run, tmp_path, capsys):
    root, out0 = run
    out = tmp_path / "run"
    shutil.copytree(out0, out)
    state = out / "state"
    before = {p: p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}
    ckpt = str(out / "checkpoints" / "round_1.pth")
    # one folder level too high: ids 'train/aachen/...' are not the run's
    assert main(["select", "--checkpoint", ckpt, "--images", str(root / "cityscapes" / "leftImg8bit"), "--out",
                 str(state), "--round", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "belongs to a training run" in err and "'train/aachen/aachen_000000_000019'" in err
    assert "one folder level deeper" in err
    # another label size than the run's
    assert main(["select", "--checkpoint", ckpt, "--out", str(state), "--round", "2", "--no-progress",
                 "data.target_size=[24, 12]"]) == 2
    assert "was acquired at 32x16" in capsys.readouterr().err
    # another k than the ledger's
    assert main(["select", "--checkpoint", ckpt, "--out", str(state), "--round", "2", "--no-progress",
                 "active.k=2"]) == 2
    assert "mode=ra k=1" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()} == before  # nothing written
    # a plain select state: a folder whose ids the ledger does not know is refused too
    other = tmp_path / "pool"
    other.mkdir()
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(other / "x.png")
    sel = tmp_path / "sel"
    assert main(["select", "--checkpoint", ckpt, "--out", str(sel), "--no-progress"]) == 0
    assert json.loads((sel / "state.json").read_text())["kind"] == "select"
    assert main(["select", "--checkpoint", ckpt, "--images", str(other), "--out", str(sel), "--round", "1",
                 "--no-progress"]) == 2
    assert "none of the 1 images" in capsys.readouterr().err
