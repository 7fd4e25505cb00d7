"""Triton kernels for the two losses, forward and backward (ops ``ripu_triton::*``).

Negative learning (NL): one kernel per direction, a [BLOCK_P, C_PAD] tile of logits per program read with
the caller's strides. The forward writes one partial sum and one partial mask count per program (reduced in
float64 by torch, deterministic; no atomics); the forward op also returns the mask count, which the backward
needs for its ``1 / count`` factor.

Local consistency (LCR): the softmax is written once to a (B, H, W, C) buffer ``P``; the forward reads each
pixel's (3x3 or cross) neighbourhood of ``P`` with replicate clamping, the label Laplacian with zero padding,
and writes partial sums as NL does. The backward writes per pixel the gradient w.r.t. its own ``p``
(``Gp``) and w.r.t. its neighbourhood mean (``Gm``, already divided by the neighbourhood size), then a
gather kernel sums into every pixel the ``Gm`` of the pixels whose (clamped) neighbourhood contains it and
applies the softmax Jacobian: ``dx = p * (dp - sum_c dp * p)``.
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
    """Softmax over classes of a [BLOCK_P, C_PAD] tile of logits read in place; padded lanes are 0."""
    ch = tl.arange(0, C_PAD)
    cm = ch < C
    m2 = pm[:, None] & cm[None, :]
    offs = b * s_b + ch.to(tl.int64)[None, :] * s_c + oh.to(tl.int64)[:, None] * s_h \
        + ow.to(tl.int64)[:, None] * s_w
    x = _to_ct(tl.load(x_ptr + offs, mask=m2, other=0.0), IS_F64)
    x = tl.where(cm[None, :], x, float("-inf"))
    mx = tl.max(x, axis=1)
    ex = tl.exp(x - mx[:, None])
    return ex / tl.sum(ex, axis=1)[:, None], m2


# --------------------------------------------------------------------------------------- negative learning
@triton.jit
def _nl_fwd_kernel(x_ptr, thr_ptr, psum_ptr, pcnt_ptr, C, H, W, s_b, s_c, s_h, s_w,
                   IS_F64: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    prob, m2 = _softmax_tile(x_ptr, b, oh, ow, pm, C, s_b, s_c, s_h, s_w, IS_F64, C_PAD)
    mask = m2 & (prob < tl.load(thr_ptr))
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
    prob, m2 = _softmax_tile(x_ptr, b, oh, ow, pm, C, s_b, s_c, s_h, s_w, IS_F64, C_PAD)
    mask = m2 & (prob < tl.load(thr_ptr))
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
def _softmax_kernel(x_ptr, p_ptr, C, H, W, s_b, s_c, s_h, s_w,
                    IS_F64: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    prob, m2 = _softmax_tile(x_ptr, b, oh, ow, pm, C, s_b, s_c, s_h, s_w, IS_F64, C_PAD)
    ch = tl.arange(0, C_PAD)
    tl.store(p_ptr + (b * H * W + p)[:, None] * C + ch[None, :], prob, mask=m2)


@triton.jit
def _p_at(p_ptr, b, oh, ow, di: tl.constexpr, dj: tl.constexpr, H, W, C, m2, C_PAD: tl.constexpr):
    """P at the replicate-clamped neighbour (oh + di, ow + dj)."""
    r = tl.minimum(tl.maximum(oh + di, 0), H - 1)
    c = tl.minimum(tl.maximum(ow + dj, 0), W - 1)
    ch = tl.arange(0, C_PAD)
    return tl.load(p_ptr + (b * H * W + r * W + c)[:, None] * C + ch[None, :], mask=m2, other=0.0)


@triton.jit
def _label_at(lab_ptr, b, oh, ow, di: tl.constexpr, dj: tl.constexpr, H, W, l_b, l_h, l_w, pm):
    """Label at (oh + di, ow + dj) as int64, 0 outside the image (zero padding of the Laplacian)."""
    r = oh + di
    c = ow + dj
    ok = pm & (r >= 0) & (r < H) & (c >= 0) & (c < W)
    return tl.load(lab_ptr + b * l_b + r.to(tl.int64) * l_h + c.to(tl.int64) * l_w, mask=ok, other=0).to(tl.int64)


@triton.jit
def _lcr_pixel(p_ptr, lab_ptr, b, oh, ow, pm, C, H, W, l_b, l_h, l_w, ignore,
               NEIGH8: tl.constexpr, C_PAD: tl.constexpr):
    """Centre softmax ``pc``, neighbourhood mean, boundary flag and tile mask of a block of pixels.

    Offsets are visited in the reference's order: row-major 3x3 (8), or centre, up, down, left, right (4).
    """
    ch = tl.arange(0, C_PAD)
    m2 = pm[:, None] & (ch < C)[None, :]
    pc = _p_at(p_ptr, b, oh, ow, 0, 0, H, W, C, m2, C_PAD)
    yc = _label_at(lab_ptr, b, oh, ow, 0, 0, H, W, l_b, l_h, l_w, pm)
    if NEIGH8:
        acc = tl.zeros_like(pc)
        lap = 8 * yc
        for di in tl.static_range(-1, 2):
            for dj in tl.static_range(-1, 2):
                acc += _p_at(p_ptr, b, oh, ow, di, dj, H, W, C, m2, C_PAD)
                if di != 0 or dj != 0:
                    lap -= _label_at(lab_ptr, b, oh, ow, di, dj, H, W, l_b, l_h, l_w, pm)
        mean = acc / 9.0
    else:
        acc = pc
        acc += _p_at(p_ptr, b, oh, ow, -1, 0, H, W, C, m2, C_PAD)
        acc += _p_at(p_ptr, b, oh, ow, 1, 0, H, W, C, m2, C_PAD)
        acc += _p_at(p_ptr, b, oh, ow, 0, -1, H, W, C, m2, C_PAD)
        acc += _p_at(p_ptr, b, oh, ow, 0, 1, H, W, C, m2, C_PAD)
        lap = 4 * yc
        lap -= _label_at(lab_ptr, b, oh, ow, -1, 0, H, W, l_b, l_h, l_w, pm)
        lap -= _label_at(lab_ptr, b, oh, ow, 1, 0, H, W, l_b, l_h, l_w, pm)
        lap -= _label_at(lab_ptr, b, oh, ow, 0, -1, H, W, l_b, l_h, l_w, pm)
        lap -= _label_at(lab_ptr, b, oh, ow, 0, 1, H, W, l_b, l_h, l_w, pm)
        mean = acc / 5.0
    bnd = pm & (lap != 0) & (yc != ignore)
    return pc, mean, bnd, m2


@triton.jit
def _lcr_fwd_kernel(p_ptr, lab_ptr, psum_ptr, pcnt_ptr, C, H, W, l_b, l_h, l_w, ignore,
                    KL: tl.constexpr, NEIGH8: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    pc, mean, bnd, m2 = _lcr_pixel(p_ptr, lab_ptr, b, oh, ow, pm, C, H, W, l_b, l_h, l_w, ignore, NEIGH8, C_PAD)
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
def _lcr_grad_kernel(p_ptr, lab_ptr, scale_ptr, gp_ptr, gm_ptr, C, H, W, l_b, l_h, l_w, ignore,
                     KL: tl.constexpr, NEIGH8: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    """Gp = dL/dp through the pixel's own term; Gm = dL/dmean / K (K = 9 or 5), zero off the boundary."""
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    pc, mean, bnd, m2 = _lcr_pixel(p_ptr, lab_ptr, b, oh, ow, pm, C, H, W, l_b, l_h, l_w, ignore, NEIGH8, C_PAD)
    if KL:
        den = mean + 1e-6
        ratio = tl.where(m2, pc / den + 1e-6, 1.0)
        dfdp = tl.log(ratio) + pc / ratio / den
        dfdm = -(pc / ratio) * pc / (den * den)
    else:
        diff = pc - mean
        dfdp = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0)).to(pc.dtype)  # f32 literals
        dfdm = -dfdp
    keep = bnd[:, None] & m2
    scale = tl.load(scale_ptr)
    if NEIGH8:
        dfdm = dfdm / 9.0
    else:
        dfdm = dfdm / 5.0
    ch = tl.arange(0, C_PAD)
    offs = (b * H * W + p)[:, None] * C + ch[None, :]
    tl.store(gp_ptr + offs, tl.where(keep, dfdp * scale, 0.0), mask=m2)
    tl.store(gm_ptr + offs, tl.where(keep, dfdm * scale, 0.0), mask=m2)


