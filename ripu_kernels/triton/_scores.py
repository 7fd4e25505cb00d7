"""Triton kernels for ``pixel_entropy``, ``region_scores`` and ``pixel_scores`` (ops ``ripu_triton::*``).

Two passes (README.md in this folder has the design and the cost estimates):

1. ``_pixel_kernel``: each thread owns pixels (the fast axis of the tile) and walks over the classes in
   chunks of ``CU`` with an online max / sum-of-exponentials (flash-attention's running softmax), so the logits
   are read once, coalesced along pixels for any ``W``, with no cross-thread reduction. It writes the normalised
   entropy ``e`` and the argmax as a *slot*: ``class + 1``, or ``0`` for a pixel with a non-finite logit.
2. ``_window_kernel``: clipped ``(2k+1)^2`` window statistics with running sums, cost per pixel independent of
   ``k``. Class counts are packed ``F`` to an int32 word (``FB`` bits per count, enough for the largest window).
   A program owns ``TW`` output columns and a band of rows; walking down the rows it keeps, per tile column,
   the vertical window counts at the column entering each output window (``VR``, image column ``j + kw``) and
   at the column leaving it (``VL``, column ``j - kw - 1``). The window counts of the row are then one prefix
   sum: ``n(j) = n(j0 - 1) + cumsum(VR - VL)``, where ``n(j0 - 1)`` is a masked sum of ``VL`` (plus a running
   remainder when ``2kw + 1 > TW``). The same scheme in float64 gives the window entropy sums (RA).
   Impurity ``-sum_c q_c log q_c / log C`` with ``q_c = n_c / N``; a window is pure exactly when its largest
   count is ``N``, and then its impurity is 0 by construction (no rounding can make it +-1e-8).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from ._common import INTERPRET, compute_dtype, launch, next_pow2

LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)  # log2(e), a compile-time constant in the kernels


# ------------------------------------------------------------------------------------------------ helpers
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
    """Source indices and weights of output positions ``o`` along one axis, as ATen's CPU upsample_bilinear2d.

    scale = (n_in - 1) / (n_out - 1) (0 when n_out == 1) with align_corners, else n_in / n_out, rounded once
    in the compute dtype; src = scale * o, or max(scale * (o + 0.5) - 0.5, 0); i0 = min(floor(src), n_in - 1),
    i1 = i0 + (i0 < n_in - 1), l1 = clamp(src - i0, 0, 1), l0 = 1 - l1. An axis that is not resized
    (n_in == n_out) is copied: i1 = i0, as ATen does, so a non-finite neighbour with weight 0 is never read
    (0 * inf would make a NaN that F.interpolate does not make).
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
    i1 = i0 + ((i0 < n_in - 1) & (n_in != n_out)).to(tl.int32)
    return i0, i1, l0, l1


# ------------------------------------------------------------------------------------------ pixel kernel
@triton.jit
def _logit(cb, o00, o01, o10, o11, lh0, lh1, lw0, lw1, pm, RESIZE: tl.constexpr, IS_F64: tl.constexpr):
    """The logits of one class (at ``cb``) for BLOCK_P pixels: one load, or the four bilinear taps with RESIZE."""
    xa = _to_ct(tl.load(cb + o00, mask=pm, other=0.0), IS_F64)
    if RESIZE:
        xb = _to_ct(tl.load(cb + o01, mask=pm, other=0.0), IS_F64)
        xc = _to_ct(tl.load(cb + o10, mask=pm, other=0.0), IS_F64)
        xd = _to_ct(tl.load(cb + o11, mask=pm, other=0.0), IS_F64)
        return lh0 * (lw0 * xa + lw1 * xb) + lh1 * (lw0 * xc + lw1 * xd)
    else:
        return xa


