"""Budgets, acquisition, the simulated oracle, the mask store and the ledger (ripu_kernels.driver.active)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ripu_kernels.driver.active import (AcquisitionError, Acquirer, BatchWriter, Budget, Ledger, MaskStore,
                                        SimulatedOracle)
from ripu_kernels.driver.active.budget import pa_pixels_per_round, ra_regions_per_round
from ripu_kernels.driver.data.synthetic import SyntheticStreets


class FixedModel(torch.nn.Module):
    """A deterministic stand-in for a segmentation model: a fixed random 3x3 conv at half resolution."""

    def __init__(self, num_classes=8, seed=0, poison=None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(num_classes, 3, 3, 3, generator=g), requires_grad=False)
        self.poison = poison  # index in the batch whose logits become NaN

    def forward(self, x):
        out = torch.nn.functional.conv2d(x[:, :, ::2, ::2], self.weight, padding=1)
        if self.poison is not None and out.shape[0] > self.poison:
            out = out.clone()
            out[self.poison, :, 0, 0] = float("nan")
        return out


@pytest.fixture(scope="module")
def target():
    return SyntheticStreets("target", "train", 6, height=24, width=40, seed=3, hide_labels=True)


def test_budgets_follow_the_spec():
    # RA: ceil(H*W*ratio_per_round / (2k+1)^2) with ratio_per_round = ratio / rounds
    assert ra_regions_per_round(640, 1280, 0.022, 5, 1) == math.ceil(640 * 1280 * 0.0044 / 9) == 401
    assert ra_regions_per_round(60, 120, 0.05, 5, 1) == 8          # 72 / 9 exactly: no round-off overshoot
    assert ra_regions_per_round(24, 40, 0.05, 5, 1) == math.ceil(960 * 0.01 / 9) == 2
    assert ra_regions_per_round(100, 100, 0.05, 1, 2) == math.ceil(500 / 25) == 20
    # PA: ceil(pixels_per_round * H*W / (1280*640))
    assert pa_pixels_per_round(640, 1280, 40, 5) == 8
    assert pa_pixels_per_round(1024, 2048, 40, 5) == math.ceil(8 * 1024 * 2048 / (1280 * 640)) == 21
    assert pa_pixels_per_round(60, 120, 40, 5) == 1
    with pytest.raises(ValueError, match="rounds"):
        ra_regions_per_round(10, 10, 0.1, 0, 1)
    b = Budget("ra", 1, 5, ratio=0.05)
    assert (b.radius, b.mask_radius, b.picks(60, 120), b.max_pixels(60, 120)) == (1, 2, 8, 72)
    b = Budget("pa", 32, 5, pixels=40)
    assert (b.radius, b.mask_radius) == (0, 32)


def _round(model, target, tmp_path, budget, round_idx, ledger=None, store=None):
    store = store or MaskStore(tmp_path / "state")
    ledger = ledger if ledger is not None else Ledger.load(tmp_path / "state" / "ledger.json", budget.mode, budget.k)
    writer = BatchWriter(store, tmp_path / "state" / "ledger.json")
    stats = Acquirer(model, budget, batch_size=4).run(target, range(len(target)), ledger, store, writer, round_idx,
                                                      100 + round_idx, oracle=SimulatedOracle(target))
    return stats, store, ledger


@pytest.mark.parametrize("mode,k", [("ra", 1), ("ra", 2), ("pa", 3)])
def test_masks_equal_truth_in_selected_windows_and_255_elsewhere(tmp_path, target, mode, k):
    budget = Budget(mode, k, rounds=2, ratio=0.1, pixels=20000)
    model = FixedModel()
    h, w = 24, 40
    per_image_before = {}
    for r in range(2):
        stats, store, ledger = _round(model, target, tmp_path, budget, r)
        n = budget.picks(h, w)
        assert stats["regions"] <= n * len(target)
        for i in range(len(target)):
            iid = target.image_id(i)
            rec = ledger.images[iid]["rounds"][str(r)]
            assert rec["regions"] <= n and rec["budget"] == n
            truth = target.load_label(i)
            revealed = store.labels(iid, (h, w))
            # reload from disk: what was written is what is cached
            on_disk = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(store.label_path(iid)))
            np.testing.assert_array_equal(on_disk, revealed)
            shown = revealed != 255
            np.testing.assert_array_equal(revealed[shown], truth[shown])
            # the union only grows and previously revealed labels never change
            if r == 1:
                before = per_image_before[iid]
                assert (revealed[before != 255] == before[before != 255]).all()
            per_image_before[iid] = revealed.copy()
            # ledger pixels = revealed pixels (the synthetic truth has no void)
            assert ledger.image_pixels(iid) == int(shown.sum())
            assert rec["pixels"] <= n * (2 * budget.radius + 1) ** 2
    saved = json.loads((tmp_path / "state" / "ledger.json").read_text())
    assert saved["summary"]["labelled_pixels"] == ledger.labelled_pixels
    assert [r["iteration"] for r in saved["summary"]["rounds"]] == [100, 101]
    assert ledger.labelled_fraction == pytest.approx(ledger.labelled_pixels / (len(target) * h * w))


def test_selected_windows_match_select_regions(tmp_path, target):
    """The revealed pixels are exactly the union of the (2k+1)^2 windows around the ledger's picks."""
    import ripu_kernels as rk

    budget = Budget("ra", 1, rounds=1, ratio=0.05)
    model = FixedModel(seed=5)
    _, store, _ = _round(model, target, tmp_path, budget, 0)
    with torch.no_grad():
        x = torch.stack([target[i]["image"] for i in range(len(target))])
        score = rk.region_scores(model(x), k=1, size=(24, 40)).score
    sel = rk.select_regions(score, budget.picks(24, 40), radius=1, mask_radius=2)
    for i in range(len(target)):
        revealed = store.labels(target.image_id(i), (24, 40)) != 255
        np.testing.assert_array_equal(revealed, sel.selected[i].numpy())
        np.testing.assert_array_equal(store.active(target.image_id(i), (24, 40)), sel.active[i].numpy())