@triton.jit
def _gm_from(gm_ptr, b, oh, ow, di: tl.constexpr, dj: tl.constexpr, H, W, C, pm, C_PAD: tl.constexpr):
    """Sum of Gm over the pixels s with clamp(s + (di, dj)) == q for each pixel q of the block.

    Per axis the preimage of q under s -> clamp(s + d) is {q - d if inside} plus {q if q + d is outside}.
    """
    ch = tl.arange(0, C_PAD)
    cm = (ch < C)[None, :]
    ra = oh - di
    ra_ok = (ra >= 0) & (ra < H)
    rb_ok = (oh + di < 0) | (oh + di >= H)
    ca = ow - dj
    ca_ok = (ca >= 0) & (ca < W)
    cb_ok = (ow + dj < 0) | (ow + dj >= W)
    base = gm_ptr + b * H * W * C + ch[None, :]
    g = tl.load(base + (ra * W + ca)[:, None] * C, mask=(pm & ra_ok & ca_ok)[:, None] & cm, other=0.0)
    if dj != 0:
        g += tl.load(base + (ra * W + ow)[:, None] * C, mask=(pm & ra_ok & cb_ok)[:, None] & cm, other=0.0)
    if di != 0:
        g += tl.load(base + (oh * W + ca)[:, None] * C, mask=(pm & rb_ok & ca_ok)[:, None] & cm, other=0.0)
        if dj != 0:
            g += tl.load(base + (oh * W + ow)[:, None] * C, mask=(pm & rb_ok & cb_ok)[:, None] & cm, other=0.0)
    return g


