"""The picture's motion when the camera turns: the one warp the world model and its baselines share.

A pinhole camera of vertical field of view `fov` turning by (yaw, pitch) degrees moves what it sees
by about (h / 2) / tan(fov / 2) pixels per radian near the centre of an image h pixels high
(square pixels): turning right (+yaw) moves the picture left, looking up (+pitch) moves it down.
On the engine (70 degrees, 64x64) that is 0.80 px per degree; measured on its frames by image
registration (simulator/eval/camera.py): 0.72-0.83. Works on pixels and on latents alike (a latent
grid is the image at a coarser stride, so the same angle moves it by proportionally fewer cells).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ENGINE_FOV_DEG = 70.0  # the ground-truth engine's vertical field of view (simulator.world.engine.WorldConfig)


def pixels_per_degree(height: int, fov_deg: float) -> float:
    """Image motion near the centre per degree of camera rotation, in pixels (or latent cells) of a grid `height` high."""
    return (height / 2) / math.tan(math.radians(fov_deg) / 2) * math.pi / 180


def warp_by_camera(images: torch.Tensor, degrees: torch.Tensor, fov_deg: float,
                   padding: str = "border") -> torch.Tensor:
    """images [N, C, h, w] (float) moved as a turn of degrees [N, 2] = (yaw, pitch) moves the picture.

    Bilinear; what comes into view is not known (the model draws it): padding "border" repeats
    the edges, "zeros" fills zeros (for corrections that should not exist there). A zero turn
    returns the input up to rounding.
    """
    N, C, h, w = images.shape
    if degrees.shape != (N, 2):
        raise ValueError(f"degrees: expected [{N}, 2] (yaw, pitch), got {list(degrees.shape)}")
    per_degree = pixels_per_degree(h, fov_deg)
    dx, dy = -degrees[:, 0] * per_degree, degrees[:, 1] * per_degree  # [N]: how far the content moves
    theta = torch.zeros(N, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = (-2.0 / w) * dx  # sample at x - dx: normalised coordinates span 2 over w
    theta[:, 1, 2] = (-2.0 / h) * dy
    grid = F.affine_grid(theta, [N, C, h, w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)
