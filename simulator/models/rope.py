"""3D rotary position embedding over (t, y, x) for spacetime-patch tokens.

The head dimension is cut into three sections, one per axis; each section rotates its pairs
of channels by angle `position * frequency`. Only differences of positions survive the q.k
product, so one set of weights serves any resolution, aspect ratio and stream length (the
streaming generator keeps absolute frame counters; what matters is that they differ by less
than the window the model was trained on).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RotarySections:
    """How a head dimension is split between the time, height and width axes."""

    t: int
    y: int
    x: int

    @classmethod
    def for_head_dim(cls, head_dim: int) -> RotarySections:
        """A quarter of the channels for time, the rest split evenly between y and x (all even)."""
        if head_dim % 2 or head_dim < 8:
            raise ValueError(f"rotary head dim {head_dim} must be even and at least 8")
        spatial = (3 * head_dim // 8) // 2 * 2  # channels per spatial axis, even
        return cls(t=head_dim - 2 * spatial, y=spatial, x=spatial)


def _frequencies(channels: int, theta: float, device: torch.device) -> torch.Tensor:
    """[channels / 2] float64 inverse wavelengths, from 1 down to 1/theta."""
    return theta ** (-torch.arange(0, channels, 2, dtype=torch.float64, device=device) / channels)


def rotary_angles(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer positions [L, 3] as (t, y, x) -> (cos, sin), each float32 [L, head_dim / 2].

    Angles are formed in float64 so that long streams (large t) keep their precision.
    """
    L, axes = positions.shape
    if axes != 3:
        raise ValueError(f"rotary positions must be [L, 3] (t, y, x), got {tuple(positions.shape)}")
    sections = RotarySections.for_head_dim(head_dim)
    pos = positions.to(torch.float64)
    angles = torch.cat([pos[:, i:i + 1] * _frequencies(n, theta, positions.device)[None]
                        for i, n in enumerate((sections.t, sections.y, sections.x))], dim=1)  # [L, D/2]
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + D/2) of x [..., L, D] by the angles of cos/sin [..., L, D/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


def frame_positions(frames: int, height: int, width: int, first_frame: int = 0,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Token positions [frames * height * width, 3] in (t, y, x) order, row-major within a frame."""
    t = torch.arange(first_frame, first_frame + frames, device=device)
    y = torch.arange(height, device=device)
    x = torch.arange(width, device=device)
    grid = torch.stack(torch.meshgrid(t, y, x, indexing="ij"), dim=-1)  # [T, h, w, 3]
    return grid.reshape(-1, 3)  # [T*h*w, 3]
