"""Triton kernels for the two losses, forward and backward (ops ``ripu_triton::*``).

Negative learning (NL): one kernel per direction, a [BLOCK_P, C_PAD] tile of logits per program read with
the caller's strides. The forward writes one partial sum and one partial mask count per program (reduced in
float64 by torch, deterministic; no atomics); a pixel with a non-finite logit makes its partial sum NaN, so the
loss is NaN as LCR and cross-entropy are. The forward op also returns the mask count, which the backward needs
for its ``1 / count`` factor.

Local consistency (LCR): the forward computes the softmax once, into one (B, H, W, C) buffer ``P``, together
with the boundary map (uint8: label Laplacian non-zero and not ignored); it then reads the (3x3 or cross)
neighbourhood of ``P`` with replicate clamping at boundary pixels only, and writes partial sums as NL does. ``P``
and the boundary map are outputs of the forward op, saved for the backward, which does not recompute the softmax
and touches only boundary pixels and their neighbours: one kernel writes, at boundary pixels only, the gradient
w.r.t. their neighbourhood mean (``G``, already divided by the neighbourhood size); a second one gives every
pixel q ``dL/dp_q`` = its own term (if q is a boundary pixel) plus the ``G`` of the boundary pixels whose
(clamped) neighbourhood holds q, then the softmax Jacobian ``dx = p * (dp - sum_c dp * p)``. Far from boundaries
it loads nothing and writes zeros. Offsets that can exceed 2^31 (pixel index times C) are int64.
"""
from __future__ import annotations

from typing import Tuple

import torch
import triton
import triton.language as tl
from torch.library import register_autograd, triton_op

from ._common import compute_dtype, launch, next_pow2, tile_shape
from ._scores import _pixels, _to_ct


# ------------------------------------------------------------------------------------------------ helpers
@triton.jit
def _softmax_tile(x_ptr, b, oh, ow, pm, C, s_b, s_c, s_h, s_w, IS_F64: tl.constexpr, C_PAD: tl.constexpr):
    """Softmax over classes of a [BLOCK_P, C_PAD] tile of logits read in place (padded lanes 0), the tile mask
    and the logits themselves (0 in padded lanes)."""
    ch = tl.arange(0, C_PAD)
    cm = ch < C
    m2 = pm[:, None] & cm[None, :]
    offs = b * s_b + ch.to(tl.int64)[None, :] * s_c + oh.to(tl.int64)[:, None] * s_h \
        + ow.to(tl.int64)[:, None] * s_w
    x = _to_ct(tl.load(x_ptr + offs, mask=m2, other=0.0), IS_F64)
    xm = tl.where(cm[None, :], x, float("-inf"))
    mx = tl.max(xm, axis=1)
    ex = tl.exp(xm - mx[:, None])
    return ex / tl.sum(ex, axis=1)[:, None], m2, x


@triton.jit
def _plane_offset(b, pix, HW, C):
    """Element offset (int64) of pixel ``pix`` of image ``b`` in a (B, H, W, C) buffer: (b * HW + pix) * C."""
    return (b.to(tl.int64) * HW + pix.to(tl.int64)) * C