@triton.jit
def _pixel_kernel(x_ptr, e_ptr, y_ptr, C, H_in, W_in, H, W, s_b, s_c, s_h, s_w,
                  RESIZE: tl.constexpr, ALIGN: tl.constexpr, FLAT: tl.constexpr, WRITE_LABEL: tl.constexpr,
                  IS_F64: tl.constexpr, BLOCK_P: tl.constexpr, UNROLL: tl.constexpr):
    """Entropy (and argmax slot) of BLOCK_P pixels of image ``program_id(1)``.

    Each thread owns pixels and walks over the classes with an online softmax in base 2: the running max m, the
    sum S = sum_c 2^d_c and T = sum_c 2^d_c d_c with d_c = (x_c - m) log2 e. One exponential per class: for
    d = (x - m) log2 e, a = 2^-|d| is either the new term (d <= 0) or the factor rescaling S and T to the new max
    (d > 0: S <- a S + 1, T <- a (T - d S)). Entropy in bits log2 S - T / S. No cross-thread reduction; loads
    coalesced along pixels whatever W is, vectorised when FLAT (W-contiguous NCHW logits).
    """
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    if RESIZE:
        h0, h1, lh0, lh1 = _taps(oh, H_in, H, ALIGN, IS_F64)
        w0, w1, lw0, lw1 = _taps(ow, W_in, W, ALIGN, IS_F64)
        r0 = h0.to(tl.int64) * s_h
        r1 = h1.to(tl.int64) * s_h
        c0 = w0.to(tl.int64) * s_w
        c1 = w1.to(tl.int64) * s_w
        o00 = r0 + c0
        o01 = r0 + c1
        o10 = r1 + c0
        o11 = r1 + c1
    else:
        if FLAT:  # s_w == 1 and s_h == W: the pixel offset is p itself, which Triton knows is contiguous
            o00 = p.to(tl.int64)
        else:
            o00 = oh.to(tl.int64) * s_h + ow.to(tl.int64) * s_w
        o01 = o00  # the other taps and the weights are unused without RESIZE
        o10 = o00
        o11 = o00
        lh0 = o00
        lh1 = o00
        lw0 = o00
        lw1 = o00
    cb = x_ptr + b * s_b
    m = _logit(cb, o00, o01, o10, o11, lh0, lh1, lw0, lw1, pm, RESIZE, IS_F64)
    s = tl.full(m.shape, 1.0, m.dtype)
    t = tl.zeros_like(m)
    z = m * 0.0  # becomes NaN exactly when a logit is +-inf or NaN
    idx = tl.zeros(m.shape, tl.int32)
    for c in tl.range(1, C, loop_unroll_factor=UNROLL):
        cb += s_c
        x = _logit(cb, o00, o01, o10, o11, lh0, lh1, lw0, lw1, pm, RESIZE, IS_F64)
        d = (x - m) * LOG2E
        up = d > 0  # strictly: a tie keeps the lower class index
        a = tl.exp2(-tl.abs(d))
        t = tl.where(up, a * (t - d * s), t + a * d)
        s = tl.where(up, s * a + 1.0, s + a)
        m = tl.where(up, x, m)
        idx = tl.where(up, c, idx)
        z += x * 0.0
    bad = z != z
    h2 = tl.maximum(tl.log2(s) - t / s, 0.0)  # entropy in bits (T <= 0)
    cf = _scalar_ct(C, IS_F64)
    e = tl.where(C > 1, h2 / tl.log2(tl.maximum(cf, 2.0)), 0.0)
    e = tl.where(bad, float("nan"), e)
    out = b * H * W + p
    tl.store(e_ptr + out, e, mask=pm)
    if WRITE_LABEL:
        slot = tl.where(bad, 0, idx + 1)
        tl.store(y_ptr + out, slot.to(y_ptr.dtype.element_ty), mask=pm)


