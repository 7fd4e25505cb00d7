"""Triton kernels for ``pixel_entropy``, ``region_scores`` and ``pixel_scores`` (ops ``ripu_triton::*``).

Two passes (see README.md in this folder):

1. ``_pixel_kernel`` reads the logits once, in place (any strides), optionally through the four bilinear taps
   of ``size=``, and writes per pixel the normalised entropy ``e`` (NaN for a pixel with a non-finite logit)
   and the argmax label ``y`` (``C`` for such a pixel: an extra "non-finite" class).
2. ``_window_kernel`` computes the clipped ``(2k+1)^2`` window statistics with running sums, so its cost per
   pixel does not grow with ``k``: a program owns a band of rows and a tile of ``HW`` columns (its ``TW``
   output columns plus ``k`` halo columns each side). Walking down the rows it keeps the vertical window
   counts of every class (and the vertical sums of ``e``) per column, adding the row that enters the window
   and removing the row that leaves; each row's horizontal window sums are differences of a prefix sum
   (``tl.cumsum``) read at two shifted places (``tl.gather``). Counts are exact int32, entropy sums float64.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from ._common import compute_dtype, launch, next_pow2, tile_shape


# ------------------------------------------------------------------------------------------------ kernels
@triton.jit
def _to_ct(v, IS_F64: tl.constexpr):
    if IS_F64:
        return v.to(tl.float64)
    else:
        return v.to(tl.float32)


@triton.jit
def _pixels(BLOCK_P: tl.constexpr, H, W):
    """The BLOCK_P output pixels of program (program_id(0), image program_id(1)): flat index, mask, row, column."""
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    p = pid * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < H * W
    oh = p // W
    ow = p - oh * W
    return pid, b, p, pm, oh, ow


@triton.jit
def _scalar_ct(v, IS_F64: tl.constexpr):
    """A scalar (runtime or specialised constant) as a 0-d tensor of the compute dtype."""
    if IS_F64:
        return tl.full([], v, tl.float64)
    else:
        return tl.full([], v, tl.float32)


@triton.jit
def _taps(o, n_in, n_out, ALIGN: tl.constexpr, IS_F64: tl.constexpr):
    """Source indices and weights of output positions ``o`` along one axis, as ATen's upsample_bilinear2d.

    scale = (n_in - 1) / (n_out - 1) (0 when n_out == 1) with align_corners, else n_in / n_out, rounded once
    in the compute dtype; src = scale * o, or max(scale * (o + 0.5) - 0.5, 0); i0 = min(floor(src), n_in - 1),
    i1 = i0 + (i0 < n_in - 1), l1 = clamp(src - i0, 0, 1), l0 = 1 - l1.
    """
    if ALIGN:
        num = _scalar_ct(n_in - 1, IS_F64)
        den = _scalar_ct(tl.maximum(n_out - 1, 1), IS_F64)
    else:
        num = _scalar_ct(n_in, IS_F64)
        den = _scalar_ct(n_out, IS_F64)
    if IS_F64:
        scale = num / den
    else:
        scale = tl.math.div_rn(num, den)
    if ALIGN:
        scale = tl.where(n_out > 1, scale, 0.0)
        src = scale * _to_ct(o, IS_F64)
    else:
        src = scale * (_to_ct(o, IS_F64) + 0.5) - 0.5
        src = tl.maximum(src, 0.0)
    i0 = tl.minimum(src.to(tl.int32), n_in - 1)
    l1 = tl.minimum(tl.maximum(src - _to_ct(i0, IS_F64), 0.0), 1.0)
    l0 = 1.0 - l1
    i1 = i0 + (i0 < n_in - 1).to(tl.int32)
    return i0, i1, l0, l1


@triton.jit
def _pixel_kernel(x_ptr, e_ptr, y_ptr, C, H_in, W_in, H, W, s_b, s_c, s_h, s_w,
                  RESIZE: tl.constexpr, ALIGN: tl.constexpr, WRITE_LABEL: tl.constexpr, IS_F64: tl.constexpr,
                  BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    """Entropy (and argmax label) of BLOCK_P pixels of image ``program_id(1)``; logits read as a
    [BLOCK_P, C_PAD] tile with the caller's strides (coalesced along whichever axis has stride 1)."""
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    ch = tl.arange(0, C_PAD)
    cm = ch < C
    m2 = pm[:, None] & cm[None, :]
    base = x_ptr + b * s_b + ch.to(tl.int64)[None, :] * s_c
    if RESIZE:
        h0, h1, lh0, lh1 = _taps(oh, H_in, H, ALIGN, IS_F64)
        w0, w1, lw0, lw1 = _taps(ow, W_in, W, ALIGN, IS_F64)
        r0 = h0.to(tl.int64)[:, None] * s_h
        r1 = h1.to(tl.int64)[:, None] * s_h
        c0 = w0.to(tl.int64)[:, None] * s_w
        c1 = w1.to(tl.int64)[:, None] * s_w
        xa = _to_ct(tl.load(base + r0 + c0, mask=m2, other=0.0), IS_F64)
        xb = _to_ct(tl.load(base + r0 + c1, mask=m2, other=0.0), IS_F64)
        xc = _to_ct(tl.load(base + r1 + c0, mask=m2, other=0.0), IS_F64)
        xd = _to_ct(tl.load(base + r1 + c1, mask=m2, other=0.0), IS_F64)
        lw0 = lw0[:, None]
        lw1 = lw1[:, None]
        x = lh0[:, None] * (lw0 * xa + lw1 * xb) + lh1[:, None] * (lw0 * xc + lw1 * xd)
    else:
        offs = oh.to(tl.int64)[:, None] * s_h + ow.to(tl.int64)[:, None] * s_w
        x = _to_ct(tl.load(base + offs, mask=m2, other=0.0), IS_F64)
    notfinite = cm[None, :] & ~(tl.abs(x) < float("inf"))
    bad = tl.max(notfinite.to(tl.int32), axis=1) > 0
    x = tl.where(cm[None, :], x, float("-inf"))
    mx = tl.max(x, axis=1)
    z = x - mx[:, None]
    s = tl.sum(tl.exp(z), axis=1)
    logp = z - tl.log(s)[:, None]
    prob = tl.exp(logp)
    ent = -tl.sum(prob * tl.where(prob > 0, logp, 0.0), axis=1)
    cf = _scalar_ct(C, IS_F64)
    e = tl.where(C > 1, ent / tl.log(tl.maximum(cf, 2.0)), 0.0)
    e = tl.where(bad, float("nan"), e)
    out = b * H * W + p
    tl.store(e_ptr + out, e, mask=pm)
    if WRITE_LABEL:
        # NaNs only occur in pixels that get the non-finite label anyway; keep them out of the argmax.
        y = tl.argmax(tl.where(x == x, x, float("-inf")), axis=1, tie_break_left=True).to(tl.int32)
        y = tl.where(bad, C, y)
        tl.store(y_ptr + out, y, mask=pm)


