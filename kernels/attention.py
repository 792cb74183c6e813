"""The one attention API of the world model: block-causal training attention and cached streaming.

`backend` picks the implementation: None = auto (Triton on CUDA, PyTorch SDPA elsewhere, or what the
environment variable PATCHWORLD_ATTENTION names: how a run on a GPU whose Triton kernels failed their
tests keeps training), or "triton", "torch", "reference" to force one (tests compare them). Semantics are in
docs/CONTRACTS.md and docs/kernels.md; a query that sees no key (padding after the last packed
clip) gets a zero output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch import Tensor

from kernels.layout import check_qkv, layout_key

BACKENDS = ("triton", "torch", "reference")


ENV_BACKEND = "PATCHWORLD_ATTENTION"


def _pick(backend: str | None, q: Tensor) -> str:
    if backend is None:
        backend = os.environ.get(ENV_BACKEND) or ("triton" if q.is_cuda else "torch")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS} (or {ENV_BACKEND}), got {backend!r}")
    return backend


def block_causal_attention(q: Tensor, k: Tensor, v: Tensor, *, frame_tokens: int | Sequence[int],
                           chunk_frames: int = 1, window_frames: int | None = None,
                           cu_seqlens: Tensor | None = None, backend: str | None = None) -> Tensor:
    """Attention where token i sees token j iff same clip, chunk(j) <= chunk(i) and (no window or
    frame(i) - frame(j) < window_frames). q, k, v: [B, H, L, D] -> [B, H, L, D].

    Unpacked: each batch row is one clip of `frame_tokens` tokens per frame. Packed: B == 1,
    `cu_seqlens` int32 [n_clips + 1] token offsets, `frame_tokens` one int per clip (or one for all).
    """
    check_qkv(q, k, v)
    B, H, L, D = q.shape
    key = layout_key(B, L, frame_tokens, chunk_frames, window_frames, cu_seqlens)
    chosen = _pick(backend, q)
    if chosen == "reference":
        from kernels.reference import reference_block_causal_attention
        return reference_block_causal_attention(q, k, v, frame_tokens=frame_tokens, chunk_frames=chunk_frames,
                                                window_frames=window_frames, cu_seqlens=cu_seqlens)
    if chosen == "torch":
        from kernels.sdpa import sdpa_block_causal
        return sdpa_block_causal(q, k, v, key)
    from kernels.triton_block_causal import triton_block_causal
    return triton_block_causal(q, k, v, key)


def cached_attention(q: Tensor, k_new: Tensor, v_new: Tensor, k_cache: Tensor, v_cache: Tensor, *,
                     cache_start: int | Tensor, cache_len: int | Tensor, backend: str | None = None) -> Tensor:
    """Streaming: the new chunk's queries q [B, H, Lc, D] see every valid slot of the ring buffer
    k_cache/v_cache [B, H, S, D] (slots (cache_start + i) % S for i < cache_len, per batch row)
    and every token of the chunk (k_new/v_new [B, H, Lc, D]). Forward only. -> [B, H, Lc, D]."""
    check_qkv(q, k_new, v_new)
    B, H, Lc, D = q.shape
    if k_cache.shape != v_cache.shape or k_cache.dim() != 4 or k_cache.shape[:2] != (B, H) \
            or k_cache.shape[3] != D:
        raise ValueError(f"k_cache and v_cache must be [B={B}, H={H}, S, D={D}], got "
                         f"{tuple(k_cache.shape)} and {tuple(v_cache.shape)}")
    if k_cache.dtype != q.dtype or v_cache.dtype != q.dtype:
        raise ValueError(f"cache dtype {k_cache.dtype}/{v_cache.dtype} differs from the queries' {q.dtype}")
    chosen = _pick(backend, q)
    if chosen == "reference":
        from kernels.reference import reference_cached_attention
        return reference_cached_attention(q, k_new, v_new, k_cache, v_cache,
                                          cache_start=cache_start, cache_len=cache_len)
    if chosen == "torch":
        from kernels.sdpa import sdpa_cached
        return sdpa_cached(q, k_new, v_new, k_cache, v_cache, cache_start, cache_len)
    from kernels.triton_cached import triton_cached
    return triton_cached(q, k_new, v_new, k_cache, v_cache, cache_start, cache_len)
