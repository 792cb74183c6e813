"""The PyTorch path: scaled_dot_product_attention with a boolean mask built from the layout.

Used on CPU (and wherever Triton is unavailable). The mask comes from the interval form of the
layout (kernels/layout.py) and is cached per layout, so a training loop pays for it once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kernels.layout import cache_bounds, dense_mask, ring_valid


def sdpa_block_causal(q: Tensor, k: Tensor, v: Tensor, key: tuple) -> Tensor:
    """Block-causal attention for a validated layout `key` (see kernels.layout.layout_key)."""
    mask, has_keys = dense_mask(key, q.device)  # [L, L], [L]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # rows that see nothing are zeros; compiled, always multiplied (a data-dependent branch breaks the graph)
    if torch.compiler.is_compiling() or not bool(has_keys.all()):
        out = out * has_keys[:, None].to(out.dtype)
    return out


def sdpa_cached(q: Tensor, k_new: Tensor, v_new: Tensor, k_cache: Tensor, v_cache: Tensor,
                cache_start: int | Tensor, cache_len: int | Tensor) -> Tensor:
    """The new chunk's queries against the valid ring-buffer slots plus the chunk itself."""
    B, H, Lc, D = q.shape
    S = k_cache.shape[2]
    start, length = cache_bounds(cache_start, cache_len, B, S, q.device)
    keys = torch.cat([k_cache, k_new], dim=2)  # [B, H, S + Lc, D]; key order does not matter
    values = torch.cat([v_cache, v_new], dim=2)
    # every ring full (a stream past its first W frames): no mask, no fill. Compiled, the masked
    # form below serves both (a data-dependent branch would break the graph)
    if not torch.compiler.is_compiling() and bool((length == S).all()):
        return F.scaled_dot_product_attention(q, keys, values)
    valid = torch.cat([ring_valid(start, length, S),
                       torch.ones(B, Lc, dtype=torch.bool, device=q.device)], dim=1)  # [B, S + Lc]
    # stale or never-written slots may hold NaN/inf, which a mask alone lets through (0 * NaN)
    invalid = ~valid[:, None, :, None]  # [B, 1, S + Lc, 1]
    keys.masked_fill_(invalid, 0.0)
    values.masked_fill_(invalid, 0.0)
    # as an additive mask in the queries' dtype: the CPU flash kernel takes it ~20% faster than a boolean one
    bias = torch.zeros(valid.shape, dtype=q.dtype, device=q.device).masked_fill_(~valid, float("-inf"))
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=bias[:, None, None, :])