@triton.jit
def _window_kernel(y_ptr, e_ptr, score_ptr, imp_ptr, unc_ptr, C, H, W, k, TW, TH,
                   REGION: tl.constexpr, IS_F64: tl.constexpr, HW: tl.constexpr, C_PAD: tl.constexpr):
    """Window impurity (and, for REGION, window uncertainty) of rows [r0, r0+TH) x columns [j0, j0+TW).

    Tile column t holds image column j0 - k + t; output column j0 + t (t < TW) has its window at tile
    columns [t, t + 2k]. ``V[c, t]``: number of pixels of class c (class C: non-finite) in the clipped
    vertical window of the current row at tile column t; ``ES[t]``: the sum of their finite entropies.
    """
    pid_w = tl.program_id(0)
    pid_h = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    j0 = pid_w * TW
    t = tl.arange(0, HW)
    col = j0 - k + t
    colv = (col >= 0) & (col < W)
    cls = tl.arange(0, C_PAD)[:, None]
    ybase = y_ptr + b * H * W
    ebase = e_ptr + b * H * W
    r0 = pid_h * TH
    r_end = tl.minimum(r0 + TH, H)
    V = tl.zeros([C_PAD, HW], dtype=tl.int32)
    ES = tl.zeros([HW], dtype=tl.float64)
    # Rows [r0 - k - 1, r0 + k - 1]: the loop's first step adds row r0 + k and removes row r0 - k - 1.
    for r in range(tl.maximum(r0 - k - 1, 0), tl.minimum(r0 + k, H)):
        yl = tl.load(ybase + r * W + col, mask=colv, other=-1)
        V += (yl[None, :] == cls).to(tl.int32)
        el = tl.load(ebase + r * W + col, mask=colv, other=0.0).to(tl.float64)
        ES += tl.where(el == el, el, 0.0)
    # Window of output column t in tile columns [t, t + 2k]: prefix sums read at t + 2k and t - 1.
    hi = tl.minimum(t + 2 * k, HW - 1)
    lo = tl.maximum(t - 1, 0)
    has_lo = t >= 1
    hi2 = hi[None, :] + cls * 0
    lo2 = lo[None, :] + cls * 0
    j = j0 + t
    out_ok = (t < TW) & (j < W)
    ncols = tl.minimum(j + k, W - 1) - tl.maximum(j - k, 0) + 1
    cf = _scalar_ct(C, IS_F64)
    inv_log_c = 1.0 / tl.log(tl.maximum(cf, 2.0))
    real = cls < C
    for i in range(r0, r_end):
        ra = i + k
        add_ok = colv & ((t * 0 + ra) < H)
        ya = tl.load(ybase + ra * W + col, mask=add_ok, other=-1)
        ea = tl.load(ebase + ra * W + col, mask=add_ok, other=0.0).to(tl.float64)
        rr = i - k - 1
        rem_ok = colv & ((t * 0 + rr) >= 0)
        yr = tl.load(ybase + rr * W + col, mask=rem_ok, other=-1)
        er = tl.load(ebase + rr * W + col, mask=rem_ok, other=0.0).to(tl.float64)
        V += (ya[None, :] == cls).to(tl.int32) - (yr[None, :] == cls).to(tl.int32)
        ES += tl.where(ea == ea, ea, 0.0) - tl.where(er == er, er, 0.0)
        cs = tl.cumsum(V, axis=1)
        n = tl.gather(cs, hi2, axis=1) - tl.where(has_lo[None, :], tl.gather(cs, lo2, axis=1), 0)
        nrows = tl.minimum(i + k, H - 1) - tl.maximum(i - k, 0) + 1
        count = nrows * ncols
        bad = tl.sum(tl.where(cls == C, n, 0), axis=0) > 0
        q = _to_ct(n, IS_F64) / _to_ct(count, IS_F64)[None, :]
        terms = tl.where(real & (n > 0), q * tl.log(tl.where(n > 0, q, 1.0)), 0.0)
        imp = tl.where(C > 1, -tl.sum(terms, axis=0) * inv_log_c, 0.0)
        imp = tl.where(bad, float("nan"), imp)
        out = b * H * W + i * W + j
        tl.store(imp_ptr + out, imp, mask=out_ok)
        if REGION:
            ce = tl.cumsum(ES, axis=0)
            esum = tl.gather(ce, hi, axis=0) - tl.where(has_lo, tl.gather(ce, lo, axis=0), 0.0)
            unc = _to_ct(esum / count.to(tl.float64), IS_F64)
            unc = tl.where(bad, float("nan"), unc)
            tl.store(unc_ptr + out, unc, mask=out_ok)
            tl.store(score_ptr + out, imp * unc, mask=out_ok)
        else:
            e_pix = tl.load(e_ptr + out, mask=out_ok, other=0.0)
            tl.store(score_ptr + out, imp * e_pix, mask=out_ok)