def test_rerunning_a_round_is_a_no_op_and_budget_is_never_exceeded(tmp_path, target):
    budget = Budget("ra", 1, rounds=5, ratio=0.05)
    model = FixedModel()
    stats, store, ledger = _round(model, target, tmp_path, budget, 0)
    again, _, _ = _round(model, target, tmp_path, budget, 0, ledger=Ledger.load(
        tmp_path / "state" / "ledger.json", "ra", 1), store=MaskStore(tmp_path / "state"))
    assert stats["images"] == len(target) and again == {"images": 0, "pixels": 0, "regions": 0}
    with pytest.raises(AcquisitionError, match="over its budget"):
        ledger.record(target.image_id(0), 7, 1, 10, budget.picks(24, 40) + 1, budget.picks(24, 40))
    with pytest.raises(AcquisitionError, match="already has an acquisition in round 0"):
        ledger.record(target.image_id(0), 0, 100, 1, 1, 10)


def test_nan_logits_raise_naming_the_image_and_write_nothing(tmp_path, target):
    budget = Budget("ra", 1, rounds=5, ratio=0.05)
    with pytest.raises(AcquisitionError, match=r"non-finite logits .*'target/train/00001'"):
        _round(FixedModel(poison=1), target, tmp_path, budget, 0)
    assert not (tmp_path / "state" / "labels").exists()
    assert not (tmp_path / "state" / "ledger.json").exists()


def test_ledger_merge_and_conflicts(tmp_path, target):
    a, b = Ledger("ra", 1), Ledger("ra", 1)
    for led, iid, px in ((a, "x/1", 9), (b, "x/2", 18)):
        led.register(iid, 10, 10)
        led.record(iid, 0, 50, px, px // 9, 5)
    merged = Ledger.from_dict(json.loads(json.dumps(a.to_dict()))).merge(b)
    assert merged.labelled_pixels == 27 and merged.total_pixels == 200
    assert merged.rounds()[0] == {"round": 0, "iteration": 50, "pixels": 27, "regions": 3, "images": 2,
                                  "whole_images": 0, "labelled_fraction": 27 / 200}
    c = Ledger("ra", 1)
    c.register("x/1", 10, 10)
    c.record("x/1", 0, 50, 18, 2, 5)
    with pytest.raises(AcquisitionError, match="'x/1' round 0 differs"):
        merged.merge(c)
    with pytest.raises(AcquisitionError, match="cannot merge"):
        merged.merge(Ledger("pa", 32))
    d = Ledger("ra", 1)
    d.set_round_iteration(0, 60)
    with pytest.raises(AcquisitionError, match="round 0 ran at iteration 50"):
        merged.merge(d)


def test_corrupt_or_mismatched_state_is_reported(tmp_path, target):
    store = MaskStore(tmp_path)
    path = store.label_path("target/train/00000")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a png")
    with pytest.raises(AcquisitionError, match="cannot read .*00000"):
        store.labels("target/train/00000", (24, 40))
    from ripu_kernels.driver.io import atomic_save_png

    atomic_save_png(store.active_path("a/b"), np.zeros((5, 5), np.uint8))
    with pytest.raises(AcquisitionError, match=r"shape \(5, 5\) but image 'a/b'"):
        store.active("a/b", (24, 40))
    (tmp_path / "ledger.json").write_text("{broken")
    with pytest.raises(AcquisitionError, match="cannot read"):
        Ledger.load(tmp_path / "ledger.json")
    with pytest.raises(AcquisitionError, match="not a safe relative name"):
        store.label_path("../escape")
    assert not list(tmp_path.rglob("*.tmp"))