@triton.jit
def _lcr_dx_kernel(p_ptr, gp_ptr, gm_ptr, dx_ptr, C, H, W, d_b, d_c, d_h, d_w,
                   NEIGH8: tl.constexpr, BLOCK_P: tl.constexpr, C_PAD: tl.constexpr):
    pid, b, p, pm, oh, ow = _pixels(BLOCK_P, H, W)
    ch = tl.arange(0, C_PAD)
    m2 = pm[:, None] & (ch < C)[None, :]
    offs = (b * H * W + p)[:, None] * C + ch[None, :]
    pc = tl.load(p_ptr + offs, mask=m2, other=0.0)
    dp = tl.load(gp_ptr + offs, mask=m2, other=0.0)
    if NEIGH8:
        for di in tl.static_range(-1, 2):
            for dj in tl.static_range(-1, 2):
                dp += _gm_from(gm_ptr, b, oh, ow, di, dj, H, W, C, pm, C_PAD)
    else:
        dp += _gm_from(gm_ptr, b, oh, ow, 0, 0, H, W, C, pm, C_PAD)
        dp += _gm_from(gm_ptr, b, oh, ow, -1, 0, H, W, C, pm, C_PAD)
        dp += _gm_from(gm_ptr, b, oh, ow, 1, 0, H, W, C, pm, C_PAD)
        dp += _gm_from(gm_ptr, b, oh, ow, 0, -1, H, W, C, pm, C_PAD)
        dp += _gm_from(gm_ptr, b, oh, ow, 0, 1, H, W, C, pm, C_PAD)
    dot = tl.sum(dp * pc, axis=1)
    dx = pc * (dp - dot[:, None])
    doffs = b * d_b + ch.to(tl.int64)[None, :] * d_c + oh.to(tl.int64)[:, None] * d_h \
        + ow.to(tl.int64)[:, None] * d_w
    tl.store(dx_ptr + doffs, dx, mask=m2)


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


