"""The picture's motion when the camera turns: the one warp the world model and its baselines share.

A pinhole camera of vertical field of view `fov` turning by (yaw, pitch) degrees moves what it sees
by about (h / 2) / tan(fov / 2) pixels per radian near the centre of an image h pixels high
(square pixels): turning right (+yaw) moves the picture left, looking up (+pitch) moves it down.
On the engine (70 degrees, 64x64) that is 0.80 px per degree; measured on its frames by image
registration (simulator/eval/camera.py): 0.72-0.83. Works on pixels and on latents alike (a latent
grid is the image at a coarser stride, so the same angle moves it by proportionally fewer cells).

Walking forward expands the picture about its centre (what is near grows fastest; one factor is the
compromise): `walk_scale` turns the forward/back keys into a scale per tick, and `warp_by_camera`
applies it with the turn. On held-out engine frames of straight walks, copying the last frame
enlarged by 1.5% beat plain copy-last by 0.93 dB (docs/training.md, "The walk zoom").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from simulator.actions import BUTTONS

ENGINE_FOV_DEG = 70.0  # the ground-truth engine's vertical field of view (simulator.world.engine.WorldConfig)
# the engine's speeds relative to walking (simulator.world.physics.PhysicsConfig, a test keeps them
# equal; not imported, so that models need not load the engine): sprint (forward only), sneak
SPRINT_SPEED_RATIO = 5.612 / 4.317
SNEAK_SPEED_RATIO = 1.295 / 4.317


def pixels_per_degree(height: int, fov_deg: float) -> float:
    """Image motion near the centre per degree of camera rotation, in pixels (or latent cells) of a grid `height` high."""
    return (height / 2) / math.tan(math.radians(fov_deg) / 2) * math.pi / 180


def walk_scale(buttons: torch.Tensor, zoom: float) -> torch.Tensor:
    """The picture's scale for one tick of the keys in buttons [..., BUTTON_DIM] (multi-hot):
    1 + zoom per tick of walking forward, 1 - zoom backward, times the engine's sprint or sneak
    speed ratio; 1 standing still or strafing. -> [...]"""
    def key(name: str) -> torch.Tensor:
        return buttons[..., BUTTONS.index(name)]

    ahead = key("forward") - key("back")
    sprinting = key("sprint") * key("forward")
    speed = torch.where(key("sneak") > 0, torch.full_like(ahead, SNEAK_SPEED_RATIO),
                        torch.where(sprinting > 0, torch.full_like(ahead, SPRINT_SPEED_RATIO), torch.ones_like(ahead)))
    return 1.0 + zoom * ahead * speed


def warp_by_camera(images: torch.Tensor, degrees: torch.Tensor, fov_deg: float,
                   padding: str = "border", scale: torch.Tensor | None = None) -> torch.Tensor:
    """images [N, C, h, w] (float) moved as a turn of degrees [N, 2] = (yaw, pitch) moves the picture,
    and, with scale [N] (`walk_scale`), enlarged about the centre by that factor (walking forward).

    Bilinear; what comes into view is not known (the model draws it): padding "border" repeats
    the edges, "zeros" fills zeros (for corrections that should not exist there). A zero turn
    (and a scale of 1) returns the input up to rounding.
    """
    N, C, h, w = images.shape
    if degrees.shape != (N, 2):
        raise ValueError(f"degrees: expected [{N}, 2] (yaw, pitch), got {list(degrees.shape)}")
    if scale is not None and scale.shape != (N,):
        raise ValueError(f"scale: expected [{N}], got {list(scale.shape)}")
    per_degree = pixels_per_degree(h, fov_deg)
    dx, dy = -degrees[:, 0] * per_degree, degrees[:, 1] * per_degree  # [N]: how far the content moves
    theta = torch.zeros(N, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 if scale is None else 1.0 / scale.to(images.dtype)  # sample at x / s
    theta[:, 0, 2] = (-2.0 / w) * dx  # sample at x - dx: normalised coordinates span 2 over w
    theta[:, 1, 2] = (-2.0 / h) * dy
    grid = F.affine_grid(theta, [N, C, h, w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)
