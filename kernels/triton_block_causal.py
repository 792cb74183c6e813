"""Triton block-causal attention, forward and backward (FlashAttention-2 style).

The layout arrives as per-token intervals (kernels/layout.py): query i sees keys
[kv_lo[i], kv_hi[i]), key j is seen by queries [q_lo[j], q_hi[j]). For one query tile the keys
any row sees span [min kv_lo, max kv_hi): only those key tiles are visited, so fully masked
tiles cost nothing. Tiles inside [max kv_lo, min kv_hi) are visible to every row and run in a
separate loop with no mask and no bounds checks; only the few edge tiles pay for the mask.
With one frame per chunk and a query tile inside one frame, every visited tile is full.

The backward pass has two kernels: one per key tile accumulating dK, dV over the query tiles
that see it (found the same way from q_lo, q_hi), one per query tile accumulating dQ.
A query that sees nothing (padding after packed clips) outputs zeros and has lse = +inf, which
makes its probabilities, and so every gradient through it, exactly zero.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from kernels.layout import intervals
from kernels.triton_common import (INTERPRETER_CONFIG, LOG2E, M_INIT, TileConfig, check_triton_inputs, dot_precision,
                                   interpreting, last_dim_contiguous, softmax_scale, softmax_tile)


@triton.jit
def _tile_ranges(lo, hi, active, L, BLOCK: tl.constexpr):
    """From per-row intervals [lo, hi) -> (first tile start, first full tile, end of full tiles, end)."""
    begin = tl.min(tl.where(active, lo, L))
    end = tl.max(tl.where(active, hi, 0))
    # a row that is not active (padding, past L) rules out full tiles in this tile row
    full_lo = tl.max(tl.where(active, lo, L))
    full_hi = tl.min(tl.where(active, hi, 0))
    start = (begin // BLOCK) * BLOCK
    full_start = tl.minimum(tl.maximum(((full_lo + BLOCK - 1) // BLOCK) * BLOCK, start), end)
    full_end = tl.maximum((full_hi // BLOCK) * BLOCK, full_start)
    return start, full_start, full_end, end


@triton.jit
def _fwd_range(acc, m_i, l_i, q, k_base, v_base, stride_kl, stride_vl, lo, hi, n_begin, n_end, L, qk_scale,
               HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, PREC: tl.constexpr):
    dims = tl.arange(0, HEAD_DIM)
    for n0 in range(n_begin, n_end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        if MASKED:
            col_ok = cols < L
            k = tl.load(k_base + cols[:, None] * stride_kl + dims[None, :], mask=col_ok[:, None], other=0.0)
            v = tl.load(v_base + cols[:, None] * stride_vl + dims[None, :], mask=col_ok[:, None], other=0.0)
            visible = (cols[None, :] >= lo[:, None]) & (cols[None, :] < hi[:, None])
            acc, m_i, l_i = softmax_tile(acc, m_i, l_i, q, k, v, qk_scale, visible, True, PREC)
        else:
            k = tl.load(k_base + cols[:, None] * stride_kl + dims[None, :])
            v = tl.load(v_base + cols[:, None] * stride_vl + dims[None, :])
            acc, m_i, l_i = softmax_tile(acc, m_i, l_i, q, k, v, qk_scale, 0, False, PREC)
    return acc, m_i, l_i


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, IV, qk_scale,
                sqb, sqh, sql, skb, skh, skl, svb, svh, svl, sob, soh, sol,
                H, L,
                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, HEAD_DIM)
    row_ok = rows < L
    lo = tl.load(IV + rows, mask=row_ok, other=0)  # intervals row 0: kv_lo
    hi = tl.load(IV + L + rows, mask=row_ok, other=0)  # row 1: kv_hi
    active = lo < hi
    start, full_start, full_end, end = _tile_ranges(lo, hi, active, L, BLOCK_N)

    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sql + dims[None, :], mask=row_ok[:, None], other=0.0)
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], M_INIT, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc, m_i, l_i = _fwd_range(acc, m_i, l_i, q, k_base, v_base, skl, svl, lo, hi, start, full_start, L,
                               qk_scale, HEAD_DIM, BLOCK_N, True, PREC)
    acc, m_i, l_i = _fwd_range(acc, m_i, l_i, q, k_base, v_base, skl, svl, lo, hi, full_start, full_end, L,
                               qk_scale, HEAD_DIM, BLOCK_N, False, PREC)
    acc, m_i, l_i = _fwd_range(acc, m_i, l_i, q, k_base, v_base, skl, svl, lo, hi, full_end, end, L,
                               qk_scale, HEAD_DIM, BLOCK_N, True, PREC)

    l_safe = tl.where(active, l_i, 1.0)
    out = tl.where(active[:, None], acc / l_safe[:, None], 0.0)
    lse = tl.where(active, m_i + tl.log2(l_safe), float("inf"))
    tl.store(O + b * sob + h * soh + rows[:, None] * sol + dims[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None])
    tl.store(LSE + bh * L + rows, lse, mask=row_ok)


@triton.jit
def _dkdv_range(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_l, qlo, qhi, m_begin, m_end, L,
                qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, MASKED: tl.constexpr,
                PREC: tl.constexpr):
    dims = tl.arange(0, HEAD_DIM)
    for m0 in range(m_begin, m_end, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        if MASKED:
            row_ok = rows < L
            q = tl.load(q_base + rows[:, None] * stride_l + dims[None, :], mask=row_ok[:, None], other=0.0)
            do = tl.load(do_base + rows[:, None] * stride_l + dims[None, :], mask=row_ok[:, None], other=0.0)
            lse = tl.load(lse_base + rows, mask=row_ok, other=float("inf"))
            delta = tl.load(delta_base + rows, mask=row_ok, other=0.0)
        else:
            q = tl.load(q_base + rows[:, None] * stride_l + dims[None, :])
            do = tl.load(do_base + rows[:, None] * stride_l + dims[None, :])
            lse = tl.load(lse_base + rows)
            delta = tl.load(delta_base + rows)
        p_t = tl.exp2(tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale - lse[None, :])  # [BN, BM]
        if MASKED:
            p_t = tl.where((rows[None, :] >= qlo[:, None]) & (rows[None, :] < qhi[:, None]), p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PREC)  # [BN, BM]
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PREC)
    return dk, dv


@triton.jit
def _dkdv_kernel(Q, K, V, DO, DK, DV, LSE, DELTA, IV, qk_scale, sm_scale,
                 sb, sh, sl, H, L,
                 HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    """One key tile; every tensor here is contiguous [B, H, L, D] (strides sb, sh, sl)."""
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    base = b * sb + h * sh
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, HEAD_DIM)
    col_ok = cols < L
    qlo = tl.load(IV + 2 * L + cols, mask=col_ok, other=0)  # intervals row 2: q_lo
    qhi = tl.load(IV + 3 * L + cols, mask=col_ok, other=0)  # row 3: q_hi
    active = qlo < qhi
    start, full_start, full_end, end = _tile_ranges(qlo, qhi, active, L, BLOCK_M)

    k = tl.load(K + base + cols[:, None] * sl + dims[None, :], mask=col_ok[:, None], other=0.0)
    v = tl.load(V + base + cols[:, None] * sl + dims[None, :], mask=col_ok[:, None], other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    q_base = Q + base
    do_base = DO + base
    lse_base = LSE + bh * L
    delta_base = DELTA + bh * L
    dk, dv = _dkdv_range(dk, dv, k, v, q_base, do_base, lse_base, delta_base, sl, qlo, qhi, start, full_start, L,
                         qk_scale, HEAD_DIM, BLOCK_M, True, PREC)
    dk, dv = _dkdv_range(dk, dv, k, v, q_base, do_base, lse_base, delta_base, sl, qlo, qhi, full_start, full_end,
                         L, qk_scale, HEAD_DIM, BLOCK_M, False, PREC)
    dk, dv = _dkdv_range(dk, dv, k, v, q_base, do_base, lse_base, delta_base, sl, qlo, qhi, full_end, end, L,
                         qk_scale, HEAD_DIM, BLOCK_M, True, PREC)
    out = base + cols[:, None] * sl + dims[None, :]
    tl.store(DK + out, (dk * sm_scale).to(DK.dtype.element_ty), mask=col_ok[:, None])
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=col_ok[:, None])


@triton.jit
def _dq_range(dq, q, do, lse, delta, k_base, v_base, stride_l, lo, hi, n_begin, n_end, L, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, PREC: tl.constexpr):
    dims = tl.arange(0, HEAD_DIM)
    for n0 in range(n_begin, n_end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        if MASKED:
            col_ok = cols < L
            k = tl.load(k_base + cols[:, None] * stride_l + dims[None, :], mask=col_ok[:, None], other=0.0)
            v = tl.load(v_base + cols[:, None] * stride_l + dims[None, :], mask=col_ok[:, None], other=0.0)
        else:
            k = tl.load(k_base + cols[:, None] * stride_l + dims[None, :])
            v = tl.load(v_base + cols[:, None] * stride_l + dims[None, :])
        p = tl.exp2(tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale - lse[:, None])  # [BM, BN]
        if MASKED:
            p = tl.where((cols[None, :] >= lo[:, None]) & (cols[None, :] < hi[:, None]), p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)  # [BM, BN]
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    return dq


@triton.jit
def _dq_kernel(Q, K, V, DO, DQ, LSE, DELTA, IV, qk_scale, sm_scale,
               sb, sh, sl, H, L,
               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    """One query tile; every tensor here is contiguous [B, H, L, D] (strides sb, sh, sl)."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    base = b * sb + h * sh
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, HEAD_DIM)
    row_ok = rows < L
    lo = tl.load(IV + rows, mask=row_ok, other=0)
    hi = tl.load(IV + L + rows, mask=row_ok, other=0)
    active = lo < hi
    start, full_start, full_end, end = _tile_ranges(lo, hi, active, L, BLOCK_N)

    offs = base + rows[:, None] * sl + dims[None, :]
    q = tl.load(Q + offs, mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + offs, mask=row_ok[:, None], other=0.0)
    lse = tl.load(LSE + bh * L + rows, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + bh * L + rows, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    k_base = K + base
    v_base = V + base
    dq = _dq_range(dq, q, do, lse, delta, k_base, v_base, sl, lo, hi, start, full_start, L, qk_scale,
                   HEAD_DIM, BLOCK_N, True, PREC)
    dq = _dq_range(dq, q, do, lse, delta, k_base, v_base, sl, lo, hi, full_start, full_end, L, qk_scale,
                   HEAD_DIM, BLOCK_N, False, PREC)
    dq = _dq_range(dq, q, do, lse, delta, k_base, v_base, sl, lo, hi, full_end, end, L, qk_scale,
                   HEAD_DIM, BLOCK_N, True, PREC)
    tl.store(DQ + offs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=row_ok[:, None])


def forward_config(head_dim: int, dtype: torch.dtype) -> TileConfig:
    if interpreting():
        return INTERPRETER_CONFIG
    if dtype == torch.float32:
        return TileConfig(64, 32, 4, 2)
    return TileConfig(128, 64, 8 if head_dim == 128 else 4, 3)


def backward_configs(head_dim: int, dtype: torch.dtype) -> tuple[TileConfig, TileConfig]:
    """(dK/dV kernel: query rows x key columns, dQ kernel: query rows x key columns)."""
    if interpreting():
        return INTERPRETER_CONFIG, INTERPRETER_CONFIG
    if dtype == torch.float32:
        return TileConfig(32, 64, 4, 2), TileConfig(64, 32, 4, 2)
    stages = 2 if head_dim == 128 else 3
    return TileConfig(32, 128, 8 if head_dim == 128 else 4, stages), TileConfig(128, 32, 8 if head_dim == 128 else 4, stages)


def block_causal_forward(q: Tensor, k: Tensor, v: Tensor, iv: Tensor,
                         config: TileConfig | None = None) -> tuple[Tensor, Tensor]:
    """-> (out [B, H, L, D] in q's dtype, lse [B, H, L] float32 in log2 units)."""
    B, H, L, D = q.shape
    cfg = config or forward_config(D, q.dtype)
    out = torch.empty((B, H, L, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B, H, L), dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(L, cfg.block_m), B * H)
    _fwd_kernel[grid](q, k, v, out, lse, iv, softmax_scale(D) * LOG2E,
                      *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3], H, L,
                      HEAD_DIM=D, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, PREC=dot_precision(q.dtype),
                      num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out, lse


def block_causal_backward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, dout: Tensor, iv: Tensor,
                          configs: tuple[TileConfig, TileConfig] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    B, H, L, D = q.shape
    q, k, v, dout = (x.contiguous() for x in (q, k, v, dout))
    delta = (out.float() * dout.float()).sum(-1)  # [B, H, L]: rowsum(dO * O)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    kv_cfg, q_cfg = configs or backward_configs(D, q.dtype)
    scale = softmax_scale(D)
    common = dict(HEAD_DIM=D, PREC=dot_precision(q.dtype))
    _dkdv_kernel[(triton.cdiv(L, kv_cfg.block_n), B * H)](
        q, k, v, dout, dk, dv, lse, delta, iv, scale * LOG2E, scale, *q.stride()[:3], H, L,
        BLOCK_M=kv_cfg.block_m, BLOCK_N=kv_cfg.block_n, num_warps=kv_cfg.num_warps,
        num_stages=kv_cfg.num_stages, **common)
    _dq_kernel[(triton.cdiv(L, q_cfg.block_m), B * H)](
        q, k, v, dout, dq, lse, delta, iv, scale * LOG2E, scale, *q.stride()[:3], H, L,
        BLOCK_M=q_cfg.block_m, BLOCK_N=q_cfg.block_n, num_warps=q_cfg.num_warps,
        num_stages=q_cfg.num_stages, **common)
    return dq, dk, dv


class _BlockCausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, iv: Tensor) -> Tensor:  # type: ignore[override]
        out, lse = block_causal_forward(q, k, v, iv)
        ctx.save_for_backward(q, k, v, out, lse, iv)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:  # type: ignore[override]
        q, k, v, out, lse, iv = ctx.saved_tensors
        return (*block_causal_backward(q, k, v, out, lse, dout, iv), None)


def triton_block_causal(q: Tensor, k: Tensor, v: Tensor, key: tuple) -> Tensor:
    """Block-causal attention for a validated layout `key` (kernels.layout.layout_key)."""
    check_triton_inputs(q, k, v)
    q, k, v = (last_dim_contiguous(x) for x in (q, k, v))
    return _BlockCausalAttention.apply(q, k, v, intervals(key, q.device))
