"""Acquisition strategies and budget units (ripu_kernels.driver.active.scoring / budget / acquire / shards)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

import ripu_kernels as rk
from ripu_kernels.driver.active import Acquirer, BatchWriter, Budget, Ledger, MaskStore, SimulatedOracle
from ripu_kernels.driver.active.acquire import paint
from ripu_kernels.driver.active.budget import max_picks
from ripu_kernels.driver.active.scoring import STRATEGIES, ScoreContext, score_maps, strategy
from ripu_kernels.driver.active.shards import acquire_shard, load_plan, merge_round, plan_path
from ripu_kernels.driver.config import ConfigError, load_config
from ripu_kernels.driver.data.synthetic import SyntheticStreets

from .test_active import FixedModel

H, W = 24, 40


@pytest.fixture(scope="module")
def target():
    return SyntheticStreets("target", "train", 6, height=H, width=W, seed=3, hide_labels=True)


def _logits(target, model):
    with torch.no_grad():
        return model(torch.stack([target[i]["image"] for i in range(len(target))]))


def _round(target, tmp_path, budget, round_idx=0, model=None, batch_size=4):
    """One journalled round through acquire_shard (what `ripu select` and training use)."""
    acq = Acquirer(model or FixedModel(num_classes=19), budget, batch_size=batch_size)
    stats = acquire_shard(acq, target, tmp_path, round_idx, 100 + round_idx, oracle=SimulatedOracle(target))
    from ripu_kernels.driver.active.shards import merge_round

    ledger = merge_round(tmp_path, round_idx, 1, budget.mode, budget.k, required=True)
    return stats, MaskStore(tmp_path), ledger


def test_every_strategy_is_registered_with_its_geometry():
    assert {"ra", "pa", "impurity", "uncertainty", "entropy", "random"} <= set(STRATEGIES)
    geometry = {name: STRATEGIES[name].geometry for name in ("ra", "pa", "impurity", "uncertainty", "entropy",
                                                              "random")}
    assert geometry == {"ra": "regions", "pa": "pixels", "impurity": "regions", "uncertainty": "regions",
                        "entropy": "pixels", "random": "regions"}
    assert not STRATEGIES["random"].uses_model and STRATEGIES["ra"].uses_model


def test_scores_come_from_the_public_fused_ops(target):
    logits = _logits(target, FixedModel(num_classes=19, seed=2))
    size = (H, W)
    region = rk.region_scores(logits, k=1, size=size)
    pixel = rk.pixel_scores(logits, k=1, size=size)
    expect = {"ra": region.score, "impurity": region.impurity, "uncertainty": region.uncertainty,
              "pa": pixel.score, "entropy": pixel.uncertainty}
    for name, want in expect.items():
        got = score_maps(logits, Budget("ra", 1, 5, ratio=0.05, strategy=name), size, ids=target.ids)
        torch.testing.assert_close(got, want, msg=name)
    # the entropy strategy is the pixel entropy of the logits resized to the label size
    up = torch.nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=True)
    torch.testing.assert_close(score_maps(logits, Budget("ra", 1, 5, strategy="entropy"), size),
                               rk.pixel_entropy(up), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["ra", "pa", "impurity", "uncertainty", "entropy", "random"])
def test_each_strategy_reveals_exactly_what_select_regions_picks_within_the_budget(tmp_path, target, name):
    budget = Budget("ra", 1, rounds=2, ratio=0.05, strategy=name, seed=7)
    model = FixedModel(num_classes=19, seed=1)
    stats, store, ledger = _round(target, tmp_path, budget, model=model)
    n = budget.picks(H, W)
    assert n == (24 if budget.geometry == "pixels" else 3)  # ceil(960 * 0.025 / area), area 1 or 9
    score = score_maps(_logits(target, model), budget, (H, W), ids=target.ids, round_idx=0)
    sel = rk.select_regions(score, n, radius=budget.radius, mask_radius=budget.mask_radius)
    for i in range(len(target)):
        iid = target.image_id(i)
        revealed = store.labels(iid, (H, W)) != 255
        np.testing.assert_array_equal(revealed, sel.selected[i].numpy(), err_msg=f"{name} {iid}")
        np.testing.assert_array_equal(store.active(iid, (H, W)), sel.active[i].numpy())
        rec = ledger.images[iid]["rounds"]["0"]
        assert rec["regions"] == int(sel.counts[i]) <= rec["budget"] == n and rec["images"] == 0
        assert rec["pixels"] == int(revealed.sum()) <= n * budget.area
        if budget.geometry == "pixels":
            assert rec["pixels"] == rec["regions"]
    assert ledger.strategy == name and ledger.unit == "ratio"


def test_random_is_seeded_and_independent_of_batching(tmp_path, target):
    runs = {}
    for tag, seed, batch in (("a", 7, 4), ("b", 7, 1), ("c", 8, 4)):
        _, store, _ = _round(target, tmp_path / tag, Budget("ra", 1, 2, ratio=0.05, strategy="random", seed=seed),
                             batch_size=batch)
        runs[tag] = np.stack([store.labels(i, (H, W)) for i in target.ids])
    np.testing.assert_array_equal(runs["a"], runs["b"])       # same seed: the same windows, any batch layout
    assert not np.array_equal(runs["a"], runs["c"])          # another seed: other windows
    ctx = ScoreContext(size=(H, W), k=1, ids=("x",), round=0, seed=7)
    r0 = STRATEGIES["random"].score(None, ctx)
    r1 = STRATEGIES["random"].score(None, ScoreContext(size=(H, W), k=1, ids=("x",), round=1, seed=7))
    assert not torch.equal(r0, r1) and 0 <= float(r0.min()) and float(r0.max()) < 1


def test_a_new_strategy_is_one_registered_function(tmp_path, target):
    @strategy("test_margin", geometry="pixels")
    def margin(logits, ctx):
        up = torch.nn.functional.interpolate(logits, ctx.size, mode="bilinear", align_corners=ctx.align_corners)
        top2 = up.topk(2, dim=1).values
        return -(top2[:, 0] - top2[:, 1])

    try:
        cfg = load_config("demo", ["active.strategy=test_margin"])
        budget = Budget.from_config(cfg)
        assert budget.strategy == "test_margin" and budget.geometry == "pixels" and budget.radius == 0
        _, store, ledger = _round(target, tmp_path, Budget("ra", 1, 2, ratio=0.05, strategy="test_margin"))
        assert all(rec["pixels"] == rec["regions"] == 24 for e in ledger.images.values()
                   for rec in e["rounds"].values())
    finally:
        del STRATEGIES["test_margin"]


def test_unknown_strategy_or_unit_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"active\.strategy must be one of .*entropy.*random.*got 'best'"):
        load_config("demo", ["active.strategy=best"])
    with pytest.raises(ConfigError, match=r"active\.unit must be one of ratio, pixels, pool, images, got 'px'"):
        load_config("demo", ["active.unit=px"])
    with pytest.raises(ValueError, match="active.strategy must be one of"):
        Budget("ra", 1, 5, strategy="nope")
    with pytest.raises(ValueError, match="active.unit must be one of"):
        Budget("ra", 1, 5, unit="nope")


def test_budget_units_and_their_defaults():
    assert (Budget("ra", 1, 5).strategy, Budget("ra", 1, 5).unit) == ("ra", "ratio")
    assert (Budget("pa", 32, 5).strategy, Budget("pa", 32, 5).unit) == ("pa", "pixels")
    # ratio: the same labelled pixels whatever the geometry: 60x120 at 1% = 8 regions of 3x3 or 72 pixels
    assert Budget("ra", 1, 5, ratio=0.05).picks(60, 120) == 8
    assert Budget("ra", 1, 5, ratio=0.05, strategy="entropy").picks(60, 120) == 72
    # pixels (PA): per 1280x640 image; a region strategy gets the windows that hold that many pixels
    assert Budget("pa", 32, 5, pixels=40).picks(640, 1280) == 8
    assert Budget("pa", 1, 1, pixels=90, strategy="ra").picks(640, 1280) == 10
    # pool: the ratio over the summed pixels of the pool; images: the ratio of the number of images
    assert Budget("ra", 1, 5, ratio=0.05, unit="pool").pool_picks([(60, 120)] * 3) == 24
    assert Budget("ra", 1, 5, ratio=0.05, unit="images").pool_images(200) == 2
    assert max_picks(60, 120, 2) == 20 * 40 and max_picks(5, 5, 0) == 25
    with pytest.raises(ValueError, match="no per-image quota"):
        Budget("ra", 1, 5, unit="pool").picks(10, 10)


def test_max_picks_bounds_every_greedy_sequence():
    g = torch.Generator().manual_seed(0)
    for m in (0, 1, 2, 3):
        score = torch.rand(3, 13, 17, generator=g)
        sel = rk.select_regions(score, 13 * 17, radius=0, mask_radius=m)
        assert int(sel.counts.max()) <= max_picks(13, 17, m)


def _naive_pool(scores: np.ndarray, active: np.ndarray, budget: int, mask_radius: int) -> list[tuple]:
    """The pool-level greedy written out: the highest available score of any image (ties: the earlier image,
    then the smaller flat index), its window suppressed, until ``budget`` picks or nothing is left."""
    act = active.copy()
    b, h, w = scores.shape
    picks = []
    while len(picks) < budget:
        masked = np.where(act | np.isnan(scores), -np.inf, scores)
        best = masked.max()
        if best == -np.inf:
            break
        img, flat = next((i, int(np.flatnonzero(masked[i].ravel() == best)[0])) for i in range(b)
                         if (masked[i] == best).any())
        r, c = divmod(flat, w)
        picks.append((img, r, c))
        act[img, max(0, r - mask_radius):r + mask_radius + 1, max(0, c - mask_radius):c + mask_radius + 1] = True
    return picks


class _Fixed:
    """A dataset stub of images whose strategy scores are given maps (via a registered test strategy)."""

    def __init__(self, maps: np.ndarray):
        self.maps = maps
        self.ids = [f"img{i:02d}" for i in range(len(maps))][::-1]  # positions are by sorted id, not by index

    def __len__(self):
        return len(self.maps)

    def image_id(self, i):
        return self.ids[i]

    def __getitem__(self, i):
        return {"image": torch.zeros(3, *self.maps.shape[1:]), "index": i, "id": self.ids[i]}

    def load_label(self, i):
        return np.full(self.maps.shape[1:], i % 19, np.int64)


@pytest.mark.parametrize("geometry,k,ratio", [("regions", 1, 0.3), ("pixels", 1, 0.1), ("pixels", 2, 0.3)])
def test_pool_level_budget_equals_the_naive_pool_greedy(tmp_path, geometry, k, ratio):
    """Per-image greedy sequences merged by score equal the pool-level greedy, ties and suppression included."""
    g = np.random.default_rng(5)
    maps = np.round(g.uniform(0, 1, size=(5, 11, 14)), 1)  # few distinct values: many ties within and across
    maps[2] = 0.95  # one image of equal scores
    maps[3, :5] = np.nan
    ds = _Fixed(maps)
    by_id = {ds.ids[i]: torch.from_numpy(maps[i]).float() for i in range(len(ds))}

    @strategy("test_fixed", geometry=geometry, uses_model=False)
    def fixed(logits, ctx):
        return torch.stack([by_id[i] for i in ctx.ids])

    try:
        budget = Budget("ra", k, rounds=2, ratio=ratio, strategy="test_fixed", unit="pool")
        store = MaskStore(tmp_path)
        # a suppressed corner from an earlier round
        pre = np.zeros((11, 14), bool)
        pre[:3, :3] = True
        store.update_active(ds.ids[0], pre)
        acq = Acquirer(torch.nn.Identity(), budget, batch_size=2)
        acquire_shard(acq, ds, tmp_path, 0, 10, oracle=SimulatedOracle(ds))
        merge_round(tmp_path, 0, 1, "ra", k, required=True)
        plan = load_plan(plan_path(tmp_path, 0))
        pool = budget.pool_picks([(11, 14)] * 5)
        assert plan["budget"] == pool == int(np.ceil(5 * 154 * ratio / 2 / budget.area - 1e-9))
        # the naive loop over images in sorted-id order
        order = sorted(range(len(ds)), key=lambda i: ds.ids[i])
        active = np.stack([pre if i == 0 else np.zeros((11, 14), bool) for i in order])
        naive = _naive_pool(maps[order].astype(np.float32).astype(np.float64), active, pool, budget.mask_radius)
        assert len(naive) == plan["taken"] == min(pool, plan["available"])
        assert (plan["taken"] < pool) == (k == 2)  # the k=2 pixel case exhausts the pool
        want: dict[str, list] = {}
        for img, r, c in naive:
            want.setdefault(ds.ids[order[img]], []).append((r, c))
        got = {i: [tuple(x) for x in c.tolist()] for i, c in plan["centers"].items()}
        assert got == want
        led = Ledger.load(tmp_path / "ledger.json", "ra", k)
        assert led.round_budgets == {"0": {"unit": "pool", "regions": pool}}
        assert led.round_totals(0)["regions"] == plan["taken"] and led.unit == "pool"
        for i, image_id in enumerate(ds.ids):
            rec = led.images[image_id]["rounds"]["0"]
            assert rec["regions"] == len(want.get(image_id, []))
            sel = paint(np.asarray(want.get(image_id, np.zeros((0, 2))), np.int64), (11, 14), budget.radius)
            np.testing.assert_array_equal(store.labels(image_id, (11, 14)) != 255, sel)
            assert rec["pixels"] == int(sel.sum())
    finally:
        del STRATEGIES["test_fixed"]


def test_pool_budget_larger_than_the_pool_stops_at_the_pool(tmp_path, target, caplog):
    budget = Budget("ra", 1, rounds=1, ratio=1.0, unit="pool")
    with caplog.at_level(logging.WARNING, logger="ripu"):
        stats, store, ledger = _round(target, tmp_path, budget)
    assert "only" in caplog.text and "available" in caplog.text
    pool = budget.pool_picks([(H, W)] * len(target))
    plan = load_plan(plan_path(tmp_path, 0))
    assert plan["budget"] == pool and plan["taken"] == plan["available"] < pool
    assert ledger.round_totals(0)["regions"] == plan["taken"] == stats["regions"]
    # every image is covered by suppression windows: nothing is left to pick
    for image_id in target.ids:
        sel = rk.select_regions(torch.rand(1, H, W), 1, radius=1, mask_radius=2,
                                active=torch.from_numpy(store.active(image_id, (H, W)))[None])
        assert int(sel.counts[0]) == 0


def test_per_image_budget_larger_than_the_image_stops_with_a_warning(tmp_path, target, caplog):
    budget = Budget("ra", 1, rounds=1, ratio=1.0)
    with caplog.at_level(logging.WARNING, logger="ripu"):
        stats, _, ledger = _round(target, tmp_path, budget)
    assert "fewer available windows than their quota" in caplog.text
    n = budget.picks(H, W)
    for e in ledger.images.values():
        rec = e["rounds"]["0"]
        assert rec["budget"] == n and rec["regions"] < n and rec["regions"] <= max_picks(H, W, 2)


def test_image_level_rounds_reveal_whole_images_by_mean_score(tmp_path, target, caplog):
    budget = Budget("ra", 1, rounds=3, ratio=0.5, unit="images")     # ceil(6 * 0.5 / 3) = 1 image a round
    model = FixedModel(num_classes=19, seed=4)
    means = score_maps(_logits(target, model), budget, (H, W), ids=target.ids).mean(dim=(1, 2))
    ranked = [target.image_id(i) for i in torch.argsort(means, descending=True).tolist()]
    revealed = []
    for r in range(3):
        stats, store, ledger = _round(target, tmp_path, budget, round_idx=r, model=model)
        whole = [i for i, e in ledger.images.items() if e["rounds"][str(r)]["images"] == 1]
        assert len(whole) == 1 and stats["pixels"] == H * W and stats["regions"] == 0
        revealed += whole
        truth = target.load_label(target.index_of(whole[0]))
        np.testing.assert_array_equal(store.labels(whole[0], (H, W)), truth)
        assert store.active(whole[0], (H, W)).all()
        assert ledger.round_budgets[str(r)] == {"unit": "images", "images": 1}
    assert revealed == ranked[:3]  # the model does not change between these rounds: the next best each time
    assert ledger.labelled_pixels == 3 * H * W
    assert [row["whole_images"] for row in ledger.rounds()] == [1, 1, 1]
    # more images than are left: all the rest, with a warning
    big = Budget("ra", 1, rounds=1, ratio=1.0, unit="images")
    with caplog.at_level(logging.WARNING, logger="ripu"):
        _round(target, tmp_path, big, round_idx=3, model=model)
    led = json.loads((tmp_path / "ledger.json").read_text())
    assert "whole images but only 3 are available" in caplog.text
    assert led["summary"]["labelled_fraction"] == 1.0 and led["round_budgets"]["3"]["images"] == 6


def test_round_level_budgets_are_checked_by_the_ledger():
    led = Ledger("ra", 1, "ra", "pool")
    for iid in ("a", "b"):
        led.register(iid, 10, 10)
        led.record(iid, 0, 5, 9, 1, 1)
    led.set_round_budget(0, "pool", 2)
    led.check_round(0)
    led.register("c", 10, 10)
    led.record("c", 0, 5, 9, 1, 1)
    from ripu_kernels.driver.errors import AcquisitionError

    with pytest.raises(AcquisitionError, match="round 0 took 3 regions, over its pool budget of 2"):
        led.check_round(0)
    with pytest.raises(AcquisitionError, match="budget"):
        led.set_round_budget(0, "pool", 5)
    with pytest.raises(AcquisitionError, match="cannot reveal"):
        led.record("a", 1, 6, 101, 0, 1, images=1)
    with pytest.raises(AcquisitionError, match="cannot merge a ledger of active.strategy=ra into one of active.strategy=entropy"):
        Ledger("ra", 1, "entropy").merge(led)


def test_select_refuses_round_level_units_over_separate_shards(tmp_path, target):
    from ripu_kernels.driver.errors import AcquisitionError

    acq = Acquirer(FixedModel(num_classes=19), Budget("ra", 1, 2, ratio=0.1, unit="pool"))
    with pytest.raises(AcquisitionError, match="run it in one process or under torchrun"):
        acquire_shard(acq, target, tmp_path, 0, 0, shard=0, num_shards=2)