# LCR ------------------------------------------------------------------------------------------------------
_LCR_BUDGET = 1024  # these kernels hold a neighbourhood of tiles: smaller tiles keep them out of local memory
def _softmax_buffer(logits: torch.Tensor) -> torch.Tensor:
    b, c, h, w = logits.shape
    ct = compute_dtype(logits.dtype)
    p = torch.empty((b, h, w, c), dtype=ct, device=logits.device)
    grid, block_p, c_pad, num_warps = _blocks(logits)
    launch(_softmax_kernel, grid, logits, p, c, h, w, *logits.stride(), IS_F64=ct == torch.float64,
           BLOCK_P=block_p, C_PAD=c_pad, num_warps=num_warps)
    return p


@triton_op("ripu_triton::local_consistency_loss", mutates_args=())
def _lcr_op(logits: torch.Tensor, labels: torch.Tensor, kind: str, neighbors: int,
            ignore_index: int) -> Tuple[torch.Tensor, torch.Tensor]:
    ct = compute_dtype(logits.dtype)
    psum, pcnt = _partials(logits, _LCR_BUDGET)
    if not _empty(logits):
        b, c, h, w = logits.shape
        grid, block_p, c_pad, num_warps = _blocks(logits, _LCR_BUDGET)
        p = _softmax_buffer(logits)
        launch(_lcr_fwd_kernel, grid, p, labels, psum, pcnt, c, h, w, *labels.stride(), ignore_index,
               KL=kind == "kl", NEIGH8=neighbors == 8, BLOCK_P=block_p, C_PAD=c_pad, num_warps=num_warps)
    return _finish(psum, pcnt, ct)


@triton_op("ripu_triton::_local_consistency_loss_backward", mutates_args=())
def _lcr_backward_op(grad: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, count: torch.Tensor,
                     kind: str, neighbors: int, ignore_index: int) -> torch.Tensor:
    ct = compute_dtype(logits.dtype)
    dx = torch.empty_like(logits)
    if not _empty(logits):
        b, c, h, w = logits.shape
        grid, block_p, c_pad, num_warps = _blocks(logits, _LCR_BUDGET)
        p = _softmax_buffer(logits)
        gp = torch.empty_like(p)
        gm = torch.empty_like(p)
        scale = _grad_scale(grad, count, ct)
        launch(_lcr_grad_kernel, grid, p, labels, scale, gp, gm, c, h, w, *labels.stride(), ignore_index,
               KL=kind == "kl", NEIGH8=neighbors == 8, BLOCK_P=block_p, C_PAD=c_pad, num_warps=num_warps)
        launch(_lcr_dx_kernel, grid, p, gp, gm, dx, c, h, w, *dx.stride(),
               NEIGH8=neighbors == 8, BLOCK_P=block_p, C_PAD=c_pad, num_warps=num_warps)
    return dx


def _lcr_setup(ctx, inputs, output):
    logits, labels, kind, neighbors, ignore_index = inputs
    ctx.save_for_backward(logits, labels, output[1])
    ctx.args = (kind, neighbors, ignore_index)


def _lcr_backward(ctx, grad_loss, grad_count):
    logits, labels, count = ctx.saved_tensors
    dx = torch.ops.ripu_triton._local_consistency_loss_backward(grad_loss, logits, labels, count, *ctx.args)
    return dx, None, None, None, None


register_autograd("ripu_triton::local_consistency_loss", _lcr_backward, setup_context=_lcr_setup)


# ------------------------------------------------------------------------------------- backend functions
def negative_learning_loss(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    return torch.ops.ripu_triton.negative_learning_loss(logits, float(threshold))[0]


def local_consistency_loss(logits, labels, kind, neighbors, ignore_index) -> torch.Tensor:
    return torch.ops.ripu_triton.local_consistency_loss(logits, labels, str(kind), int(neighbors),
                                                        int(ignore_index))[0]
