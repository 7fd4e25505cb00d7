"""The paper's setup as the authors' code has it (BIT-DA/RIPU): LR schedule, balanced sampling, flip TTA, the
DeepLab-v3+ head's names and shapes, budgets at the original label size, SYNTHIA's mIoU*."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ripu_kernels.driver.active.budget import Budget
from ripu_kernels.driver.config import ModelConfig, load_config
from ripu_kernels.driver.data.balanced import BalancedBatchSampler, build_balanced_list, class_weights
from ripu_kernels.driver.engine.schedule import poly_lr
from ripu_kernels.driver.models import build_model

from ._trees import make_cityscapes, make_gtav


# ------------------------------------------------------------------------------------------------ LR schedule
def test_lr_follows_poly_over_max_iter_and_stops_at_stop_iter():
    cfg = load_config("gtav_cityscapes_ra_2.2")
    base, horizon = cfg.train.lr, cfg.lr_horizon
    assert (base, horizon, cfg.train.iters) == (2.5e-4, 62500, 40000)
    assert poly_lr(base, 0, horizon, 0.9) == 2.5e-4
    assert poly_lr(base, 10000, horizon, 0.9) == pytest.approx(2.5e-4 * 0.84 ** 0.9, rel=1e-12)
    assert poly_lr(base, 10000, horizon, 0.9) == pytest.approx(2.1369e-4, rel=1e-4)
    # at the stop the LR is still about 0.40 x base (it would reach 0 only at 62,500)
    assert poly_lr(base, 40000, horizon, 0.9) / base == pytest.approx(0.36 ** 0.9, rel=1e-12)
    assert 0.398 < poly_lr(base, 40000, horizon, 0.9) / base < 0.400
    src = load_config("gtav_cityscapes_source_only")
    assert poly_lr(src.train.lr, 20000, src.lr_horizon, 0.9) == pytest.approx(5e-4 * 0.36 ** 0.9)
    sf = load_config("synthia_cityscapes_ra_2.2_source_free")
    assert (sf.lr_horizon, sf.train.iters) == (62500, 30000)


def test_training_uses_the_poly_lr_of_each_step_and_stops_at_train_iters(tmp_path, monkeypatch):
    from ripu_kernels.driver.engine.trainer import Trainer

    cfg = load_config("demo", [f"out_dir={tmp_path}", "threads=1", "data.synthetic.height=24",
                               "data.synthetic.width=48", "data.synthetic.n_source=4",
                               "data.synthetic.n_target_train=2", "data.synthetic.n_target_val=2", "model.width=8",
                               "train.iters=4", "train.max_iter=10", "active.rounds_at=[2]", "active.batch_size=2", "eval.batch_size=2"])
    seen = []
    real = Trainer.step

    def step(self, *a, **k):
        out = real(self, *a, **k)
        seen.append((self.iteration, [g["lr"] for g in self.optimizer.param_groups]))
        return out

    monkeypatch.setattr(Trainer, "step", step)
    metrics = Trainer(cfg, progress=False).run()
    assert [it for it, _ in seen] == [0, 1, 2, 3] and metrics["iterations"] == 4
    base, mult = cfg.train.lr, cfg.train.head_lr_mult
    for it, (backbone, head) in seen:
        expected = base * (1 - it / 10) ** 0.9
        assert backbone == pytest.approx(expected, rel=1e-12) and head == pytest.approx(mult * expected, rel=1e-12)
    assert seen[-1][1][0] > base * 0.7  # stopped early: the LR never decayed to 0


# ------------------------------------------------------------------------------------------ balanced sampling
def test_class_weights_are_one_over_log_of_the_frequency():
    np.testing.assert_allclose(class_weights(np.zeros(4)), [0.25] * 4)  # a sub-epoch starts uniform
    w = class_weights(np.array([3.0, 1.0, 0.0]))
    raw = np.array([1 / math.log(1.01 + 0.75), 1 / math.log(1.01 + 0.25), 1 / math.log(1.01)])
    np.testing.assert_allclose(w, raw / raw.sum(), rtol=1e-12)
    np.testing.assert_allclose(class_weights(np.array([3.0, 1.0, 0.0]), np.array([True, True, False])),
                               np.append(raw[:2] / raw[:2].sum(), 0.0), rtol=1e-12)  # a class no image has


def _presence(n=300, seed=0):
    """Images x 6 classes; class 0 everywhere, class 5 in ~2% of the images."""
    rng = np.random.default_rng(seed)
    p = rng.random((n, 6)) < np.array([1.0, 0.7, 0.5, 0.3, 0.1, 0.02])
    p[:, 0] = True
    p[0, 5] = True
    return p


def test_balanced_sampler_draws_classes_with_its_weights():
    presence = _presence()
    trace = []
    order = build_balanced_list(presence, total=2 * 3000, rng=np.random.default_rng(1), trace=trace)
    assert len(order) == len(trace) == 3 * 3000  # int(6000 / 3000) + 1 sub-epochs
    weights = np.stack([w for w, _ in trace])
    chosen = np.bincount([c for _, c in trace], minlength=6)
    expected = weights.sum(0)
    sd = np.sqrt((weights * (1 - weights)).sum(0))
    assert np.all(np.abs(chosen - expected) <= 4 * sd), (chosen, expected, sd)
    # every drawn image contains the class it was drawn for
    assert all(presence[i, c] for i, (_, c) in zip(order, trace))
    # the rare class: in 2% of the images, in far more of the drawn ones
    drawn = presence[order].mean(0)
    assert presence[:, 5].mean() < 0.05 and drawn[5] > 0.10
    # weights follow the counts of the current sub-epoch: a sub-epoch starts uniform
    np.testing.assert_allclose(weights[0], np.full(6, 1 / 6))
    np.testing.assert_allclose(weights[3000], np.full(6, 1 / 6))


def test_balanced_sampler_reshuffles_a_used_up_class_list_as_the_authors():
    presence = np.zeros((3, 2), bool)
    presence[:, 0] = True   # class 0 in all three images, class 1 in none (weight 0)
    trace = []
    order = build_balanced_list(presence, total=1, rng=np.random.default_rng(5), sub_epoch=4, trace=trace)
    assert [c for _, c in trace] == [0, 0, 0, 0] and list(order[:3]) == [0, 1, 2]
    rng = np.random.default_rng(5)
    for _ in range(4):
        rng.random()
    lst = np.array([0, 1, 2])
    rng.shuffle(lst)
    assert order[3] == lst[3 % 2]  # position len % (len - 1): the first file of the reshuffled list is skipped


def test_balanced_sampler_resumes_and_shards():
    presence = _presence(40)
    full = BalancedBatchSampler(presence, 4, total=20, seed=3, sub_epoch=30)
    it = iter(full)
    first = [next(it) for _ in range(5)]
    state = full.state_dict()
    rest = [next(it) for _ in range(12)]  # crosses into a second list
    again = BalancedBatchSampler(presence, 4, total=20, seed=3, sub_epoch=30)
    again.load_state_dict(state)
    it2 = iter(again)
    assert [next(it2) for _ in range(12)] == rest
    r0 = iter(BalancedBatchSampler(presence, 4, 20, 3, rank=0, world_size=2, sub_epoch=30))
    r1 = iter(BalancedBatchSampler(presence, 4, 20, 3, rank=1, world_size=2, sub_epoch=30))
    assert [next(r0) + next(r1) for _ in range(5)] == first


def test_balanced_source_stream_resumes_through_the_data_loader():
    from ripu_kernels.driver.data.sampling import BatchStream
    from ripu_kernels.driver.data.synthetic import SyntheticStreets

    ds = SyntheticStreets("source", "train", 12, height=16, width=24)
    presence = np.stack([np.bincount(ds.load_label(i).ravel(), minlength=ds.num_classes) > 0 for i in range(12)])

    def stream():
        return BatchStream(ds, 3, 0, sampler=BalancedBatchSampler(presence, 3, total=8, seed=4, sub_epoch=10))

    a = stream()
    ids = [next(a)["id"] for _ in range(3)]
    state = a.state_dict()
    rest = [next(a)["id"] for _ in range(5)]
    b = stream()
    b.load_state_dict(state)
    assert [next(b)["id"] for _ in range(5)] == rest and len(ids[0]) == 3


# -------------------------------------------------------------------------------------------------- flip TTA
def test_flip_tta_is_the_mean_of_the_two_softmaxes():
    from ripu_kernels.driver.evaluate import evaluate, predict

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=4, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(5, 5, (1, 3), padding=(0, 1))).eval()
    x = torch.randn(2, 3, 16, 24)
    size = (20, 30)
    up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=True)  # noqa: E731
    with torch.no_grad():
        plain = torch.softmax(up(model(x)), dim=1)
        mirrored = torch.softmax(up(model(x.flip(-1))), dim=1).flip(-1)
    got = predict(model, x, size, flip=True)
    torch.testing.assert_close(got, (plain + mirrored) / 2, rtol=0, atol=1e-7)
    assert not torch.allclose(got, plain, atol=1e-4)  # the model is not mirror-symmetric: flip changes the result
    torch.testing.assert_close(predict(model, x, size, flip=False), plain, rtol=0, atol=1e-7)

    class Val(torch.utils.data.Dataset):
        name = "val"

        def __len__(self):
            return 2

        def __getitem__(self, i):
            gen = torch.Generator().manual_seed(i)
            return {"image": x[i], "index": i, "id": str(i), "label": torch.randint(0, 5, size, generator=gen)}

    labels = torch.stack([Val()[i]["label"] for i in range(2)])
    pred = ((plain + mirrored) / 2).argmax(1)
    inter = [int(((pred == c) & (labels == c)).sum()) for c in range(5)]
    union = [int(((pred == c) | (labels == c)).sum()) for c in range(5)]
    res = evaluate(model, Val(), 5, batch_size=2, flip=True)
    assert res["iou"] == pytest.approx([100 * i / u for i, u in zip(inter, union)])


# -------------------------------------------------------------------------------- DeepLab-v3+ names and shapes
def _bn(prefix: str, n: int) -> dict:
    """The four buffers of the authors' frozen BN (core/models/layers.py)."""
    return {f"{prefix}.{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")}