# ----------------------------------------------------------------------------------------- window kernel
# Packed counts wrap around int32 by design (a window's fields are exact once summed), so their additions are
# written with sanitize_overflow=False: the interpreter (and TRITON_DEBUG builds) would otherwise assert.
@triton.jit
def _row_terms(ybase, ebase, r, H, W, colR, okR, colL, okL, WORD0, TW: tl.constexpr, NWA: tl.constexpr,
               NWB: tl.constexpr, HAS_B: tl.constexpr, ES: tl.constexpr, F: tl.constexpr, FB: tl.constexpr):
    """Row ``r`` at the entering (colR) and leaving (colL) columns: packed one-hot class counts of the words
    [0, NWA) and [NWA, NWA + NWB) of the launch (a [NW, TW] tile each) and finite entropies (float64, 0 for NaN);
    zero outside the image."""
    rv = colR * 0 + r  # the row as a tensor (under the interpreter r is a Python int)
    rok = (rv >= 0) & (rv < H)
    roff = tl.minimum(tl.maximum(r, 0), H - 1) * W  # int32: H * W < 2^31
    okr = okR & rok
    okl = okL & rok
    sr = tl.load(ybase + (roff + colR), mask=okr, other=0).to(tl.int32)
    sl = tl.load(ybase + (roff + colL), mask=okl, other=0).to(tl.int32)
    qr = sr // F
    ql = sl // F
    br = (1 << ((sr - qr * F) * FB))[None, :]
    bl = (1 << ((sl - ql * F) * FB))[None, :]
    qr = tl.where(okr, qr - WORD0, -1)[None, :]
    ql = tl.where(okl, ql - WORD0, -1)[None, :]
    wa = tl.arange(0, NWA)[:, None]
    ora = tl.where(wa == qr, br, 0)
    ola = tl.where(wa == ql, bl, 0)
    if HAS_B:
        wb = tl.arange(0, NWB)[:, None] + NWA
        orb = tl.where(wb == qr, br, 0)
        olb = tl.where(wb == ql, bl, 0)
    else:
        orb = tl.zeros([NWB, TW], tl.int32)
        olb = tl.zeros([NWB, TW], tl.int32)
    if ES:
        er = tl.load(ebase + (roff + colR), mask=okr, other=0.0).to(tl.float64)
        el = tl.load(ebase + (roff + colL), mask=okl, other=0.0).to(tl.float64)
        er = tl.where(er == er, er, 0.0)
        el = tl.where(el == el, el, 0.0)
    else:
        er = tl.zeros([TW], tl.float64)
        el = tl.zeros([TW], tl.float64)
    return ora, orb, ola, olb, er, el


@triton.jit
def _row_sum(ybase, ebase, r, H, W, lo, hi, t, WORD0, TW: tl.constexpr, NWA: tl.constexpr, NWB: tl.constexpr,
             HAS_B: tl.constexpr, ES: tl.constexpr, F: tl.constexpr, FB: tl.constexpr):
    """Packed class counts ([NWA], [NWB]) and entropy sum of row ``r`` over columns [lo, hi] (WIDE remainder)."""
    sa = tl.zeros([NWA], tl.int32)
    sb = tl.zeros([NWB], tl.int32)
    se = tl.full([], 0.0, tl.float64)
    rv = t * 0 + r
    rok = (rv >= 0) & (rv < H)
    roff = tl.minimum(tl.maximum(r, 0), H - 1) * W
    for c0 in range(lo, hi + 1, TW):
        col = c0 + t
        ok = rok & (col <= hi)
        s = tl.load(ybase + (roff + col), mask=ok, other=0).to(tl.int32)
        q = s // F
        bit = (1 << ((s - q * F) * FB))[None, :]
        q = tl.where(ok, q - WORD0, -1)[None, :]
        sa = tl.add(sa, tl.sum(tl.where(tl.arange(0, NWA)[:, None] == q, bit, 0), axis=1), sanitize_overflow=False)
        if HAS_B:
            ob = tl.where(tl.arange(0, NWB)[:, None] + NWA == q, bit, 0)
            sb = tl.add(sb, tl.sum(ob, axis=1), sanitize_overflow=False)
        if ES:
            ev = tl.load(ebase + (roff + col), mask=ok, other=0.0).to(tl.float64)
            se += tl.sum(tl.where(ev == ev, ev, 0.0), axis=0)
    return sa, sb, se


