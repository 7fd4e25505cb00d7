"""The Triton score kernels on the paths a small map does not reach by default, and their exactness guarantees.

Runs under Triton's interpreter on CPU tensors (TRITON_INTERPRET=1, set by tests/conftest.py) or compiled on a GPU.
The launch plan is module state of ``ripu_kernels.triton._scores`` (tile width, rows per program, words per
launch); the tests shrink it so that 20 x 40 maps exercise several column tiles, row bands and launches, and
windows wider than the tile.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ripu_kernels as rk
from ripu_kernels import triton as tbackend

from .test_triton_backend import DEVICE, TOL, _check_scores, _logits, assert_close

_WHY = tbackend.unavailable_reason(DEVICE)
pytestmark = [
    pytest.mark.skipif(_WHY is not None, reason=f"Triton backend unavailable: {_WHY}"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]


def _scores_module():
    from ripu_kernels.triton import _scores

    return _scores


def _block_logits(shape, block=4, seed=0, heavy_class=None):
    """Logits whose argmax is constant on block x block squares (so many windows are pure), with noise below."""
    b, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, c, (b, -(-h // block), -(-w // block)), generator=g)
    if heavy_class is not None:
        cls[:, ::2, ::2] = heavy_class
    cls = cls.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w]
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 0.3
    x += 4.0 * F.one_hot(cls, c).permute(0, 3, 1, 2)
    return x.to(torch.float32).to(DEVICE)


def _check_pure_windows(got, ref, what):
    """Impurity exactly 0 where the reference's is (a pure window) and positive elsewhere; score 0 there too."""
    pure = ref.impurity == 0
    assert bool(pure.any()) and bool((~pure).any()), f"{what}: the input should have pure and impure windows"
    assert torch.equal(got.impurity[pure], torch.zeros_like(got.impurity[pure])), (
        f"{what}: {int((got.impurity[pure] != 0).sum())} pure windows have a non-zero impurity, e.g. "
        f"{got.impurity[pure][got.impurity[pure] != 0][:4].tolist()}")
    assert bool((got.impurity[~pure] > 0).all()), f"{what}: an impure window has impurity <= 0"
    assert torch.equal(got.score[pure], torch.zeros_like(got.score[pure])), f"{what}: score of a pure window"


def _compare(x, k, op, pure_windows=True):
    """``op`` on the Triton backend against the reference (tolerances, NaN patterns, exact pure windows)."""
    got = getattr(rk, op)(x, k=k, backend="triton")
    ref = getattr(rk, op)(x, k=k, backend="reference")
    atol, rtol = TOL[torch.float32]
    for name in ("score", "impurity", "uncertainty"):
        assert_close(getattr(got, name), getattr(ref, name), atol, rtol, f"{op}.{name} k={k}")
    if pure_windows:
        _check_pure_windows(got, ref, f"{op} k={k}")
    return got


@pytest.mark.parametrize("op", ["region_scores", "pixel_scores"])
@pytest.mark.parametrize("k,block", [(1, 4), (2, 6)])
def test_pure_windows_are_exactly_zero(op, k, block):
    """Pure windows score exactly 0 by construction (their centre class count equals N), not up to rounding:
    selection relies on it. Class 6 of 9 sits in the top 4 bits of an int32 count word at k = 1, so its packed
    counts wrap around int32 (tested on the way)."""
    _compare(_block_logits((1, 9, 20, 23), block=block, heavy_class=6), k, op)


def test_several_tiles_and_row_bands(monkeypatch):
    """16-column tiles and 4-row bands on a 12 x 40 map: several programs along each axis."""
    S = _scores_module()
    monkeypatch.setattr(S, "_TW_MAX", 16)
    monkeypatch.setattr(S, "_TH_MIN", 4)
    plan = S.window_plan(5, 12, 40, 2)
    assert plan["tw"] == 16 and not plan["wide"] and plan["th"] < 12
    x = _block_logits((1, 5, 12, 40), block=6, seed=3)
    for op in ("region_scores", "pixel_scores"):
        _compare(x, 2, op)


