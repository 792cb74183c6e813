"""Triton streaming attention, forward: a chunk of new queries against a ring-buffer KV cache
plus the chunk itself, read in place (no concatenation, no gather).

The valid slots of batch row b are (start_b + i) % S for i < len_b: at most two contiguous
physical runs, [start, min(start + len, S)) and [0, start + len - S). Each run is read in tiles
starting at the run's first slot; whole tiles inside the run need no mask, only the run's last
partial tile is masked. The new chunk is one more run. Every query sees at least the new chunk.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from kernels.layout import cache_bounds
from kernels.triton_common import (INTERPRETER_CONFIG, LOG2E, M_INIT, TileConfig, check_triton_inputs, dot_precision,
                                   interpreting, last_dim_contiguous, softmax_scale, softmax_tile)


@triton.jit
def _run(acc, m_i, l_i, q, k_base, v_base, stride_kl, stride_vl, run_start, run_end, qk_scale,
         HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    """Attend to the physical slots [run_start, run_end) (empty when run_end <= run_start)."""
    dims = tl.arange(0, HEAD_DIM)
    run_end = tl.maximum(run_end, run_start)
    full_end = run_start + ((run_end - run_start) // BLOCK_N) * BLOCK_N
    for n0 in range(run_start, full_end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        k = tl.load(k_base + cols[:, None] * stride_kl + dims[None, :])
        v = tl.load(v_base + cols[:, None] * stride_vl + dims[None, :])
        acc, m_i, l_i = softmax_tile(acc, m_i, l_i, q, k, v, qk_scale, 0, False, PREC)
    for n0 in range(full_end, run_end, BLOCK_N):  # at most one partial tile
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < run_end
        k = tl.load(k_base + cols[:, None] * stride_kl + dims[None, :], mask=col_ok[:, None], other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_vl + dims[None, :], mask=col_ok[:, None], other=0.0)
        visible = tl.broadcast_to(col_ok[None, :], [q.shape[0], BLOCK_N])
        acc, m_i, l_i = softmax_tile(acc, m_i, l_i, q, k, v, qk_scale, visible, True, PREC)
    return acc, m_i, l_i


@triton.jit
def _cached_fwd_kernel(Q, KN, VN, KC, VC, O, START, LEN, qk_scale,
                       sqb, sqh, sql, sknb, sknh, sknl, svnb, svnh, svnl,
                       skcb, skch, skcl, svcb, svch, svcl, sob, soh, sol,
                       H, LC, S,
                       HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, HEAD_DIM)
    row_ok = rows < LC
    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sql + dims[None, :], mask=row_ok[:, None], other=0.0)
    start = tl.load(START + b)
    length = tl.load(LEN + b)

    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], M_INIT, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    kc = KC + b * skcb + h * skch
    vc = VC + b * svcb + h * svch
    acc, m_i, l_i = _run(acc, m_i, l_i, q, kc, vc, skcl, svcl, start, tl.minimum(start + length, S), qk_scale,
                         HEAD_DIM, BLOCK_N, PREC)
    acc, m_i, l_i = _run(acc, m_i, l_i, q, kc, vc, skcl, svcl, 0, start + length - S, qk_scale,
                         HEAD_DIM, BLOCK_N, PREC)  # the wrapped-around part of the ring
    acc, m_i, l_i = _run(acc, m_i, l_i, q, KN + b * sknb + h * sknh, VN + b * svnb + h * svnh, sknl, svnl, 0, LC,
                         qk_scale, HEAD_DIM, BLOCK_N, PREC)
    out = acc / l_i[:, None]
    tl.store(O + b * sob + h * soh + rows[:, None] * sol + dims[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None])


def cached_config(head_dim: int, dtype: torch.dtype) -> TileConfig:
    if interpreting():
        return INTERPRETER_CONFIG
    if dtype == torch.float32:
        return TileConfig(64, 32, 4, 2)
    # 64-row query tiles: a chunk has few queries, so smaller tiles keep more SMs busy
    return TileConfig(64, 64, 8 if head_dim == 128 else 4, 3)


def triton_cached(q: Tensor, k_new: Tensor, v_new: Tensor, k_cache: Tensor, v_cache: Tensor,
                  cache_start: int | Tensor, cache_len: int | Tensor, config: TileConfig | None = None) -> Tensor:
    """Forward only: -> [B, H, Lc, D] in q's dtype."""
    check_triton_inputs(q, k_new, v_new, k_cache, v_cache)
    B, H, Lc, D = q.shape
    S = k_cache.shape[2]
    start, length = cache_bounds(cache_start, cache_len, B, S, q.device)
    q, k_new, v_new, k_cache, v_cache = (last_dim_contiguous(x) for x in (q, k_new, v_new, k_cache, v_cache))
    cfg = config or cached_config(D, q.dtype)
    out = torch.empty((B, H, Lc, D), dtype=q.dtype, device=q.device)
    grid = (triton.cdiv(Lc, cfg.block_m), B * H)
    _cached_fwd_kernel[grid](q, k_new, v_new, k_cache, v_cache, out, start, length, softmax_scale(D) * LOG2E,
                             *q.stride()[:3], *k_new.stride()[:3], *v_new.stride()[:3],
                             *k_cache.stride()[:3], *v_cache.stride()[:3], *out.stride()[:3], H, Lc, S,
                             HEAD_DIM=D, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, PREC=dot_precision(q.dtype),
                             num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out