@triton.jit
def _log2(x, FAST: tl.constexpr):
    """log2 of float32 x > 0: one ``lg2.approx.f32`` (relative error below 2^-22) when FAST (compiled for an NVIDIA
    GPU), else tl.log2 (libdevice's ~20-instruction polynomial; the interpreter; float64)."""
    if FAST:
        return tl.inline_asm_elementwise("lg2.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True,
                                         pack=1)
    else:
        return tl.log2(x)


@triton.jit
def _impurity_terms(VR, VL, R, t, KW, inv_n, WIDE: tl.constexpr, F: tl.constexpr, FB: tl.constexpr,
                    IS_F64: tl.constexpr, FAST: tl.constexpr):
    """Window counts of one row from the running column counts, unpacked into the impurity terms.

    Packed counts [NW, TW] of the window of every tile column: n(j0 - 1) + cumsum(VR - VL) along the tile, where
    n(j0 - 1), the window just left of the tile, is the sum of VL over its first 2kw + 1 columns or, when the
    window is wider than the tile (WIDE), over the whole tile plus the running remainder R. F counts (a power of
    two) of FB bits per word are unpacked at once into a [NW, F, TW] tile. Returns the packed counts and the sum
    over the slots of q log2 q (q = n_c / N; <= 0).
    """
    if WIDE:
        base = tl.add(tl.sum(VL, axis=1), R, sanitize_overflow=False)
    else:
        base = tl.sum(tl.where(t[None, :] <= 2 * KW, VL, 0), axis=1)
    n = tl.add(base[:, None], tl.cumsum(tl.sub(VR, VL, sanitize_overflow=False), axis=1), sanitize_overflow=False)
    if F == 1:
        nf = n[:, None, :]
    else:
        nf = (n[:, None, :] >> (tl.arange(0, F) * FB)[None, :, None]) & ((1 << FB) - 1)
    q = _to_ct(nf, IS_F64) * inv_n[None, None, :]
    acc = tl.sum(tl.sum(q * _log2(tl.maximum(q, 1e-30), FAST), axis=1), axis=0)
    return n, acc


@triton.jit
def _slot_count(n, qc, OFF: tl.constexpr):
    """The packed word of n [NW, TW] whose index (OFF + w) is qc, per column (0 when none is)."""
    return tl.sum(tl.where(tl.arange(0, n.shape[0])[:, None] + OFF == qc[None, :], n, 0), axis=0)


@triton.jit
def _window_sums(VR, VL, R, t, KW, WIDE: tl.constexpr):
    """Window sums [TW] of one float64 quantity (the entropies), as the counts of _impurity_terms."""
    if WIDE:
        base = tl.sum(VL, axis=0) + R
    else:
        base = tl.sum(tl.where(t <= 2 * KW, VL, 0.0), axis=0)
    return base + tl.cumsum(VR - VL, axis=0)


