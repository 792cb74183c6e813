"""Plain PyTorch references: the definitions the fast paths are tested against.

They build the mask straight from the definition in docs/CONTRACTS.md (not from the interval
form in kernels/layout.py, which is what they check), materialise the scores and compute in
the inputs' dtype: call them on float32 copies for the gold result, and on low-precision
inputs to measure what plain PyTorch loses in that dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from kernels.layout import check_qkv, layout_key


def block_causal_mask(length: int, frame_tokens: int | Sequence[int], chunk_frames: int = 1,
                      window_frames: int | None = None, cu_seqlens: Tensor | None = None,
                      device: torch.device | str = "cpu") -> Tensor:
    """bool [L, L], True where query i sees key j, straight from the definition."""
    batch = 1 if cu_seqlens is not None else 0
    clips, _, _, _ = layout_key(batch, length, frame_tokens, chunk_frames, window_frames, cu_seqlens)
    clip = torch.full((length,), -1)
    frame = torch.zeros(length, dtype=torch.long)
    for c, (start, n, ft) in enumerate(clips):
        clip[start:start + n] = c
        frame[start:start + n] = torch.arange(n) // ft
    chunk = frame // chunk_frames
    mask = (clip[:, None] == clip[None, :]) & (clip[:, None] >= 0) & (chunk[None, :] <= chunk[:, None])
    if window_frames is not None:
        mask &= (frame[:, None] - frame[None, :]) < window_frames
    return mask.to(device)


def masked_softmax_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(D)) v over the True entries of `mask` (broadcast to [B, H, Lq, Lk]);
    a query that sees no key gets zeros. Differentiable, never NaN."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # [B, H, Lq, Lk]
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1) * mask  # an empty row is uniform before this, zeros after
    return probs @ v


def reference_block_causal_attention(q: Tensor, k: Tensor, v: Tensor, *, frame_tokens: int | Sequence[int],
                                     chunk_frames: int = 1, window_frames: int | None = None,
                                     cu_seqlens: Tensor | None = None, backend: str | None = None) -> Tensor:
    """Same signature as kernels.attention.block_causal_attention (`backend` is ignored)."""
    del backend
    check_qkv(q, k, v)
    if cu_seqlens is not None and q.shape[0] != 1:
        raise ValueError(f"packed attention (cu_seqlens given) needs B == 1, got B = {q.shape[0]}")
    mask = block_causal_mask(q.shape[2], frame_tokens, chunk_frames, window_frames, cu_seqlens, q.device)
    return masked_softmax_attention(q, k, v, mask)


def reference_cached_attention(q: Tensor, k_new: Tensor, v_new: Tensor, k_cache: Tensor, v_cache: Tensor, *,
                               cache_start: int | Tensor, cache_len: int | Tensor,
                               backend: str | None = None) -> Tensor:
    """Same signature as kernels.attention.cached_attention: gathers each row's valid cache slots
    in logical order, appends the new chunk, and attends without a mask."""
    del backend
    B, H, Lc, D = q.shape
    S = k_cache.shape[2]
    starts = torch.as_tensor(cache_start).expand(B).tolist()
    lens = torch.as_tensor(cache_len).expand(B).tolist()
    out = []
    for b in range(B):
        idx = (torch.arange(lens[b], device=q.device) + starts[b]) % max(S, 1)
        keys = torch.cat([k_cache[b][:, idx], k_new[b]], dim=1)  # [H, len + Lc, D]
        values = torch.cat([v_cache[b][:, idx], v_new[b]], dim=1)
        scores = (q[b] @ keys.transpose(-1, -2)) / math.sqrt(D)  # [H, Lc, len + Lc]
        out.append(torch.softmax(scores, dim=-1) @ values)
    return torch.stack(out)