def test_window_wider_than_the_tile(monkeypatch):
    """41 columns > the 16-column tile: the window just left of a tile is the sum of the tile's leaving columns
    plus a running remainder over two more chunks of columns, clipped at the image's left edge."""
    S = _scores_module()
    monkeypatch.setattr(S, "_TW_MAX", 16)
    k = 20
    assert S.window_plan(5, 6, 48, k)["wide"]
    x = _block_logits((1, 5, 6, 48), block=3, seed=4)
    x[0, 1, 3, 20] = float("nan")
    for op in ("region_scores", "pixel_scores"):
        _compare(x, k, op, pure_windows=False)


def test_classes_over_several_launches(monkeypatch):
    """One count word per launch (k = 3: three words of 4 counts for 10 slots): the first launch writes the
    partial sums (and the entropy window sums), the middle one adds its own, the last one finishes; the result
    is the single-launch result."""
    S = _scores_module()
    k = 3
    x = _block_logits((1, 9, 10, 14), block=3, seed=5, heavy_class=6)
    x[0, 2, 5, 6] = float("nan")
    one = {op: getattr(rk, op)(x, k=k, backend="triton") for op in ("region_scores", "pixel_scores")}
    monkeypatch.setattr(S, "_GROUP_WORDS", 1)
    assert len(S.window_plan(9, 10, 14, k)["groups"]) == 3
    for op in ("region_scores", "pixel_scores"):
        got = _compare(x, k, op, pure_windows=False)
        for name in ("score", "impurity", "uncertainty"):
            assert_close(getattr(got, name), getattr(one[op], name), 0.0, 0.0, f"{op}.{name}, one word per launch")


def test_k_is_clipped_to_the_image():
    """A window reaching past the image on both sides is the image: any k >= max(H, W) - 1 gives the same plan
    (kh = H - 1, kw = W - 1, so nothing grows with k) and the same results, equal to the reference."""
    S = _scores_module()
    assert S.window_plan(19, 6, 9, 10 ** 6) == S.window_plan(19, 6, 9, 8)
    plan = S.window_plan(19, 6, 9, 10 ** 6)
    assert (plan["kh"], plan["kw"]) == (5, 8)
    x = _logits((1, 4, 6, 9), seed=7)
    big = _compare(x, 10 ** 6, "region_scores", pure_windows=False)
    edge = rk.region_scores(x, k=9, backend="triton")
    for name in ("score", "impurity", "uncertainty"):
        assert torch.equal(getattr(big, name), getattr(edge, name)), f"region_scores.{name}: k=10**6 vs k=9"


@pytest.mark.parametrize("size,align_corners", [((11, 7), True), ((6, 13), False)])
def test_resize_keeps_nan_on_the_unresized_axis(size, align_corners):
    """size= changing one axis only: that axis is copied (as ATen's CPU kernel does), so a non-finite logit does
    not reach its zero-weight neighbour there (0 * inf would be NaN); NaN patterns equal the reference's."""
    x = _logits((1, 3, 6, 7), seed=2)
    x[0, 1, 2, 3] = float("inf")
    x[0, 0, 4, 1] = float("-inf")
    x[0, 2, 0, 6] = float("nan")
    _check_scores(x, 1, size, align_corners, "region_scores")
    _check_scores(x, 0, size, align_corners, "pixel_scores")
    e = rk.pixel_scores(x, k=0, size=size, align_corners=align_corners, backend="triton").uncertainty
    ref = rk.pixel_scores(x, k=0, size=size, align_corners=align_corners, backend="reference").uncertainty
    assert torch.equal(torch.isnan(e), torch.isnan(ref))


def test_many_classes_need_int32_labels():
    """C >= 255 classes: the slot map is int32 (uint8 below) and the counts take several words."""
    S = _scores_module()
    x = _logits((1, 260, 5, 6), seed=4, scale=6.0)
    e, y = S._pixel_pass(x, None, True, with_label=True)
    assert y.dtype == torch.int32
    assert torch.equal(y.long() - 1, x.argmax(1))
    _check_scores(x, 1, None, True, "pixel_scores")
    e_small, y_small = S._pixel_pass(_logits((1, 4, 5, 6)), None, True, with_label=True)
    assert y_small.dtype == torch.uint8
