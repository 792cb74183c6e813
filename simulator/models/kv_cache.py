"""Rolling key/value cache for streaming generation: preallocated ring buffers, flat memory.

One buffer per layer for keys and one for values, `[B, H, S, D]` with `S = window_frames *
tokens_per_frame`, allocated once. Each batch row (a stream) has its own ring: valid slots are
`(start[b] + i) % S` for `i < length[b]` (the layout `kernels.attention.cached_attention`
reads). Appending a chunk writes its tokens after the newest ones and, once the ring is full,
overwrites the oldest: memory does not grow however long a stream runs.
"""

from __future__ import annotations

import torch


class KVCache:
    """Ring buffers for `layers` attention layers over `batch` independent streams."""

    def __init__(self, layers: int, batch: int, heads: int, window_frames: int, frame_tokens: int,
                 head_dim: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        if window_frames < 1:
            raise ValueError(f"KV cache window {window_frames} frames: need at least 1")
        self.window_frames, self.frame_tokens = window_frames, frame_tokens
        self.size = window_frames * frame_tokens  # S, tokens per stream
        shape = (layers, batch, heads, self.size, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # [layers, B, H, S, D]
        self.v = torch.zeros(shape, device=device, dtype=dtype)  # [layers, B, H, S, D]
        self.start = torch.zeros(batch, dtype=torch.long, device=device)  # oldest valid slot per stream
        self.length = torch.zeros(batch, dtype=torch.long, device=device)  # valid slots per stream

    def reset(self, row: int) -> None:
        """Forget everything stream `row` has seen (the buffers are reused, not freed)."""
        self.start[row] = 0
        self.length[row] = 0

    def rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [layers, len(rows), H, S, D] of every layer for the given stream rows. A
        cache of one stream gives its buffers themselves (no copy: ~1 ms a tick on one CPU thread at 10
        layers); more streams get a copy of their rows (~0.1 MB a layer for a 64-token frame), always,
        so that a compiled pass sees the same kind of tensor whichever rows tick (a view of the buffers
        would be another input to it). Either is valid until the cache is next written to."""
        if self.k.shape[1] == 1:
            return self.k, self.v
        return self.k[:, rows], self.v[:, rows]

    def slots(self, rows: torch.Tensor, tokens: int) -> torch.Tensor:
        """Ring slots [len(rows), tokens] where the next `tokens` tokens of each row will go."""
        if tokens > self.size:
            raise ValueError(f"cannot append {tokens} tokens to a KV cache of {self.size} slots")
        offsets = torch.arange(tokens, device=self.start.device)
        return (self.start[rows, None] + self.length[rows, None] + offsets[None]) % self.size  # [B, L]

    def update(self, index: int, rows: torch.Tensor, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write layer `index`'s new keys/values k, v [len(rows), H, L, D] into `slots` [len(rows), L]."""
        B, H, L, D = k.shape
        row_index = rows[:, None].expand(B, L)  # [B, L]
        # advanced indexing on dims (1, 3) puts them first: the target is [B, L, H, D]
        self.k[index, row_index, :, slots] = k.transpose(1, 2).to(self.k.dtype)
        self.v[index, row_index, :, slots] = v.transpose(1, 2).to(self.v.dtype)

    def advance(self, rows: torch.Tensor, tokens: int) -> None:
        """Mark `tokens` newly written tokens valid; drop the oldest ones past the window."""
        total = self.length[rows] + tokens
        overflow = (total - self.size).clamp_min(0)
        self.start[rows] = (self.start[rows] + overflow) % self.size
        self.length[rows] = total.clamp_max(self.size)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.start, self.length))