# --------------------------------------------------------------------------------------- negative learning
@triton.jit
def _nl_fwd_kernel(x_ptr, thr_ptr, psum_ptr, pcnt_ptr, C, H, W, s_b, s_c, s_h, s_w,
                   IS_F64: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    prob, m2, x = _softmax_tile(x_ptr, b, oh, ow, pm, C, s_b, s_c, s_h, s_w, IS_F64, C_PAD)
    # the mask is "not p >= threshold" (docs/ops.md): a NaN probability (a NaN or +inf logit in its pixel) counts
    # and its term is NaN, so the loss is NaN as cross-entropy's; a -inf logit is an exact p = 0, as in softmax
    mask = m2 & ~(prob >= tl.load(thr_ptr))
    term = -tl.log(tl.where(mask, 1.0 - prob + 1e-6, 1.0))
    total = tl.sum(tl.sum(tl.where(mask, term, 0.0), axis=1), axis=0)
    count = tl.sum(tl.sum(mask.to(tl.int32), axis=1), axis=0)
    slot = b * tl.num_programs(0) + pid
    tl.store(psum_ptr + slot, total.to(tl.float64))
    tl.store(pcnt_ptr + slot, count.to(tl.int64))


@triton.jit
def _nl_bwd_kernel(x_ptr, thr_ptr, scale_ptr, dx_ptr, C, H, W, s_b, s_c, s_h, s_w, d_b, d_c, d_h, d_w,
                   IS_F64: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    prob, m2, x = _softmax_tile(x_ptr, b, oh, ow, pm, C, s_b, s_c, s_h, s_w, IS_F64, C_PAD)
    mask = m2 & ~(prob >= tl.load(thr_ptr))  # as the forward
    scale = tl.load(scale_ptr)
    g = tl.where(mask, scale / tl.where(mask, 1.0 - prob + 1e-6, 1.0), 0.0)  # d loss / d p
    dot = tl.sum(g * prob, axis=1)
    dx = prob * (g - dot[:, None])
    ch = tl.arange(0, C_PAD)
    offs = b * d_b + ch.to(tl.int64)[None, :] * d_c + oh.to(tl.int64)[:, None] * d_h \
        + ow.to(tl.int64)[:, None] * d_w
    tl.store(dx_ptr + offs, dx, mask=m2)


# -------------------------------------------------------------------------------------- local consistency
@triton.jit
def _label_at(lab_ptr, b, oh, ow, di: tl.constexpr, dj: tl.constexpr, H, W, l_b, l_h, l_w, pm):
    """Label at (oh + di, ow + dj) as int64, 0 outside the image (zero padding of the Laplacian)."""
    r = oh + di
    c = ow + dj
    ok = pm & (r >= 0) & (r < H) & (c >= 0) & (c < W)
    return tl.load(lab_ptr + b * l_b + r.to(tl.int64) * l_h + c.to(tl.int64) * l_w, mask=ok, other=0).to(tl.int64)


@triton.jit
def _boundary(lab_ptr, b, oh, ow, pm, H, W, l_b, l_h, l_w, ignore, NEIGH8: tl.constexpr):
    """Label Laplacian (8: centre 8, others -1; 4: centre 4, cross -1; zero padding) non-zero and not ignored."""
    yc = _label_at(lab_ptr, b, oh, ow, 0, 0, H, W, l_b, l_h, l_w, pm)
    if NEIGH8:
        lap = 8 * yc
        for di in tl.static_range(-1, 2):
            for dj in tl.static_range(-1, 2):
                if di != 0 or dj != 0:
                    lap -= _label_at(lab_ptr, b, oh, ow, di, dj, H, W, l_b, l_h, l_w, pm)
    else:
        lap = 4 * yc
        lap -= _label_at(lab_ptr, b, oh, ow, -1, 0, H, W, l_b, l_h, l_w, pm)
        lap -= _label_at(lab_ptr, b, oh, ow, 1, 0, H, W, l_b, l_h, l_w, pm)
        lap -= _label_at(lab_ptr, b, oh, ow, 0, -1, H, W, l_b, l_h, l_w, pm)
        lap -= _label_at(lab_ptr, b, oh, ow, 0, 1, H, W, l_b, l_h, l_w, pm)
    return pm & (lap != 0) & (yc != ignore)


@triton.jit
def _lcr_softmax_kernel(x_ptr, lab_ptr, p_ptr, bnd_ptr, C, H, W, s_b, s_c, s_h, s_w, l_b, l_h, l_w, ignore,
                        NEIGH8: tl.constexpr, IS_F64: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    """The softmax of every pixel into P (B, H, W, C) and the boundary map (uint8)."""
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    prob, m2, x = _softmax_tile(x_ptr, b, oh, ow, pm, C, s_b, s_c, s_h, s_w, IS_F64, C_PAD)
    ch = tl.arange(0, C_PAD)
    tl.store(p_ptr + _plane_offset(b, p, H * W, C)[:, None] + ch[None, :], prob, mask=m2)
    bnd = _boundary(lab_ptr, b, oh, ow, pm, H, W, l_b, l_h, l_w, ignore, NEIGH8)
    tl.store(bnd_ptr + b * H * W + p, bnd.to(tl.uint8), mask=pm)


@triton.jit
def _p_at(p_ptr, b, oh, ow, di: tl.constexpr, dj: tl.constexpr, H, W, C, m2, C_PAD: tl.constexpr):
    """P at the replicate-clamped neighbour (oh + di, ow + dj); only where m2."""
    r = tl.minimum(tl.maximum(oh + di, 0), H - 1)
    c = tl.minimum(tl.maximum(ow + dj, 0), W - 1)
    ch = tl.arange(0, C_PAD)
    return tl.load(p_ptr + _plane_offset(b, r * W + c, H * W, C)[:, None] + ch[None, :], mask=m2, other=0.0)


@triton.jit
def _centre_and_mean(p_ptr, b, oh, ow, m2, C, H, W, NEIGH8: tl.constexpr, C_PAD: tl.constexpr):
    """P at the pixels and their neighbourhood mean, in the reference's order: row-major 3x3 (8), or centre,
    up, down, left, right (4); loaded only where m2."""
    pc = _p_at(p_ptr, b, oh, ow, 0, 0, H, W, C, m2, C_PAD)
    if NEIGH8:
        acc = tl.zeros_like(pc)
        for di in tl.static_range(-1, 2):
            for dj in tl.static_range(-1, 2):
                acc += _p_at(p_ptr, b, oh, ow, di, dj, H, W, C, m2, C_PAD)
        mean = acc / 9.0
    else:
        acc = pc
        acc += _p_at(p_ptr, b, oh, ow, -1, 0, H, W, C, m2, C_PAD)
        acc += _p_at(p_ptr, b, oh, ow, 1, 0, H, W, C, m2, C_PAD)
        acc += _p_at(p_ptr, b, oh, ow, 0, -1, H, W, C, m2, C_PAD)
        acc += _p_at(p_ptr, b, oh, ow, 0, 1, H, W, C, m2, C_PAD)
        mean = acc / 5.0
    return pc, mean


@triton.jit
def _boundary_tile(bnd_ptr, b, p, pm, H, W, C, C_PAD: tl.constexpr):
    bnd = tl.load(bnd_ptr + b * H * W + p, mask=pm, other=0) != 0
    return bnd, bnd[:, None] & (tl.arange(0, C_PAD) < C)[None, :]


@triton.jit
def _lcr_fwd_kernel(p_ptr, bnd_ptr, psum_ptr, pcnt_ptr, C, H, W,
                    KL: tl.constexpr, NEIGH8: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    bnd, m2 = _boundary_tile(bnd_ptr, b, p, pm, H, W, C, C_PAD)
    pc, mean = _centre_and_mean(p_ptr, b, oh, ow, m2, C, H, W, NEIGH8, C_PAD)
    if KL:
        ratio = tl.where(m2, pc / (mean + 1e-6) + 1e-6, 1.0)
        terms = pc * tl.log(ratio)
    else:
        terms = tl.abs(pc - mean)
    d = tl.sum(tl.where(m2, terms, 0.0), axis=1)
    total = tl.sum(tl.where(bnd, d, 0.0), axis=0)
    count = tl.sum(bnd.to(tl.int32), axis=0)
    slot = b * tl.num_programs(0) + pid
    tl.store(psum_ptr + slot, total.to(tl.float64))
    tl.store(pcnt_ptr + slot, count.to(tl.int64))


@triton.jit
def _lcr_terms(pc, mean, m2, KL: tl.constexpr):
    """d f / d p and d f / d mean of the per-class term f (|p - mean| or p log(p / (mean + 1e-6) + 1e-6))."""
    if KL:
        den = mean + 1e-6
        ratio = tl.where(m2, pc / den + 1e-6, 1.0)
        dfdp = tl.log(ratio) + pc / ratio / den
        dfdm = -(pc / ratio) * pc / (den * den)
    else:
        diff = pc - mean
        dfdp = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0)).to(pc.dtype)  # f32 literals
        dfdm = -dfdp
    return dfdp, dfdm


@triton.jit
def _lcr_gm_kernel(p_ptr, bnd_ptr, scale_ptr, g_ptr, C, H, W,
                   KL: tl.constexpr, NEIGH8: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    """G = dL/dmean / K (K = 9 or 5) at boundary pixels only (elsewhere G is left unwritten and never read)."""
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    bnd, m2 = _boundary_tile(bnd_ptr, b, p, pm, H, W, C, C_PAD)
    pc, mean = _centre_and_mean(p_ptr, b, oh, ow, m2, C, H, W, NEIGH8, C_PAD)
    dfdp, dfdm = _lcr_terms(pc, mean, m2, KL)
    if NEIGH8:
        dfdm = dfdm / 9.0
    else:
        dfdm = dfdm / 5.0
    ch = tl.arange(0, C_PAD)
    tl.store(g_ptr + _plane_offset(b, p, H * W, C)[:, None] + ch[None, :], dfdm * tl.load(scale_ptr), mask=m2)


@triton.jit
def _gm_from(g_ptr, bnd_ptr, b, oh, ow, di: tl.constexpr, dj: tl.constexpr, H, W, C, pm, C_PAD: tl.constexpr):
    """Sum of G over the boundary pixels s with clamp(s + (di, dj)) == q, for each pixel q of the block, and
    whether there is any.

    Per axis the preimage of q under s -> clamp(s + d) is {q - d if inside} plus {q if q + d is outside}.
    """
    cm = (tl.arange(0, C_PAD) < C)[None, :]
    ra = oh - di
    ra_ok = (ra >= 0) & (ra < H)
    rb_ok = (oh + di < 0) | (oh + di >= H)
    ca = ow - dj
    ca_ok = (ca >= 0) & (ca < W)
    cb_ok = (ow + dj < 0) | (ow + dj >= W)
    g, hit = _g_at(g_ptr, bnd_ptr, b, ra * W + ca, pm & ra_ok & ca_ok, H, W, C, cm, C_PAD)
    if dj != 0:
        g2, hit2 = _g_at(g_ptr, bnd_ptr, b, ra * W + ow, pm & ra_ok & cb_ok, H, W, C, cm, C_PAD)
        g += g2
        hit |= hit2
    if di != 0:
        g2, hit2 = _g_at(g_ptr, bnd_ptr, b, oh * W + ca, pm & rb_ok & ca_ok, H, W, C, cm, C_PAD)
        g += g2
        hit |= hit2
        if dj != 0:
            g2, hit2 = _g_at(g_ptr, bnd_ptr, b, oh * W + ow, pm & rb_ok & cb_ok, H, W, C, cm, C_PAD)
            g += g2
            hit |= hit2
    return g, hit


@triton.jit
def _g_at(g_ptr, bnd_ptr, b, src, ok, H, W, C, cm, C_PAD: tl.constexpr):
    """G at source pixels ``src`` where ``ok`` and the source is a boundary pixel (0 elsewhere), and that flag."""
    hit = ok & (tl.load(bnd_ptr + b * H * W + src, mask=ok, other=0) != 0)
    ch = tl.arange(0, C_PAD)
    g = tl.load(g_ptr + _plane_offset(b, src, H * W, C)[:, None] + ch[None, :], mask=hit[:, None] & cm, other=0.0)
    return g, hit


@triton.jit
def _lcr_dx_kernel(p_ptr, bnd_ptr, g_ptr, scale_ptr, dx_ptr, C, H, W, d_b, d_c, d_h, d_w,
                   KL: tl.constexpr, NEIGH8: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    """dx of every pixel: its own term where it is a boundary pixel, the G gathered from the boundary pixels whose
    neighbourhood holds it, then the softmax Jacobian. P is read only near boundaries; elsewhere dx = 0."""
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    bnd, m2 = _boundary_tile(bnd_ptr, b, p, pm, H, W, C, C_PAD)
    ch = tl.arange(0, C_PAD)
    cm = (ch < C)[None, :]
    if NEIGH8:
        dp, near = _gm_from(g_ptr, bnd_ptr, b, oh, ow, -1, -1, H, W, C, pm, C_PAD)
        for di in tl.static_range(-1, 2):
            for dj in tl.static_range(-1, 2):
                if di != -1 or dj != -1:
                    g, hit = _gm_from(g_ptr, bnd_ptr, b, oh, ow, di, dj, H, W, C, pm, C_PAD)
                    dp += g
                    near |= hit
    else:
        dp, near = _gm_from(g_ptr, bnd_ptr, b, oh, ow, 0, 0, H, W, C, pm, C_PAD)
        g, hit = _gm_from(g_ptr, bnd_ptr, b, oh, ow, -1, 0, H, W, C, pm, C_PAD)
        dp += g
        near |= hit
        g, hit = _gm_from(g_ptr, bnd_ptr, b, oh, ow, 1, 0, H, W, C, pm, C_PAD)
        dp += g
        near |= hit
        g, hit = _gm_from(g_ptr, bnd_ptr, b, oh, ow, 0, -1, H, W, C, pm, C_PAD)
        dp += g
        near |= hit
        g, hit = _gm_from(g_ptr, bnd_ptr, b, oh, ow, 0, 1, H, W, C, pm, C_PAD)
        dp += g
        near |= hit
    # the pixel's own term, where it is a boundary pixel (its neighbourhood mean recomputed from P)
    pc_b, mean = _centre_and_mean(p_ptr, b, oh, ow, m2, C, H, W, NEIGH8, C_PAD)
    dfdp, dfdm = _lcr_terms(pc_b, mean, m2, KL)
    dp += tl.where(m2, dfdp * tl.load(scale_ptr), 0.0)
    pc = _p_at(p_ptr, b, oh, ow, 0, 0, H, W, C, (near | bnd)[:, None] & cm, C_PAD)
    dot = tl.sum(dp * pc, axis=1)
    dx = pc * (dp - dot[:, None])
    doffs = b * d_b + ch.to(tl.int64)[None, :] * d_c + oh.to(tl.int64)[:, None] * d_h \
        + ow.to(tl.int64)[:, None] * d_w
    tl.store(dx_ptr + doffs, dx, mask=pm[:, None] & cm)


# ---------------------------------------------------------------------------------------------- launchers
def _blocks(logits: torch.Tensor, budget: int = 2048):
    """Grid, BLOCK_P, C_PAD and num_warps of the per-pixel kernels (LCR kernels use budget 1024)."""
    b, c, h, w = logits.shape
    c_pad = next_pow2(c)
    block_p, num_warps = tile_shape(c_pad, budget)
    return (triton.cdiv(h * w, block_p), b), block_p, c_pad, num_warps


def _empty(logits: torch.Tensor) -> bool:
    b, _, h, w = logits.shape
    return b == 0 or h * w == 0


def _finish(psum: torch.Tensor, pcnt: torch.Tensor, ct: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """loss = sum / max(count, 1) in the compute dtype (as the reference), and the count (int64, 0-d)."""
    count = pcnt.sum()
    total = psum.sum().to(ct)
    return total / count.clamp(min=1).to(ct), count


def _partials(logits: torch.Tensor, budget: int = 2048):
    grid, _, _, _ = _blocks(logits, budget)
    n = grid[0] * grid[1] if not _empty(logits) else 0
    return (torch.zeros((n,), dtype=torch.float64, device=logits.device),
            torch.zeros((n,), dtype=torch.int64, device=logits.device))


def _grad_scale(grad: torch.Tensor, count: torch.Tensor, ct: torch.dtype) -> torch.Tensor:
    return (grad.to(ct) / count.clamp(min=1).to(ct)).reshape(1)


# NL -------------------------------------------------------------------------------------------------------
@triton_op("ripu_triton::negative_learning_loss", mutates_args=())
def _nl_op(logits: torch.Tensor, threshold: float) -> Tuple[torch.Tensor, torch.Tensor]:
    ct = compute_dtype(logits.dtype)
    psum, pcnt = _partials(logits)
    if not _empty(logits):
        grid, block_p, c_pad, num_warps = _blocks(logits)
        thr = torch.full((1,), threshold, dtype=ct, device=logits.device)
        launch(_nl_fwd_kernel, grid, logits, thr, psum, pcnt, logits.shape[1], logits.shape[2], logits.shape[3],
               *logits.stride(), IS_F64=ct == torch.float64, BLOCK_P=block_p, C_PAD=c_pad, num_warps=num_warps)
    return _finish(psum, pcnt, ct)


@triton_op("ripu_triton::_negative_learning_loss_backward", mutates_args=())
def _nl_backward_op(grad: torch.Tensor, logits: torch.Tensor, count: torch.Tensor,
                    threshold: float) -> torch.Tensor:
    ct = compute_dtype(logits.dtype)
    dx = torch.empty_like(logits)
    if not _empty(logits):
        grid, block_p, c_pad, num_warps = _blocks(logits)
        thr = torch.full((1,), threshold, dtype=ct, device=logits.device)
        scale = _grad_scale(grad, count, ct)
        launch(_nl_bwd_kernel, grid, logits, thr, scale, dx, logits.shape[1], logits.shape[2], logits.shape[3],
               *logits.stride(), *dx.stride(), IS_F64=ct == torch.float64, BLOCK_P=block_p, C_PAD=c_pad,
               num_warps=num_warps)
    return dx


def _nl_setup(ctx, inputs, output):
    logits, threshold = inputs
    ctx.save_for_backward(logits, output[1])
    ctx.threshold = threshold


def _nl_backward(ctx, grad_loss, grad_count):
    logits, count = ctx.saved_tensors
    return torch.ops.ripu_triton._negative_learning_loss_backward(grad_loss, logits, count, ctx.threshold), None


register_autograd("ripu_triton::negative_learning_loss", _nl_backward, setup_context=_nl_setup)


def _no_double_backward(op: str):
    """Autograd of a backward op: differentiating the gradient again raises an error naming the public op."""
    def backward(ctx, *grads):
        raise RuntimeError(f"ripu::{op}: double backward (the gradient of the gradient) is not supported by the "
                           "triton backend; use backend='reference' for it")
    return backward


register_autograd("ripu_triton::_negative_learning_loss_backward", _no_double_backward("negative_learning_loss"))


# LCR ------------------------------------------------------------------------------------------------------
_LCR_BUDGET = 1024    # these kernels hold a neighbourhood of tiles: smaller tiles keep them out of local memory
_LCR_DX_BUDGET = 512  # the gradient gather holds up to 25 of them (256 in float64)


@triton_op("ripu_triton::local_consistency_loss", mutates_args=())
def _lcr_op(logits: torch.Tensor, labels: torch.Tensor, kind: str, neighbors: int,
            ignore_index: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, boundary count, P = softmax as (B, H, W, C), boundary map (B, H, W) uint8): P and the map are
    saved for the backward."""
    ct = compute_dtype(logits.dtype)
    b, c, h, w = logits.shape
    psum, pcnt = _partials(logits, _LCR_BUDGET)
    p = torch.empty((b, h, w, c), dtype=ct, device=logits.device)
    bnd = torch.empty((b, h, w), dtype=torch.uint8, device=logits.device)
    if not _empty(logits):
        grid, block_p, c_pad, num_warps = _blocks(logits)
        launch(_lcr_softmax_kernel, grid, logits, labels, p, bnd, c, h, w, *logits.stride(), *labels.stride(),
               ignore_index, NEIGH8=neighbors == 8, IS_F64=ct == torch.float64, BLOCK_P=block_p, C_PAD=c_pad,
               num_warps=num_warps)
        grid, block_p, c_pad, num_warps = _blocks(logits, _LCR_BUDGET)
        launch(_lcr_fwd_kernel, grid, p, bnd, psum, pcnt, c, h, w, KL=kind == "kl", NEIGH8=neighbors == 8,
               BLOCK_P=block_p, C_PAD=c_pad, num_warps=num_warps)
    loss, count = _finish(psum, pcnt, ct)
    return loss, count, p, bnd


@triton_op("ripu_triton::_local_consistency_loss_backward", mutates_args=())
def _lcr_backward_op(grad: torch.Tensor, p: torch.Tensor, bnd: torch.Tensor, count: torch.Tensor, kind: str,
                     neighbors: int, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    """d loss / d logits (B, C, H, W) in ``dtype`` (channels-last when the logits were), from the saved P."""
    b, h, w, c = p.shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    dx = torch.empty((b, c, h, w), dtype=dtype, device=p.device, memory_format=fmt)
    if b and h * w:
        grid, block_p, c_pad, num_warps = _blocks(dx, _LCR_BUDGET)
        scale = _grad_scale(grad, count, p.dtype)
        g = torch.empty_like(p)  # written and read at boundary pixels only
        launch(_lcr_gm_kernel, grid, p, bnd, scale, g, c, h, w, KL=kind == "kl", NEIGH8=neighbors == 8,
               BLOCK_P=block_p, C_PAD=c_pad, num_warps=num_warps)
        grid, block_p, c_pad, num_warps = _blocks(dx, _LCR_DX_BUDGET // (2 if p.dtype == torch.float64 else 1))
        launch(_lcr_dx_kernel, grid, p, bnd, g, scale, dx, c, h, w, *dx.stride(), KL=kind == "kl",
               NEIGH8=neighbors == 8, BLOCK_P=block_p, C_PAD=c_pad, num_warps=num_warps)
    return dx


def _lcr_setup(ctx, inputs, output):
    logits, labels, kind, neighbors, ignore_index = inputs
    _, count, p, bnd = output
    ctx.save_for_backward(p, bnd, count)
    ctx.args = (kind, neighbors, logits.dtype,
                logits.dim() == 4 and logits.is_contiguous(memory_format=torch.channels_last)
                and not logits.is_contiguous())


def _lcr_backward(ctx, grad_loss, grad_count, grad_p, grad_bnd):
    p, bnd, count = ctx.saved_tensors
    dx = torch.ops.ripu_triton._local_consistency_loss_backward(grad_loss, p, bnd, count, *ctx.args)
    return dx, None, None, None, None


register_autograd("ripu_triton::local_consistency_loss", _lcr_backward, setup_context=_lcr_setup)
register_autograd("ripu_triton::_local_consistency_loss_backward", _no_double_backward("local_consistency_loss"))


# ------------------------------------------------------------------------------------- backend functions
def negative_learning_loss(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    return torch.ops.ripu_triton.negative_learning_loss(logits, float(threshold))[0]


def local_consistency_loss(logits, labels, kind, neighbors, ignore_index) -> torch.Tensor:
    return torch.ops.ripu_triton.local_consistency_loss(logits, labels, str(kind), int(neighbors),
                                                        int(ignore_index))[0]