def authors_v3plus_classifier(classes: int) -> dict:
    """Names and shapes of the authors' DepthwiseSeparableASPP(inplanes=2048, dilations [1, 6, 12, 18], 512
    channels, 48-channel shortcut from 256, decoder 560 -> 512 -> 512 -> classes), read from their
    core/models/classifier.py, with FrozenBatchNorm2d (MODEL.FREEZE_BN: True)."""
    t = {"parallel_branches.0.0.weight": (512, 2048, 1, 1), **_bn("parallel_branches.0.1", 512)}
    for i in (1, 2, 3):
        t.update({f"parallel_branches.{i}.depthwise_conv.weight": (2048, 1, 3, 3),
                  **_bn(f"parallel_branches.{i}.depthwise_bn", 2048),
                  f"parallel_branches.{i}.pointwise_conv.weight": (512, 2048, 1, 1),
                  **_bn(f"parallel_branches.{i}.pointwise_bn", 512)})
    t.update({"global_branch.1.weight": (512, 2048, 1, 1), **_bn("global_branch.2", 512),
              "bottleneck.0.weight": (512, 2560, 3, 3), **_bn("bottleneck.1", 512),
              "shortcut.0.weight": (48, 256, 1, 1), **_bn("shortcut.1", 48),
              "decoder.0.depthwise_conv.weight": (560, 1, 3, 3), **_bn("decoder.0.depthwise_bn", 560),
              "decoder.0.pointwise_conv.weight": (512, 560, 1, 1), **_bn("decoder.0.pointwise_bn", 512),
              "decoder.1.depthwise_conv.weight": (512, 1, 3, 3), **_bn("decoder.1.depthwise_bn", 512),
              "decoder.1.pointwise_conv.weight": (512, 512, 1, 1), **_bn("decoder.1.pointwise_bn", 512),
              "decoder.3.weight": (classes, 512, 1, 1), "decoder.3.bias": (classes,)})
    return t