# ---------------------------------------------------------------------------------------------- launchers
def _pixel_pass(logits: torch.Tensor, size, align_corners: bool, with_label: bool):
    """Entropy (B, H2, W2) in the compute dtype and, when asked, the int32 label map (C = non-finite)."""
    b, c, h_in, w_in = logits.shape
    h, w = (h_in, w_in) if size is None else (int(size[0]), int(size[1]))
    ct = compute_dtype(logits.dtype)
    e = torch.empty((b, h, w), dtype=ct, device=logits.device)
    y = torch.empty((b, h, w) if with_label else (0,), dtype=torch.int32, device=logits.device)
    if b == 0 or h * w == 0:
        return e, y
    c_pad = next_pow2(c)
    block_p, num_warps = tile_shape(c_pad, 2048)
    grid = (triton.cdiv(h * w, block_p), b)
    launch(_pixel_kernel, grid, logits, e, y, c, h_in, w_in, h, w, *logits.stride(),
           RESIZE=size is not None, ALIGN=bool(align_corners), WRITE_LABEL=with_label,
           IS_F64=ct == torch.float64, BLOCK_P=block_p, C_PAD=c_pad, num_warps=num_warps)
    return e, y


def _window_tiles(c: int, k: int, w: int):
    """(HW, TW, C_PAD, num_warps) of the window kernel for C classes, radius k and image width w.

    HW, the tile width, is a power of two at least twice the halo 2k (so at least half the tile is output
    columns: the halo overhead does not grow with k), no wider than the image plus its halo, halved while the
    [C_PAD, HW] count tile is large and the halving still leaves at least 8 output columns.
    """
    c_pad = next_pow2(c + 1)  # class C counts the pixels with a non-finite logit
    hw = next_pow2(min(max(4 * k + 2, 64), w + 2 * k))
    while c_pad * hw > 8192 and hw // 2 >= 2 * k + 8:
        hw //= 2
    tile = c_pad * hw
    num_warps = 4 if tile <= 1024 else (8 if tile <= 8192 else 16)  # 16 warps cap registers at 128
    return hw, hw - 2 * k, c_pad, num_warps


