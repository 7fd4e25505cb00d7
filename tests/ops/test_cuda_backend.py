"""CUDA-specific checks of backend ``cuda`` (the shared per-op parity suites already run it when CUDA is available).

GPU tests skip cleanly without a CUDA device or without CUDA kernels in ``ripu_kernels._C``. The first tests run
everywhere: they check a NumPy model of the selection algorithm of ``csrc/cuda/select.cu`` (key transform,
histogram thresholds, chunked warp-ballot suppression) against the reference, since that algorithm's exactness
argument does not depend on the hardware.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ripu_kernels as rk
from ripu_kernels import _dispatch
from ripu_kernels.ops import max_picks

from . import _oracle
from ._loss_checks import check_loss_parity
from ._score_checks import check_parity, with_nonfinite
from ._tol import assert_close_verbose, tol
from .conftest import LAYOUTS, layout, random_logits

CUDA_REASON = _dispatch.unavailable_reason("cuda", torch.device("cuda"))


def needs_cuda(test):
    """A GPU test (``pytest -m gpu``), skipped without the cuda backend."""
    skip = pytest.mark.skipif(CUDA_REASON is not None, reason=f"backend cuda unavailable: {CUDA_REASON}")
    return pytest.mark.gpu(skip(test))


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def assert_same_selection(got, expected, where=""):
    for name, a, e in zip(("centers", "counts", "active", "selected"), got, expected):
        assert a.dtype == e.dtype, f"{where}{name}: dtype {a.dtype} != {e.dtype}"
        a, e = a.cpu(), e.cpu()
        if not torch.equal(a, e):
            diff = (a != e).nonzero()[:8].tolist()
            raise AssertionError(f"{where}{name} differs at {int((a != e).sum())} places, first at {diff}")


# ------------------------------------------------------------------ model of the GPU selection (runs everywhere)
def _desc_key32(s: np.ndarray) -> np.ndarray:
    """select.cu desc_key(float): ascending key order == descending score order, -0.0 == +0.0."""
    u = s.astype(np.float32).view(np.uint32).copy()
    u[s == 0] = 0
    ordered = np.where(u & np.uint32(0x80000000), ~u, u | np.uint32(0x80000000))
    return (~ordered).astype(np.uint32)


def _model_select(score, n, n_max, radius, mask_radius, active, chunk=256, warp=32):
    """Step-by-step model of select.cu on float32 scores (thresholds, stable sort, chunked ballot scan)."""
    bsz, h, w = score.shape
    centers = np.full((bsz, n_max, 2), -1, dtype=np.int64)
    counts = np.zeros(bsz, dtype=np.int64)
    act = np.zeros((bsz, h, w), dtype=bool) if active is None else active.numpy().copy()
    sel = np.zeros((bsz, h, w), dtype=bool)
    m, r = mask_radius, radius
    win = min(2 * m + 1, h) * min(2 * m + 1, w)
    for b in range(bsz):
        s = score[b].numpy().reshape(-1).astype(np.float32)
        avail = ~np.isnan(s) & (s != -np.inf) & ~act[b].reshape(-1)
        keys = _desc_key32(s)
        want = min(max(int(n[b]), 0), n_max) * win
        total = int(avail.sum())
        if want == 0:
            limit = 0
        elif want >= total:
            limit = 1 << 32
        else:  # two histogram levels over the top 24 key bits
            h1 = np.bincount(keys[avail] >> 20, minlength=4096)
            cum = np.cumsum(h1)
            t1 = int(np.searchsorted(cum, want))  # first bin with cum >= want
            below1 = int(cum[t1 - 1]) if t1 else 0
            in1 = avail & ((keys >> 20) == t1)
            h2 = np.bincount((keys[in1] >> 8) & 0xFFF, minlength=4096)
            t2 = int(np.searchsorted(below1 + np.cumsum(h2), want))
            limit = ((t1 << 20) | (t2 << 8) | 0xFF) + 1
        cand = np.nonzero(avail & (keys.astype(np.uint64) < limit))[0]  # stable compaction: index order
        order = cand[np.argsort(keys[cand], kind="stable")]
        a = act[b].reshape(-1)
        c = 0
        for base in range(0, len(order), chunk):
            if c >= n[b]:
                break
            block = order[base:base + chunk]
            survivors = block[~a[block]]
            for q0 in range(0, len(survivors), warp):
                if c >= n[b]:
                    break
                lanes = survivors[q0:q0 + warp]
                live = list(~a[lanes])
                picks = []
                while any(live) and c + len(picks) < n[b]:
                    p = live.index(True)
                    picks.append(p)
                    pi, pj = divmod(int(lanes[p]), w)
                    for q, f in enumerate(lanes):
                        qi, qj = divmod(int(f), w)
                        if abs(qi - pi) <= m and abs(qj - pj) <= m:
                            live[q] = False
                for p in picks:
                    pi, pj = divmod(int(lanes[p]), w)
                    centers[b, c] = (pi, pj)
                    c += 1
                    act[b, max(pi - m, 0):pi + m + 1, max(pj - m, 0):pj + m + 1] = True
                    sel[b, max(pi - r, 0):pi + r + 1, max(pj - r, 0):pj + r + 1] = True
        counts[b] = c
    return (torch.from_numpy(centers), torch.from_numpy(counts), torch.from_numpy(act), torch.from_numpy(sel))


@pytest.mark.parametrize("seed", range(40))
def test_selection_model_matches_naive_on_ties_and_nonfinite(seed):
    g = torch.Generator().manual_seed(seed)
    b, h, w = 2, int(torch.randint(1, 9, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g))
    values = torch.tensor([0.0, -0.0, 0.5, 1.0, 2.0, float("nan"), float("-inf"), float("inf")])
    score = values[torch.randint(0, len(values), (b, h, w), generator=g)]
    radius, mask_radius = int(torch.randint(0, 3, (1,), generator=g)), int(torch.randint(0, 4, (1,), generator=g))
    n = [int(v) for v in torch.randint(0, h * w + 1, (b,), generator=g)]
    active = torch.rand((b, h, w), generator=g) < 0.3 if seed % 2 else None
    got = _model_select(score, n, min(max(n), max_picks(h, w, mask_radius)), radius, mask_radius, active)
    assert_same_selection(got, _oracle.naive_select(score, torch.tensor(n), radius, mask_radius, active))


@pytest.mark.parametrize("mask_radius,n,quantise", [(2, 300, False), (2, 300, True), (0, 900, True), (5, 40, False)])
def test_selection_model_matches_reference_with_thresholds(mask_radius, n, quantise):
    """Maps large enough that the candidate threshold cuts (M = n * window < available), several chunks."""
    g = torch.Generator().manual_seed(7)
    score = rk.region_scores(random_logits((2, 5, 96, 128), generator=g), k=1, backend="reference").score
    if quantise:  # many exact ties across chunk and threshold boundaries
        score = (score * 8).round() / 8
    active = torch.rand(score.shape, generator=g) < 0.1
    nt = torch.tensor([n, n // 2])
    expected = rk.select_regions(score, nt, radius=1, mask_radius=mask_radius, active=active, backend="reference")
    assert_same_selection(_model_select(score, nt.tolist(), n, 1, mask_radius, active), expected)


# ------------------------------------------------------- model of the GPU window statistics (runs everywhere)
def _model_window_stats(e, label, C, k, pixel_mode, tile_w, band):
    """Step-by-step model of scores.cu window_kernel (csrc/cuda/window_tile.h; tests/cpp/test_cuda_host.cpp runs
    the kernel's own helpers): labels with C marking a non-finite pixel; per tile a k-column halo; per column the
    counts of rows [i - k, i + k] slid down the band (add the entering row, remove the leaving one); along the row
    exclusive prefix sums q, so that a window's count is q[hi] - q[lo]. Returns the window class counts (C + 1 per
    pixel, the last the non-finite count), entropy sums, and the score maps."""
    bsz, h, w = e.shape
    kh, kw = min(k, h - 1), min(k, w - 1)
    lab = np.where(np.isnan(e), C, label)
    counts = np.full((bsz, h, w, C + 1), -1, np.int64)
    sums = np.full((bsz, h, w), np.nan)
    for b in range(bsz):
        for i0 in range(0, h, band):
            for j0 in range(0, w, tile_w):
                i1, j1 = min(i0 + band, h), min(j0 + tile_w, w)
                c_lo, c_hi = max(j0 - kw, 0), min(j0 + tile_w + kw, w)
                cols = np.arange(c_hi - c_lo)
                cnt, colsum = np.zeros((C + 1, c_hi - c_lo), np.int64), np.zeros(c_hi - c_lo)
                for i in range(i0, i1):
                    enter = range(max(i - kh, 0), min(i + kh, h - 1) + 1) if i == i0 else range(i + kh, min(i + kh, h - 1) + 1)
                    leave = [i - kh - 1] if i != i0 and i - kh - 1 >= 0 else []
                    for rows, sign in ((enter, 1), (leave, -1)):
                        for r in rows:
                            np.add.at(cnt, (lab[b, r, c_lo:c_hi], cols), sign)
                            colsum += sign * np.nan_to_num(e[b, r, c_lo:c_hi], nan=0.0)
                    q = np.concatenate([np.zeros((C + 1, 1), np.int64), np.cumsum(cnt, axis=1)], axis=1)
                    qs = np.concatenate([[0.0], np.cumsum(colsum)])
                    j = np.arange(j0, j1)
                    lo, hi = np.maximum(j - kw, 0) - c_lo, np.minimum(j + kw + 1, w) - c_lo
                    counts[b, i, j0:j1] = (q[:, hi] - q[:, lo]).T
                    sums[b, i, j0:j1] = qs[hi] - qs[lo]
    n = ((np.minimum(np.arange(h) + kh + 1, h) - np.maximum(np.arange(h) - kh, 0))[:, None]
         * (np.minimum(np.arange(w) + kw + 1, w) - np.maximum(np.arange(w) - kw, 0))[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        xlogx = np.where(counts[..., :C] > 0, counts[..., :C] * np.log(np.maximum(counts[..., :C], 1)), 0.0)
        impurity = np.maximum((n * np.log(n) - xlogx.sum(-1)) / n / (np.log(C) if C > 1 else np.inf), 0.0)
    bad = counts[..., C] > 0
    impurity[bad] = np.nan
    unc = np.where(bad, np.nan, sums / n) if not pixel_mode else e
    return counts, sums, (impurity * unc, impurity, unc)


def _brute_window_counts(e, label, C, k):
    """Window class counts (C + 1, the last non-finite) and finite entropy sums by integral images."""
    lab = torch.from_numpy(np.where(np.isnan(e), C, label))
    onehot = torch.nn.functional.one_hot(lab, C + 1).permute(0, 3, 1, 2).to(torch.int64)  # (B, C+1, H, W)
    from ripu_kernels.reference import _impl

    counts = torch.stack([_impl._box_sum(onehot[:, c], k) for c in range(C + 1)], dim=-1).numpy()
    sums = _impl._box_sum(torch.from_numpy(np.nan_to_num(e, nan=0.0)), k).numpy()
    return counts, sums


@pytest.mark.parametrize("op", ["region_scores", "pixel_scores"])
@pytest.mark.parametrize("shape,k,tile_w,band", [
    ((2, 4, 13, 27), 0, 8, 3), ((2, 4, 13, 27), 1, 8, 5), ((2, 4, 13, 27), 2, 16, 4), ((2, 4, 13, 27), 6, 7, 7),
    ((2, 4, 13, 27), 30, 8, 5),            # k beyond the image
    ((1, 1, 9, 11), 2, 4, 3),              # one class
    ((1, 150, 12, 21), 3, 5, 4),           # many classes
    ((1, 5, 1, 19), 3, 4, 2), ((1, 5, 17, 1), 3, 4, 2),  # one row, one column
])
def test_window_model_matches_reference(op, shape, k, tile_w, band):
    """Small tiles and bands so that every halo and band start is crossed; class counts, non-finite counts and
    entropy sums equal brute-force window sums exactly (sums to rounding), and the scores equal the reference."""
    from ripu_kernels.reference import _impl

    g = torch.Generator().manual_seed(k + shape[1])
    x = with_nonfinite(random_logits(shape, torch.float64, g)) if shape[2] > 2 and shape[3] > 3 else \
        random_logits(shape, torch.float64, g)
    e = _impl._entropy(x).numpy()
    label = x.argmax(dim=1).numpy()
    counts, sums, got = _model_window_stats(e, label, shape[1], k, op == "pixel_scores", tile_w, band)
    want_counts, want_sums = _brute_window_counts(e, label, shape[1], k)
    assert np.array_equal(counts, want_counts), "window class / non-finite counts differ from brute force"
    np.testing.assert_allclose(sums, want_sums, rtol=1e-12, atol=1e-12)
    ref = getattr(_impl, op)(x, k, None, True)
    for name, a, r in zip(("score", "impurity", "uncertainty"), got, ref):
        assert_close_verbose(torch.from_numpy(np.asarray(a, dtype=np.float64)), r, name=f"model {op}.{name}",
                             **tol(torch.float64))


# ---------------------------------------------------- model of the GPU LCR backward (runs everywhere)
_OFFS = {8: [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)], 4: [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]}


def _model_lcr_backward(x, labels, kind, neighbors, ignore_index, grad=1.0):
    """Step-by-step model of losses.cu lcr_backward: boundary flags; softmax statistics only at touched pixels (v + o a
    boundary pixel); per pixel v: zeros when untouched, else g = [v boundary] dg/dp + sum over boundary u within one
    step of v of mult(u -> v) / K dg/dmean(u), then the softmax Jacobian scaled by grad / count."""
    from ripu_kernels.reference._impl import boundary_mask

    x = x.double().numpy()
    bsz, c, h, w = x.shape
    offs = _OFFS[neighbors]
    K = len(offs)
    flags = boundary_mask(labels, neighbors, ignore_index).numpy()
    count = max(int(flags.sum()), 1)

    def inside(i, j):
        return 0 <= i < h and 0 <= j < w

    def touched(b, i, j):
        return any(inside(i + di, j + dj) and flags[b, i + di, j + dj] for di, dj in offs)

    m = np.full((bsz, h, w), np.nan)
    s = np.full((bsz, h, w), np.nan)  # statistics only where touched: reading elsewhere would give NaN here
    for b in range(bsz):
        for i in range(h):
            for j in range(w):
                if touched(b, i, j):
                    m[b, i, j] = x[b, :, i, j].max()
                    s[b, i, j] = np.exp(x[b, :, i, j] - m[b, i, j]).sum()

    def prob(b, i, j):
        return np.exp(x[b, :, i, j] - m[b, i, j]) / s[b, i, j]

    def mean(b, i, j):
        return sum(prob(b, min(max(i + di, 0), h - 1), min(max(j + dj, 0), w - 1)) for di, dj in offs) / K

    def term_grad(p, mu):
        if kind == "l1":
            sg = np.sign(p - mu)
            return sg, -sg
        den = mu + 1e-6
        r = p / den
        inner = r + 1e-6
        return np.log(inner) + p / (inner * den), -(p * r) / (inner * den)

    dx = np.zeros_like(x)
    for b in range(bsz):
        for i in range(h):
            for j in range(w):
                if not touched(b, i, j):
                    continue
                g = np.zeros(c)
                if flags[b, i, j]:
                    g += term_grad(prob(b, i, j), mean(b, i, j))[0]
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        a, c2 = i + di, j + dj
                        if not inside(a, c2) or not flags[b, a, c2]:
                            continue
                        mult = sum(min(max(a + oi, 0), h - 1) == i and min(max(c2 + oj, 0), w - 1) == j
                                   for oi, oj in offs)
                        if mult:
                            g += mult / K * term_grad(prob(b, a, c2), mean(b, a, c2))[1]
                p = prob(b, i, j)
                dx[b, :, i, j] = grad / count * p * (g - (p * g).sum())
    return torch.from_numpy(dx)


@pytest.mark.parametrize("kind,neighbors", [("l1", 8), ("kl", 8), ("l1", 4), ("kl", 4)])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 1, 5), (1, 3, 4, 1)])
def test_lcr_backward_model_matches_autograd(kind, neighbors, shape, gen):
    """The sparse gather of the CUDA LCR backward equals autograd through the reference, and leaves a non-finite
    logit that the loss never reads with a zero gradient (as the reference does)."""
    b, c, h, w = shape
    x = random_logits(shape, torch.float64, gen, scale=1.0)
    labels = torch.randint(0, 3, (b, h, w), generator=gen)
    labels[0, 0, : max(w // 2, 1)] = 255
    x_ref = x.clone().requires_grad_()
    rk.local_consistency_loss(x_ref, labels, kind=kind, neighbors=neighbors, backend="reference").backward()
    got = _model_lcr_backward(x, labels, kind, neighbors, 255)
    assert_close_verbose(got, x_ref.grad, name=f"model LCR backward {kind} {neighbors}", **tol(torch.float64, grad=True))


def test_lcr_backward_model_ignores_unread_nonfinite_logits(gen):
    x = random_logits((1, 2, 8, 8), torch.float64, gen, scale=1.0)
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 5:, 5:] = 1  # boundary pixels only near the bottom-right corner (and where the zero padding sees 1s)
    x[0, :, 0, 0] = float("nan")  # far from every boundary pixel: never read
    x_ref = x.clone().requires_grad_()
    rk.local_consistency_loss(x_ref, labels, backend="reference").backward()
    got = _model_lcr_backward(x, labels, "l1", 8, 255)
    assert torch.isfinite(got).all() and got[0, :, 0, 0].eq(0).all()
    assert_close_verbose(got, x_ref.grad, name="model LCR backward", **tol(torch.float64, grad=True))


# ----------------------------------------------------------------------------------------------- GPU tests
def _cuda(x):
    return x.to("cuda") if x is not None else None


@needs_cuda
@pytest.mark.parametrize("op", ["region_scores", "pixel_scores"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LAYOUTS)
def test_scores_parity(op, dtype, name, gen):
    x = layout(random_logits((2, 7, 37, 41), dtype, gen), name).cuda()
    for k in (0, 1, 5, 40):
        check_parity(op, "cuda", x, k)


@needs_cuda
@pytest.mark.parametrize("op", ["region_scores", "pixel_scores"])
@pytest.mark.parametrize("size,align_corners", [((53, 67), True), ((53, 67), False), ((19, 23), True),
                                                ((19, 23), False)])
def test_scores_resize_parity(op, size, align_corners, gen):
    x = random_logits((2, 5, 31, 37), generator=gen).cuda()
    check_parity(op, "cuda", x, 2, size, align_corners)
    check_parity(op, "cuda", x.double(), 2, size, align_corners)


@needs_cuda
def test_scores_wide_tiles_many_classes_and_nonfinite(gen):
    """Several column tiles (W > 128) and bands, C > 32, NaN/inf spreading, ties, k over the image size."""
    x = with_nonfinite(random_logits((2, 40, 70, 300), generator=gen, classes_tied=True)).cuda()
    for k in (1, 3, 33, 500):
        check_parity("region_scores", "cuda", x, k)
        check_parity("pixel_scores", "cuda", x, k)
    assert_close_verbose(rk.pixel_entropy(x, backend="cuda").cpu(), rk.pixel_entropy(x, backend="reference").cpu(),
                         name="pixel_entropy", **tol(torch.float32))


@needs_cuda
def test_scores_shared_memory_fallback_to_global_scratch(gen):
    """C x (128 + 2k) column counts beyond the shared-memory limit take the global-scratch path."""
    x = random_logits((1, 300, 40, 400), generator=gen).cuda()
    check_parity("region_scores", "cuda", x, 150)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_pixel_entropy_parity(dtype, gen):
    for name in LAYOUTS:
        x = layout(random_logits((2, 19, 33, 35), dtype, gen), name).cuda()
        assert_close_verbose(rk.pixel_entropy(x, backend="cuda").cpu(),
                             rk.pixel_entropy(x, backend="reference").cpu(), name=f"pixel_entropy {name}", **tol(dtype))


@needs_cuda
def test_empty_inputs():
    x = torch.empty(0, 3, 5, 6, device="cuda")
    assert rk.region_scores(x, backend="cuda").score.shape == (0, 5, 6)
    assert rk.pixel_scores(x, size=(7, 8), backend="cuda").score.shape == (0, 7, 8)
    sel = rk.select_regions(torch.empty(0, 4, 4, device="cuda"), 3, backend="cuda")
    assert sel.centers.shape == (0, 3, 2) and sel.counts.shape == (0,)
    assert float(rk.negative_learning_loss(x, backend="cuda")) == 0.0


@needs_cuda
def test_realistic_selection_equals_reference(gen):
    """RA on 2 x 19 x 256 x 512 logits: scores then one selection round, bit-exact against the reference."""
    logits = random_logits((2, 19, 256, 512), generator=gen).cuda()
    score = rk.region_scores(logits, k=1, backend="cuda").score
    n = -(-256 * 512 * 5 // (100 * 9))  # ceil(H*W*5% / 9)
    active = torch.rand(score.shape, generator=gen).cuda() < 0.05
    got = rk.select_regions(score, n, radius=1, active=active, backend="cuda")
    assert_same_selection(got, rk.select_regions(score, n, radius=1, active=active, backend="reference"))
    # PA: radius 0, mask radius k
    got = rk.select_regions(score, torch.tensor([40, 7]), radius=0, mask_radius=8, backend="cuda")
    expected = rk.select_regions(score, torch.tensor([40, 7]), radius=0, mask_radius=8, backend="reference")
    assert_same_selection(got, expected)


@needs_cuda
@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_selection_ties_nonfinite_active(seed, dtype):
    g = torch.Generator().manual_seed(seed)
    b, h, w = 3, int(torch.randint(1, 40, (1,), generator=g)), int(torch.randint(1, 40, (1,), generator=g))
    values = torch.tensor([0.0, -0.0, 0.25, 0.5, 1.0, float("nan"), float("-inf"), float("inf")])
    score = values[torch.randint(0, len(values), (b, h, w), generator=g)].to(dtype)
    radius, mask_radius = int(torch.randint(0, 3, (1,), generator=g)), int(torch.randint(0, 4, (1,), generator=g))
    n = torch.randint(0, h * w // 2 + 2, (b,), generator=g)
    active = torch.rand((b, h, w), generator=g) < 0.2
    before = active.clone()
    got = rk.select_regions(score.cuda(), n.cuda(), radius=radius, mask_radius=mask_radius, active=active.cuda(),
                            backend="cuda")
    expected = rk.select_regions(score, n, radius=radius, mask_radius=mask_radius, active=active, backend="reference")
    assert_same_selection(got, expected)
    assert torch.equal(active, before)


@needs_cuda
def test_select_regions_does_not_synchronise(gen):
    """An int n: no host synchronisation anywhere inside the ops (scores, selection, losses and their backward)."""
    logits = random_logits((2, 19, 64, 96), generator=gen).cuda().requires_grad_()
    labels = torch.randint(0, 19, (2, 64, 96), generator=gen).cuda()
    score = rk.region_scores(logits.detach(), k=1, backend="cuda").score
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sel = rk.select_regions(score, 50, radius=1, backend="cuda")
        rk.pixel_scores(logits.detach(), k=8, backend="cuda")
        loss = rk.local_consistency_loss(logits, labels, backend="cuda") + rk.negative_learning_loss(logits,
                                                                                                    backend="cuda")
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert_same_selection(sel, rk.select_regions(score, 50, radius=1, backend="reference"))


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LAYOUTS)
def test_loss_parity(dtype, name, gen):
    x = layout(random_logits((2, 6, 19, 23), dtype, gen), name).cuda()
    labels = torch.randint(0, 4, (2, 19, 23), generator=gen)
    labels[0, :3] = 255
    labels = labels.cuda()
    for kind in ("l1", "kl"):
        for neighbors in (8, 4):
            check_loss_parity(rk.local_consistency_loss, "cuda", x, labels, kind=kind, neighbors=neighbors)
    check_loss_parity(rk.negative_learning_loss, "cuda", x, threshold=0.05)


@needs_cuda
def test_losses_are_deterministic(gen):
    x = random_logits((4, 19, 128, 160), generator=gen).cuda()
    labels = torch.randint(0, 19, (4, 128, 160), generator=gen).cuda()
    a = rk.local_consistency_loss(x, labels, backend="cuda")
    b = rk.local_consistency_loss(x, labels, backend="cuda")
    assert torch.equal(a, b)
    assert torch.equal(rk.negative_learning_loss(x, backend="cuda"), rk.negative_learning_loss(x, backend="cuda"))


@needs_cuda
def test_gradcheck_float64(gen):
    x = random_logits((1, 3, 5, 6), torch.float64, gen).cuda().requires_grad_()
    labels = torch.randint(0, 3, (1, 5, 6), generator=gen).cuda()
    for kind in ("l1", "kl"):
        assert torch.autograd.gradcheck(lambda t: rk.local_consistency_loss(t, labels, kind=kind, backend="cuda"),
                                        (x,))
    assert torch.autograd.gradcheck(lambda t: rk.negative_learning_loss(t, 0.2, backend="cuda"), (x,))


@needs_cuda
def test_opcheck_on_cuda_tensors(gen):
    ops = torch.ops.ripu
    x = random_logits((2, 4, 9, 11), generator=gen).cuda()
    labels = torch.randint(0, 4, (2, 9, 11), generator=gen).cuda()
    score = rk.region_scores(x, backend="cuda").score
    n = torch.tensor([3, 5], device="cuda")
    active = torch.zeros(score.shape, dtype=torch.bool, device="cuda")
    grad = torch.tensor(1.5, device="cuda")
    cases = [
        (ops.pixel_entropy, (x,)),
        (ops.region_scores, (x, 1, None, True)),
        (ops.region_scores, (x, 2, [13, 17], False)),
        (ops.pixel_scores, (x, 3, None, True)),
        (ops.select_regions, (score, n, 5, 1, 2, None)),
        (ops.select_regions, (score, n, 5, 0, 1, active)),
        (ops.local_consistency_loss, (x.clone().requires_grad_(), labels, "kl", 4, 255)),
        (ops._local_consistency_loss_backward, (grad, x, labels, "l1", 8, 255)),
        (ops.negative_learning_loss, (x.clone().requires_grad_(), 0.1)),
        (ops._negative_learning_loss_backward, (grad, x, 0.1)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


@needs_cuda
def test_errors_name_the_argument():
    x = torch.randn(1, 3, 4, 4, device="cuda")
    with pytest.raises(RuntimeError, match="k must be >= 0"):
        torch.ops.ripu.region_scores(x, -1, None, True)
    with pytest.raises(RuntimeError, match="at most 65535 classes"):
        torch.ops.ripu.region_scores(torch.zeros(1, 65536, 1, 1, device="cuda"), 1, None, True)
    with pytest.raises(RuntimeError, match="kind must be 'l1' or 'kl'"):
        torch.ops.ripu.local_consistency_loss(x, torch.zeros(1, 4, 4, dtype=torch.long, device="cuda"), "l2", 8, 255)