def authors_resnet101_features() -> dict:
    """The authors' feature_extractor keys: torchvision's ResNet-101 (layers 3, 4, 23, 3) inside an
    IntermediateLayerGetter named ``backbone`` (no fc), frozen BN buffers."""
    t = {"backbone.conv1.weight": (64, 3, 7, 7), **_bn("backbone.bn1", 64)}
    inplanes = 64
    for layer, (blocks, planes) in enumerate(zip((3, 4, 23, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = f"backbone.layer{layer}.{b}"
            t.update({f"{p}.conv1.weight": (planes, inplanes, 1, 1), **_bn(f"{p}.bn1", planes),
                      f"{p}.conv2.weight": (planes, planes, 3, 3), **_bn(f"{p}.bn2", planes),
                      f"{p}.conv3.weight": (4 * planes, planes, 1, 1), **_bn(f"{p}.bn3", 4 * planes)})
            if b == 0:
                t.update({f"{p}.downsample.0.weight": (4 * planes, inplanes, 1, 1),
                          **_bn(f"{p}.downsample.1", 4 * planes)})
            inplanes = 4 * planes
    return t


def _shapes(module, prefix=""):
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def v3plus():
    cfg = load_config("gtav_cityscapes_ra_5_v3plus", ["model.pretrained=none"])
    return build_model(cfg.model, 19)


def test_deeplabv3plus_has_the_authors_names_and_shapes(v3plus):
    assert _shapes(v3plus.head) == authors_v3plus_classifier(19)
    assert _shapes(v3plus.backbone, "backbone.") == authors_resnet101_features()
    assert [b.depthwise_conv.dilation for b in v3plus.head.parallel_branches[1:]] == [(6, 6), (12, 12), (18, 18)]
    assert isinstance(v3plus.head.decoder[2], torch.nn.Dropout2d) and v3plus.head.decoder[2].p == 0.1
    # frozen BN in the head, at the identity (weight 1, bias 0, mean 0, var 1, no eps as the authors')
    bns = [m for m in v3plus.head.modules() if type(m).__name__ == "FrozenBatchNorm2d"]
    assert len(bns) == 14 and all(m.eps == 0.0 for m in bns)
    x = torch.randn(1, 512, 3, 5)
    torch.testing.assert_close(bns[0](x), x, rtol=0, atol=0)
    assert not any(p.requires_grad for m in bns for p in m.parameters())


def test_deeplabv2_has_the_authors_names_and_shapes():
    model = build_model(ModelConfig(backbone="resnet101", pretrained="none"), 16)
    assert _shapes(model.head) == {f"conv2d_list.{i}.{k}": ((16, 2048, 3, 3) if k == "weight" else (16,))
                                   for i in range(4) for k in ("weight", "bias")}
    assert _shapes(model.backbone, "backbone.") == authors_resnet101_features()


def test_deeplabv3plus_forward_at_a_quarter_of_the_input():
    model = build_model(ModelConfig(name="deeplabv3plus", backbone="small", width=8, aspp_dilations=[1, 2, 3],
                                    head_channels=16), 5).eval()
    assert model(torch.randn(2, 3, 32, 48)).shape == (2, 5, 8, 12)


# ----------------------------------------------------------------------------- budgets at the original size
def test_budgets_at_1024x2048():
    assert Budget("ra", 1, 5, ratio=0.022).picks(1024, 2048) == 1026
    assert Budget("ra", 1, 5, ratio=0.05).picks(1024, 2048) == 2331
    assert Budget("pa", 32, 5, pixels=40).picks(1024, 2048) == 21
    assert Budget("ra", 9, 5, ratio=0.022).picks(1024, 2048) == 26  # source-free, k = 9
    assert Budget.from_config(load_config("gtav_cityscapes_ra_2.2")).picks(1024, 2048) == 1026
    assert Budget.from_config(load_config("synthia_cityscapes_ra_5_v3plus")).picks(1024, 2048) == 2331
    assert Budget.from_config(load_config("gtav_cityscapes_pa_40")).picks(1024, 2048) == 21
    # at the resized 1280x640 input the budget would be 401 regions (windows 1.6x larger in the image)
    assert Budget("ra", 1, 5, ratio=0.022).picks(640, 1280) == 401


@pytest.fixture(scope="module")
def full_res_trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("fullres")
    gtav = make_gtav(root / "gtav", n=2, h=36, w=64)
    city = root / "cityscapes"
    make_cityscapes(city, "train", h=1024, w=2048)
    make_cityscapes(city, "val", cities=("frankfurt",), h=64, w=128)
    return gtav, city


@pytest.mark.parametrize("ratio,per_round", [(0.022, 1026), (0.05, 2331)])
def test_ra_rounds_select_on_the_full_resolution_labels(full_res_trees, tmp_path, monkeypatch, ratio, per_round):
    import json

    import ripu_kernels as rk
    from ripu_kernels.driver.engine.trainer import Trainer

    gtav, city = full_res_trees
    seen = []
    real = rk.region_scores

    def scores(logits, *a, **k):
        seen.append((tuple(logits.shape[-2:]), k.get("size")))
        return real(logits, *a, **k)

    monkeypatch.setattr(rk, "region_scores", scores)
    cfg = load_config("gtav_cityscapes_ra_2.2", [
        f"out_dir={tmp_path / 'run'}", f"data.source_root={gtav}", f"data.target_root={city}",
        "data.source_size=[64, 36]", "data.target_size=[64, 32]", "data.num_workers=0",
        "data.balanced_sampling=false", "model.backbone=small", "model.pretrained=none", "model.width=8",
        "threads=1", "train.iters=6", "train.max_iter=10", f"active.ratio={ratio}",
        "active.rounds_at=[1, 2, 3, 4, 5]", "device=cpu"])
    trainer = Trainer(cfg, progress=False)
    trainer.run()
    # logits at 1/8 of the 64x32 input, resized to the input, then scored at the 1024x2048 labels
    assert seen and all(shape == (32, 64) and size == (1024, 2048) for shape, size in seen)
    ledger = json.loads((tmp_path / "run" / "state" / "ledger.json").read_text())
    target = trainer.target
    for image_id, entry in ledger["images"].items():
        assert (entry["height"], entry["width"]) == (1024, 2048)
        assert [entry["rounds"][str(r)]["budget"] for r in range(5)] == [per_round] * 5
        assert [entry["rounds"][str(r)]["regions"] for r in range(5)] == [per_round] * 5
        pixels = sum(entry["rounds"][str(r)]["pixels"] for r in range(5))
        assert 5 * per_round * 4 <= pixels <= 5 * per_round * 9  # 3x3 windows, clipped at the border
        stored = np.asarray(Image.open(tmp_path / "run" / "state" / "labels" / f"{image_id}.png"))
        assert stored.shape == (1024, 2048) and stored.dtype == np.uint8
        truth = target.load_label(target.index_of(image_id))
        shown = stored != 255
        assert truth.shape == (1024, 2048) and (stored[shown] == truth[shown]).all() and 0 < shown.sum() <= pixels
    # training reads the stored masks resized to the 64x32 input with PIL's nearest neighbour
    batch = {"image": torch.zeros(2, 3, 32, 64), "id": target.ids, "index": torch.tensor([0, 1])}
    got = trainer.revealed_labels(batch)
    for j, image_id in enumerate(target.ids):
        stored = Image.open(tmp_path / "run" / "state" / "labels" / f"{image_id}.png")
        np.testing.assert_array_equal(got[j].numpy(), np.asarray(stored.resize((64, 32), Image.NEAREST)))


# ------------------------------------------------------------------------------------------ SYNTHIA mIoU*
def test_synthia_reports_miou_over_16_and_13_classes():
    from ripu_kernels.driver.data.cityscapes import CLASS_NAMES_16, CLASS_NAMES_19
    from ripu_kernels.driver.evaluate import add_miou13, format_table, iou_from_confusion

    conf = torch.zeros(16, 16, dtype=torch.int64)
    for c in range(16):
        conf[c, c] = 10 + c
        conf[c, (c + 1) % 16] = 3 * c  # errors that differ per class
    iou, miou = iou_from_confusion(conf)
    res = add_miou13({"miou": 100 * miou, "iou": [100 * v for v in iou]}, CLASS_NAMES_16)
    kept = [i for i, n in enumerate(CLASS_NAMES_16) if n not in ("wall", "fence", "pole")]
    assert len(kept) == 13 and [CLASS_NAMES_16[i] for i in (3, 4, 5)] == ["wall", "fence", "pole"]
    assert res["miou_13"] == pytest.approx(sum(100 * iou[i] for i in kept) / 13)
    assert res["miou"] == pytest.approx(sum(100 * v for v in iou) / 16) and res["miou"] != res["miou_13"]
    table = format_table(res, CLASS_NAMES_16)
    assert "mIoU (16 classes)" in table and f"mIoU* (13 classes)  {res['miou_13']:6.2f}" in table
    assert "miou_13" not in add_miou13({"miou": 0.0, "iou": [0.0] * 19}, CLASS_NAMES_19)


def test_mask_store_keeps_a_bounded_number_of_full_resolution_masks(tmp_path, monkeypatch):
    from ripu_kernels.driver.active import store as store_mod

    monkeypatch.setattr(store_mod, "CACHE_IMAGES", 3)
    store = store_mod.MaskStore(tmp_path)
    shape = (64, 128)
    for i in range(8):
        sel = np.zeros(shape, bool)
        sel[i, :5] = True
        store.update(f"img{i}", sel, np.full(shape, i, np.uint8), sel)
    assert len(store._labels) == 3 and len(store._active) == 3
    for i in range(8):  # evicted ones come back from their files
        lab = store.labels(f"img{i}", shape)
        assert (lab[i, :5] == i).all() and (lab != 255).sum() == 5 and store.active(f"img{i}", shape).sum() == 5