def _window_pass(y: torch.Tensor, e: torch.Tensor, c: int, k: int, region: bool):
    b, h, w = e.shape
    score = torch.empty_like(e)
    imp = torch.empty_like(e)
    unc = torch.empty_like(e) if region else e
    if b == 0 or h * w == 0:
        return score, imp, unc
    hw, tw, c_pad, num_warps = _window_tiles(c, k, w)
    th = max(32, 2 * k)  # row band per program: the 2k+1 rows that prime its running sums stay amortised
    grid = (triton.cdiv(w, tw), triton.cdiv(h, th), b)
    launch(_window_kernel, grid, y, e, score, imp, unc, c, h, w, k, tw, th,
           REGION=region, IS_F64=e.dtype == torch.float64, HW=hw, C_PAD=c_pad, num_warps=num_warps)
    return score, imp, unc


# -------------------------------------------------------------------------------------------- triton_ops
@triton_op("ripu_triton::pixel_entropy", mutates_args=())
def _pixel_entropy_op(logits: torch.Tensor) -> torch.Tensor:
    e, _ = _pixel_pass(logits, None, True, with_label=False)
    return e


@triton_op("ripu_triton::region_scores", mutates_args=())
def _region_scores_op(logits: torch.Tensor, k: int, size: Optional[List[int]],
                      align_corners: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    e, y = _pixel_pass(logits, size, align_corners, with_label=True)
    return _window_pass(y, e, logits.shape[1], k, region=True)


@triton_op("ripu_triton::pixel_scores", mutates_args=())
def _pixel_scores_op(logits: torch.Tensor, k: int, size: Optional[List[int]],
                     align_corners: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    e, y = _pixel_pass(logits, size, align_corners, with_label=True)
    score, imp, _ = _window_pass(y, e, logits.shape[1], k, region=False)
    return score, imp, e


# ------------------------------------------------------------------------------------- backend functions
def pixel_entropy(logits: torch.Tensor) -> torch.Tensor:
    return torch.ops.ripu_triton.pixel_entropy(logits)


def region_scores(logits, k, size, align_corners):
    return torch.ops.ripu_triton.region_scores(logits, int(k), None if size is None else list(size),
                                               bool(align_corners))


def pixel_scores(logits, k, size, align_corners):
    return torch.ops.ripu_triton.pixel_scores(logits, int(k), None if size is None else list(size),
                                              bool(align_corners))