@triton.jit
def _window_kernel(y_ptr, e_ptr, score_ptr, imp_ptr, unc_ptr, acc_ptr, aux_ptr, C, H, W, KH, KW, TH, WORD0,
                   REGION: tl.constexpr, FIRST: tl.constexpr, LAST: tl.constexpr, ES: tl.constexpr,
                   WIDE: tl.constexpr, IS_F64: tl.constexpr, TW: tl.constexpr, NWA: tl.constexpr,
                   NWB: tl.constexpr, HAS_B: tl.constexpr, F: tl.constexpr, FB: tl.constexpr,
                   FAST: tl.constexpr):
    """Window impurity (and, for REGION, window uncertainty) of rows [r0, r0 + TH) x columns [j0, j0 + TW).

    Slots (``y``): 0 for a pixel with a non-finite logit, class + 1 otherwise; slot s lives in word s // F, bits
    [FB (s % F), FB (s % F + 1)). This launch handles the words [WORD0, WORD0 + NWA + NWB) (all of them unless
    the classes need more words than one launch holds; then the FIRST/LAST launches carry partial sums in
    acc/aux). ES: the float64 entropy window sums (REGION, first launch only).
    """
    pid_w = tl.program_id(0)
    pid_h = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    j0 = pid_w * TW
    t = tl.arange(0, TW)
    j = j0 + t
    colR = j + KW  # enters the window of output column j
    okR = colR < W
    colL = j - KW - 1  # leaves it
    okL = (colL >= 0) & (colL < W)
    img = b * H * W
    ybase = y_ptr + img
    ebase = e_ptr + img
    r0 = pid_h * TH
    r_end = tl.minimum(r0 + TH, H)
    lo = tl.maximum(j0 - KW - 1 + TW, 0)  # WIDE remainder of the window left of the tile: columns [lo, hi]
    hi = tl.minimum(j0 + KW - 1, W - 1)
    VRa = tl.zeros([NWA, TW], tl.int32)
    VLa = tl.zeros([NWA, TW], tl.int32)
    VRb = tl.zeros([NWB, TW], tl.int32)
    VLb = tl.zeros([NWB, TW], tl.int32)
    ESR = tl.zeros([TW], tl.float64)
    ESL = tl.zeros([TW], tl.float64)
    Ra = tl.zeros([NWA], tl.int32)
    Rb = tl.zeros([NWB], tl.int32)
    Re = tl.full([], 0.0, tl.float64)
    # Prime with rows [r0 - kh - 1, r0 + kh - 1]: the first step adds row r0 + kh and removes row r0 - kh - 1.
    for r in range(tl.maximum(r0 - KH - 1, 0), tl.minimum(r0 + KH, H)):
        ora, orb, ola, olb, er, el = _row_terms(ybase, ebase, r, H, W, colR, okR, colL, okL, WORD0, TW, NWA, NWB,
                                                HAS_B, ES, F, FB)
        VRa = tl.add(VRa, ora, sanitize_overflow=False)
        VLa = tl.add(VLa, ola, sanitize_overflow=False)
        if HAS_B:
            VRb = tl.add(VRb, orb, sanitize_overflow=False)
            VLb = tl.add(VLb, olb, sanitize_overflow=False)
        if ES:
            ESR += er
            ESL += el
        if WIDE:
            sa, sb, se = _row_sum(ybase, ebase, r, H, W, lo, hi, t, WORD0, TW, NWA, NWB, HAS_B, ES, F, FB)
            Ra = tl.add(Ra, sa, sanitize_overflow=False)
            Rb = tl.add(Rb, sb, sanitize_overflow=False)
            Re += se
    cf = _scalar_ct(C, IS_F64)
    inv_log2c = 1.0 / tl.log2(tl.maximum(cf, 2.0))
    ncols = tl.minimum(j + KW, W - 1) - tl.maximum(j - KW, 0) + 1
    omask = j < W
    for i in range(r0, r_end):
        ora, orb, ola, olb, er, el = _row_terms(ybase, ebase, i + KH, H, W, colR, okR, colL, okL, WORD0, TW, NWA,
                                                NWB, HAS_B, ES, F, FB)
        pra, prb, pla, plb, pr, pl = _row_terms(ybase, ebase, i - KH - 1, H, W, colR, okR, colL, okL, WORD0, TW,
                                                NWA, NWB, HAS_B, ES, F, FB)
        VRa = tl.add(VRa, tl.sub(ora, pra, sanitize_overflow=False), sanitize_overflow=False)
        VLa = tl.add(VLa, tl.sub(ola, pla, sanitize_overflow=False), sanitize_overflow=False)
        if HAS_B:
            VRb = tl.add(VRb, tl.sub(orb, prb, sanitize_overflow=False), sanitize_overflow=False)
            VLb = tl.add(VLb, tl.sub(olb, plb, sanitize_overflow=False), sanitize_overflow=False)
        if ES:
            ESR += er - pr
            ESL += el - pl
        if WIDE:
            sa, sb, se = _row_sum(ybase, ebase, i + KH, H, W, lo, hi, t, WORD0, TW, NWA, NWB, HAS_B, ES, F, FB)
            qa, qb, qe = _row_sum(ybase, ebase, i - KH - 1, H, W, lo, hi, t, WORD0, TW, NWA, NWB, HAS_B, ES, F, FB)
            Ra = tl.add(Ra, tl.sub(sa, qa, sanitize_overflow=False), sanitize_overflow=False)
            Rb = tl.add(Rb, tl.sub(sb, qb, sanitize_overflow=False), sanitize_overflow=False)
            Re += se - qe
        count = (tl.minimum(i + KH, H - 1) - tl.maximum(i - KH, 0) + 1) * ncols
        inv_n = 1.0 / _to_ct(count, IS_F64)
        na, acc = _impurity_terms(VRa, VLa, Ra, t, KW, inv_n, WIDE, F, FB, IS_F64, FAST)
        # The window is pure exactly when the count of the centre pixel's slot is N: that slot's word and field.
        sc = tl.load(ybase + (i * W + j), mask=omask, other=0).to(tl.int32)
        qc = sc // F - WORD0
        wc = _slot_count(na, qc, 0)
        if HAS_B:
            nb, acc_b = _impurity_terms(VRb, VLb, Rb, t, KW, inv_n, WIDE, F, FB, IS_F64, FAST)
            acc += acc_b
            wc += _slot_count(nb, qc, NWA)
        if F == 1:
            cen = wc
        else:
            cen = (wc >> ((sc - (sc // F) * F) * FB)) & ((1 << FB) - 1)
        out = img + i * W + j
        if FIRST:  # slot 0 (non-finite logits) is field 0 of word 0
            if F == 1:
                bad = tl.sum(tl.where(tl.arange(0, NWA)[:, None] == 0, na, 0), axis=0) > 0
            else:
                bad = tl.sum(tl.where(tl.arange(0, NWA)[:, None] == 0, na & ((1 << FB) - 1), 0), axis=0) > 0
        else:  # earlier launches: their impurity terms, and the centre count if its word was theirs
            acc += tl.load(acc_ptr + out, mask=omask, other=0.0)
            prev = tl.load(aux_ptr + out, mask=omask, other=0)
            bad = prev < 0
            cen += prev
        if ES:
            esum = _window_sums(ESR, ESL, Re, t, KW, WIDE)
            unc = _to_ct(esum / count.to(tl.float64), IS_F64)
            unc = tl.where(bad, float("nan"), unc)
        if LAST:
            # Pure window (its largest count is N): exactly 0, whatever the rounding of the logarithms.
            imp = tl.where(cen == count, 0.0, tl.maximum(-acc * inv_log2c, 0.0))
            imp = tl.where(bad, float("nan"), imp)
            tl.store(imp_ptr + out, imp, mask=omask)
            if REGION:
                if not ES:
                    unc = tl.load(unc_ptr + out, mask=omask, other=0.0)
                tl.store(unc_ptr + out, unc, mask=omask)
                tl.store(score_ptr + out, imp * unc, mask=omask)
            else:
                e_pix = tl.load(e_ptr + out, mask=omask, other=0.0)
                tl.store(score_ptr + out, imp * e_pix, mask=omask)
        else:
            tl.store(acc_ptr + out, acc, mask=omask)
            tl.store(aux_ptr + out, tl.where(bad, -1, cen), mask=omask)
            if ES:
                tl.store(unc_ptr + out, unc, mask=omask)


# ---------------------------------------------------------------------------------------------- launchers
_TW_MAX = 256       # widest window tile; the tests lower it to reach the WIDE and multi-tile paths on small maps
_TH_MIN = 32        # fewest rows per window program (the tests lower it to get several row bands)
_GROUP_WORDS = 16   # most count words one window launch holds; more classes take several launches
_MAX_PIXELS = 2 ** 31 - 1


def _check_pixels(op: str, h: int, w: int) -> None:
    if h * w > _MAX_PIXELS:
        raise ValueError(f"ripu::{op}: the Triton backend needs H * W < 2^31 pixels per image, got {h} x {w}")


def pixel_tiles(resize: bool, f64: bool) -> tuple[int, int]:
    """(BLOCK_P, UNROLL) of the pixel kernel with 4 warps: pixels per program and unrolling of the class loop.

    4 pixels per thread and 4 classes in flight (52 registers on sm_90); with the resize, 4 taps per class: one
    pixel per thread (64 registers). float64 halves either. Checked by ``_compile_check`` (no spills).
    """
    if resize:
        return 128, (2 if f64 else 4)
    return (256 if f64 else 512), 4


def _pixel_pass(logits: torch.Tensor, size, align_corners: bool, with_label: bool):
    """Entropy (B, H2, W2) in the compute dtype and, when asked, the slot map (uint8 when C < 255, else int32)."""
    b, c, h_in, w_in = (int(v) for v in logits.shape)  # int(): tile choices specialise on the sizes
    h, w = (h_in, w_in) if size is None else (int(size[0]), int(size[1]))
    ct = compute_dtype(logits.dtype)
    e = torch.empty((b, h, w), dtype=ct, device=logits.device)
    ydt = torch.uint8 if c < 255 else torch.int32
    y = torch.empty((b, h, w) if with_label else (0,), dtype=ydt, device=logits.device)
    if b == 0 or h * w == 0:
        return e, y
    s_b, s_c, s_h, s_w = (int(v) for v in logits.stride())
    flat = size is None and s_w == 1 and s_h == w_in
    block_p, unroll = pixel_tiles(size is not None, ct == torch.float64)
    grid = (triton.cdiv(h * w, block_p), b)
    launch(_pixel_kernel, grid, logits, e, y, c, h_in, w_in, h, w, s_b, s_c, s_h, s_w,
           RESIZE=size is not None, ALIGN=bool(align_corners), FLAT=flat, WRITE_LABEL=with_label,
           IS_F64=ct == torch.float64, BLOCK_P=block_p, UNROLL=unroll, num_warps=4)
    return e, y


def _split_words(count: int) -> tuple[int, int]:
    """A launch's words as two power-of-two tiles: (largest power of two <= count, next_pow2 of the rest or 0)."""
    a = 1 << (count.bit_length() - 1)
    return a, (next_pow2(count - a) if count > a else 0)


def window_plan(c: int, h: int, w: int, k: int, f64: bool = False) -> dict:
    """Launch plan of the window kernel for C classes, radius k on an h x w map (a dict, for the tests too).

    k is clipped per axis to the image (kh = min(k, h - 1), kw = min(k, w - 1)): a window that reaches past
    the image on both sides is the image, so the results are identical and nothing grows with k beyond it.
    FB: bits per packed count (4, 8, 16 or 32: the largest window count fits), F = 32 // FB counts per int32 word, words
    ceil((C + 1) / F) split into launches of at most _GROUP_WORDS, each as two power-of-two tiles.
    """
    kh, kw = min(k, h - 1), min(k, w - 1)
    nmax = min(2 * kh + 1, h) * min(2 * kw + 1, w)
    fb = next(bits for bits in (4, 8, 16, 32) if nmax < (1 << bits))  # a power-of-two count per word
    f = 32 // fb
    words = -(-(c + 1) // f)
    groups = []
    for w0 in range(0, words, _GROUP_WORDS):
        nwa, nwb = _split_words(min(_GROUP_WORDS, words - w0))
        groups.append((w0, nwa, nwb))
    # 2 columns per thread (4 warps) while the count tiles are small; 1 when they hold more than 4 words or the
    # sums are float64, so that the registers stay near 100 on sm_90 (occupancy) instead of ~180.
    tw = 256 if max(a + bb for _, a, bb in groups) <= 4 and not f64 else 128
    tw = min(tw, _TW_MAX, max(16, next_pow2(w)))
    n_w = triton.cdiv(w, tw)
    th = max(_TH_MIN, 2 * (2 * kh + 1))  # the 2kh + 1 rows that prime a band's running sums stay amortised
    while th > _TH_MIN and n_w * triton.cdiv(h, th) < 128:  # ...but keep enough programs to fill a GPU
        th = max(_TH_MIN, th // 2)
    return dict(kh=kh, kw=kw, fb=fb, f=f, words=words, groups=groups, tw=tw, th=min(th, h), wide=2 * kw + 1 > tw)


def fast_log2(e: torch.Tensor) -> bool:
    """Whether the window kernel may use the PTX ``lg2.approx.f32``: float32, compiled for an NVIDIA GPU."""
    return e.dtype == torch.float32 and not INTERPRET and torch.version.hip is None


def _window_pass(y: torch.Tensor, e: torch.Tensor, c: int, k: int, region: bool):
    b, h, w = (int(v) for v in e.shape)
    c, k = int(c), int(k)
    score = torch.empty_like(e)
    imp = torch.empty_like(e)
    unc = torch.empty_like(e) if region else e
    if b == 0 or h * w == 0:
        return score, imp, unc
    plan = window_plan(c, h, w, k, e.dtype == torch.float64)
    groups = plan["groups"]
    if len(groups) > 1:
        acc = torch.empty_like(e)
        aux = torch.empty((b, h, w), dtype=torch.int32, device=e.device)
    else:  # never touched by a single launch
        acc, aux = imp, torch.empty((1,), dtype=torch.int32, device=e.device)
    grid = (triton.cdiv(w, plan["tw"]), triton.cdiv(h, plan["th"]), b)
    for g, (w0, nwa, nwb) in enumerate(groups):
        launch(_window_kernel, grid, y, e, score, imp, unc, acc, aux, c, h, w, plan["kh"], plan["kw"], plan["th"],
               w0, REGION=region, FIRST=g == 0, LAST=g == len(groups) - 1, ES=region and g == 0,
               WIDE=plan["wide"], IS_F64=e.dtype == torch.float64, TW=plan["tw"], NWA=nwa, NWB=max(nwb, 1),
               HAS_B=nwb > 0, F=plan["f"], FB=plan["fb"], FAST=fast_log2(e), num_warps=4)
    return score, imp, unc


# -------------------------------------------------------------------------------------------- triton_ops
@triton_op("ripu_triton::pixel_entropy", mutates_args=())
def _pixel_entropy_op(logits: torch.Tensor) -> torch.Tensor:
    _check_pixels("pixel_entropy", logits.shape[2], logits.shape[3])
    e, _ = _pixel_pass(logits, None, True, with_label=False)
    return e


def _scores_impl(op, logits, k, size, align_corners, region):
    h, w = (logits.shape[2], logits.shape[3]) if size is None else size
    _check_pixels(op, h, w)
    e, y = _pixel_pass(logits, size, align_corners, with_label=True)
    return _window_pass(y, e, logits.shape[1], k, region=region)


@triton_op("ripu_triton::region_scores", mutates_args=())
def _region_scores_op(logits: torch.Tensor, k: int, size: Optional[List[int]],
                      align_corners: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _scores_impl("region_scores", logits, k, size, align_corners, region=True)


@triton_op("ripu_triton::pixel_scores", mutates_args=())
def _pixel_scores_op(logits: torch.Tensor, k: int, size: Optional[List[int]],
                     align_corners: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    score, imp, e = _scores_impl("pixel_scores", logits, k, size, align_corners, region=False)
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
