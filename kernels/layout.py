"""The block-causal mask as per-token key and query intervals.

Within a clip, token i sees token j iff chunk(j) <= chunk(i) and frame(i) - frame(j) < window.
Both conditions are monotone in j, so the keys one query sees are one contiguous range
[kv_lo[i], kv_hi[i]) of absolute token indices, and the queries that see one key are one range
[q_lo[j], q_hi[j]). The kernels iterate only over the tiles those ranges touch (fully masked tiles
are never visited) and recognise fully visible tiles by comparing the tile's corners with the
ranges (no mask arithmetic there). The PyTorch path builds its dense mask from the same ranges.

Tokens past the last clip of a packed sequence (padding) see nothing and are seen by nothing:
their output is defined as zeros, and their gradients are zeros.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

# intervals rows
KV_LO, KV_HI, Q_LO, Q_HI = range(4)


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4:
        raise ValueError(f"q must be [B, H, L, D], got shape {tuple(q.shape)}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must share one shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or not q.dtype.is_floating_point:
        raise ValueError(f"q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")


def layout_key(batch: int, length: int, frame_tokens: int | Sequence[int], chunk_frames: int,
               window_frames: int | None, cu_seqlens: Tensor | None) -> tuple:
    """Validate the layout arguments and return a hashable description of the clips.

    The description is (clips, chunk_frames, window_frames, length) with clips a tuple of
    (start, n_tokens, frame_tokens); one clip starting at 0 when unpacked.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if window_frames is not None and window_frames < 1:
        raise ValueError(f"window_frames must be None or >= 1, got {window_frames}")
    if cu_seqlens is None:
        if not isinstance(frame_tokens, int):
            raise ValueError(f"unpacked attention takes one int frame_tokens, got {frame_tokens!r}"
                             " (pass cu_seqlens for packed clips)")
        clips: tuple[tuple[int, int, int], ...] = ((0, length, frame_tokens),)
    else:
        clips = _packed_clips(batch, length, frame_tokens, cu_seqlens)
    for _, _, ft in clips:
        if ft < 1:
            raise ValueError(f"frame_tokens must be >= 1, got {ft}")
    return clips, chunk_frames, window_frames, length


def _packed_clips(batch: int, length: int, frame_tokens: int | Sequence[int],
                  cu_seqlens: Tensor) -> tuple[tuple[int, int, int], ...]:
    if batch != 1:
        raise ValueError(f"packed attention (cu_seqlens given) needs B == 1, got B = {batch}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"cu_seqlens must be an int32 tensor [n_clips + 1], got {cu_seqlens.dtype} "
                         f"of shape {tuple(cu_seqlens.shape)}")
    offsets = [int(x) for x in cu_seqlens.tolist()]
    n_clips = len(offsets) - 1
    fts = [frame_tokens] * n_clips if isinstance(frame_tokens, int) else [int(x) for x in frame_tokens]
    if len(fts) != n_clips:
        raise ValueError(f"frame_tokens has {len(fts)} entries for {n_clips} clips in cu_seqlens")
    if offsets[0] != 0 or any(b < a for a, b in zip(offsets, offsets[1:])) or offsets[-1] > length:
        raise ValueError(f"cu_seqlens must start at 0, never decrease and end at most at L = {length}, "
                         f"got {offsets}")
    return tuple((a, b - a, ft) for a, b, ft in zip(offsets, offsets[1:], fts))


@functools.lru_cache(maxsize=64)
def intervals(key: tuple, device: torch.device) -> Tensor:
    """int32 [4, L]: kv_lo, kv_hi, q_lo, q_hi per token (see module docstring)."""
    clips, chunk_frames, window_frames, length = key
    out = torch.zeros(4, length, dtype=torch.int64)  # padding tokens keep empty ranges [0, 0)
    for start, n, ft in clips:
        p = torch.arange(n)
        frame = p // ft
        chunk = frame // chunk_frames
        span = chunk_frames * ft  # tokens per chunk
        kv_hi = torch.clamp((chunk + 1) * span, max=n)
        q_lo = chunk * span
        if window_frames is None:
            kv_lo = torch.zeros_like(p)
            q_hi = torch.full_like(p, n)
        else:
            kv_lo = torch.clamp((frame - window_frames + 1) * ft, min=0)
            q_hi = torch.clamp((frame + window_frames) * ft, max=n)
        out[:, start:start + n] = torch.stack([kv_lo, kv_hi, q_lo, q_hi]) + start
    return out.to(device=device, dtype=torch.int32)


@functools.lru_cache(maxsize=16)
def dense_mask(key: tuple, device: torch.device) -> tuple[Tensor, Tensor]:
    """(bool [L, L] mask with True = attend, bool [L] rows that see at least one key).

    Rows that see nothing get their own diagonal in the mask so softmax stays finite; the
    caller zeroes those rows with the second tensor.
    """
    iv = intervals(key, device)
    cols = torch.arange(iv.shape[1], device=device)
    mask = (cols[None, :] >= iv[KV_LO, :, None]) & (cols[None, :] < iv[KV_HI, :, None])  # [L, L]
    has_keys = iv[KV_HI] > iv[KV_LO]
    mask |= torch.diag(~has_keys)
    return mask, has_keys


def ring_valid(cache_start: Tensor, cache_len: Tensor, slots: int) -> Tensor:
    """bool [B, S]: which physical slots of a ring buffer hold valid keys."""
    s = torch.arange(slots, device=cache_start.device)
    return torch.remainder(s[None, :] - cache_start[:, None], slots) < cache_len[:, None]


def cache_bounds(cache_start: int | Tensor, cache_len: int | Tensor, batch: int, slots: int,
                 device: torch.device) -> tuple[Tensor, Tensor]:
    """Validate the ring-buffer bounds and return them as int32 tensors [B] on `device`."""
    tensors = []
    for name, value in (("cache_start", cache_start), ("cache_len", cache_len)):
        t = torch.as_tensor(value, dtype=torch.int32, device=device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"{name} must be an int or an int tensor [B = {batch}], got shape {tuple(t.shape)}")
        tensors.append(t.to(torch.int32).contiguous())
    start, length = tensors
    # checking values on a GPU would force a sync every step, and in a compiled graph a graph break
    if start.device.type == "cpu" and not torch.compiler.is_compiling():
        # in Python: B is small, and tensor comparisons cost ~30 us a call, per layer and pass
        starts, lengths = start.tolist(), length.tolist()
        if not all(0 <= s < max(slots, 1) for s in starts):
            raise ValueError(f"cache_start must lie in [0, S = {slots}), got {starts}")
        if not all(0 <= n <= slots for n in lengths):
            raise ValueError(f"cache_len must lie in [0, S = {slots}], got {lengths}")
    return start, length
