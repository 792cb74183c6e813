"""The pixel refiner: each shown frame from the decoder's picture and the last shown frame, moved.

The world model predicts latents; the tokenizer decodes them into blurry pictures (the network
regresses to the mean of what may come next, and the decoder loses detail), while the last shown
frame, moved as the camera turns and the player walks, is sharp but stale wherever the picture
really changes. Measured on the evaluation worlds (docs/benchmarks.md, "Where the teacher-forced
error lives"), neither wins everywhere: the model beats a pixel warp of the last true frame when
the player walks, and loses to it when only the camera turns. The refiner mixes, per pixel, three
pictures and adds a small correction r:

    shown = a * decoded + b * moved_shown + c * (decoded + moved_shown - moved_decoded) + r

a + b + c = 1 (b = c = 0 where the move brought in pixels that were not in view): the decoder's
picture; the last shown frame moved (copy-warped-last); and the decoder's picture plus the detail
the last shown frame had beyond the last decoded one, moved (the hand-tuned `detail_carry` of
`GeneratorConfig` is this with a fixed gate). Weights and r come from a small convolutional network
(full resolution, then 1/2 and 1/4 for reach) that reads the decoded picture, the moved last shown
frame, the moved last decoded picture (where the decoder's own picture changed, the world did),
where the move left pixels unknown, and the tick's action (turn, walk, jump, attack). With `flow_max` it also
shifts the moved pictures, pixel by pixel, by a smooth field it draws at 1/4 resolution (at most `flow_max`
pixels): the turn and walk move the whole picture alike, but walking, near things move more than far ones.
The field works only on ticks where the player walks, jumps or turns: a still picture is left as it is (a
sub-pixel shift resamples it, and every tick's would blur it a little more).
It is recurrent through what it showed:
`patchworld train-refiner` trains it on the world model's own rollouts, chained over the whole
horizon, so that it learns what its own frames are worth as they age. It changes only what is
shown: the world model's latents, and so its dynamics, are untouched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from simulator.actions import BUTTONS, CAMERA_BIN_CENTERS, CAMERA_MAX_DEG
from simulator.checkpoint import load_checkpoint, save_checkpoint
from simulator.models.camera_warp import ENGINE_FOV_DEG, walk_scale, warp_by_camera

KIND = "refiner"
# the action channels the refiner reads (besides the turn): what moves or changes the picture
ACTION_KEYS = ("forward", "back", "left", "right", "jump", "sprint", "sneak", "attack")
MOVE_KEYS = ("forward", "back", "left", "right", "jump")  # the buttons that move the player (the shift field's ticks)
IMAGE_CHANNELS = 3 + 3 + 3 + 1  # decoded, moved shown, moved last decoded, known-pixel mask
INPUT_CHANNELS = IMAGE_CHANNELS + 2 + len(ACTION_KEYS)


@dataclass
class RefinerConfig:
    width: int = 16  # channels at full resolution (twice that at 1/2 and 1/4)
    blocks: int = 2  # residual blocks at 1/4 resolution
    fov: float = ENGINE_FOV_DEG  # the warp's field of view (the engine's)
    walk_zoom: float = 0.015  # the picture's enlargement per tick of walking forward (camera_warp.walk_scale)
    residual_max: float = 0.25  # |r| <= this, [-1, 1] units: the refiner corrects, the decoder draws
    flow_max: float = 0.0  # |shift| <= this many pixels, per axis, on top of the move; 0 = none (and no weights for it)

    def __post_init__(self) -> None:
        if self.width < 1 or self.blocks < 0:
            raise ValueError(f"refiner width must be >= 1 and blocks >= 0, got {self.width}, {self.blocks}")
        if not 0.0 <= self.walk_zoom < 0.5:
            raise ValueError(f"walk_zoom is a per-tick enlargement within [0, 0.5), got {self.walk_zoom}")
        if self.flow_max < 0:
            raise ValueError(f"flow_max is a largest shift in pixels, >= 0, got {self.flow_max}")


def shift_pixels(shift: torch.Tensor, *pictures: tuple[torch.Tensor, str]) -> list[torch.Tensor]:
    """Each picture [N, C, H, W] (with its grid_sample padding) sampled at each pixel's position plus shift
    [N, 2, H, W] (x, y; pixels), bilinearly: one sampling grid for them all."""
    _, _, H, W = shift.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=shift.dtype, device=shift.device),
                            torch.arange(W, dtype=shift.dtype, device=shift.device), indexing="ij")
    x = (xs + 0.5 + shift[:, 0]) * (2.0 / W) - 1.0  # align_corners=False: pixel centres at (i + 0.5) / size
    y = (ys + 0.5 + shift[:, 1]) * (2.0 / H) - 1.0
    grid = torch.stack([x, y], dim=-1)
    return [F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)
            for images, padding in pictures]


class _Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class Refiner(nn.Module):
    def __init__(self, config: RefinerConfig | None = None):
        super().__init__()
        self.config = config = config or RefinerConfig()
        c = config.width
        self.inp = nn.Conv2d(INPUT_CHANNELS, c, 3, padding=1)
        self.down1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(*[_Block(2 * c) for _ in range(config.blocks)])
        self.up2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.up1 = nn.Conv2d(2 * c, c, 3, padding=1)
        self.out = nn.Conv2d(c, 6, 3, padding=1)  # logits of (decoded, moved, decoded + moved detail), residual RGB
        if config.flow_max:  # the shift field (x, y), drawn at 1/4 resolution: smooth, as the parallax of a walk is
            self.flow = nn.Conv2d(2 * c, 2, 3, padding=1)
            nn.init.zeros_(self.flow.weight)
            nn.init.zeros_(self.flow.bias)
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():  # starts mostly as the decoder's picture plus the moved detail (detail carry)
            self.out.bias.copy_(torch.tensor([0.0, -2.0, 2.0, 0.0, 0.0, 0.0]))
        self.register_buffer("action_index", torch.tensor([BUTTONS.index(k) for k in ACTION_KEYS]), persistent=False)
        self.register_buffer("move_index", torch.tensor([BUTTONS.index(k) for k in MOVE_KEYS]), persistent=False)
        # added to the three pictures' logits where the move brought in unknown pixels: the decoded picture only
        self.register_buffer("unknown_logits", torch.tensor([0.0, -1e4, -1e4]), persistent=False)
        self.register_buffer("camera_degrees", torch.tensor(CAMERA_BIN_CENTERS, dtype=torch.float32), persistent=False)

    def move(self, images: torch.Tensor, camera: torch.Tensor, buttons: torch.Tensor,
             padding: str = "border") -> torch.Tensor:
        """images [N, C, H, W] moved as the tick's turn (camera bins [N, 2]) and walk (buttons [N, BUTTON_DIM])
        move the picture."""
        degrees = self.camera_degrees[camera]
        scale = walk_scale(buttons, self.config.walk_zoom) if self.config.walk_zoom else None
        return warp_by_camera(images, degrees.to(images.dtype), self.config.fov, padding=padding,
                              scale=None if scale is None else scale.to(images.dtype))

    def forward(self, decoded: torch.Tensor, shown: torch.Tensor, last_decoded: torch.Tensor,
                camera: torch.Tensor, buttons: torch.Tensor) -> torch.Tensor:
        """The frame to show [N, 3, H, W] in [-1, 1]: decoded [N, 3, H, W] (this tick's decoder output),
        shown and last_decoded [N, 3, H, W] (last tick's shown frame and decoder output, not yet moved),
        the tick's action as `simulator.actions.encode_many` makes it: camera bins [N, 2], buttons [N, BUTTON_DIM]."""
        N, _, H, W = decoded.shape
        if H % 4 or W % 4:
            raise ValueError(f"the refiner works at 1/4 resolution: {H}x{W} is not divisible by 4")
        moved = self.move(shown, camera, buttons, padding="zeros")
        known = self.move(torch.ones_like(shown[:, :1]), camera, buttons, padding="zeros")  # [N, 1, H, W]
        moved_decoded = self.move(last_decoded, camera, buttons)
        action = torch.cat([self.camera_degrees[camera].to(decoded.dtype) / CAMERA_MAX_DEG,
                            buttons[:, self.action_index].to(decoded.dtype)], dim=1)
        x = torch.cat([decoded, moved, moved_decoded, known, action[:, :, None, None].expand(N, -1, H, W)], dim=1)
        full = F.gelu(self.inp(x))
        half = F.gelu(self.down1(full))
        quarter = self.blocks(F.gelu(self.down2(half)))
        half = F.gelu(self.up2(F.interpolate(quarter, scale_factor=2.0, mode="nearest"))) + half
        full = F.gelu(self.up1(F.interpolate(half, scale_factor=2.0, mode="nearest"))) + full
        logits, residual = self.out(full).split([3, 3], dim=1)
        if self.config.flow_max:
            shift = F.interpolate(self.config.flow_max * torch.tanh(self.flow(quarter)), size=(H, W), mode="bilinear",
                                  align_corners=False)
            moves = (buttons[:, self.move_index] > 0).any(dim=1) | (self.camera_degrees[camera] != 0).any(dim=1)
            shift = shift * moves.to(shift.dtype)[:, None, None, None]  # standing still: no shift
            moved, known, moved_decoded = shift_pixels(shift, (moved, "zeros"), (known, "zeros"),
                                                       (moved_decoded, "border"))
        # the moved pictures only where the whole bilinear footprint was in view
        unknown = (known <= 0.999).to(logits.dtype) * self.unknown_logits.to(logits.dtype)[:, None, None]
        a, b, c = torch.softmax(logits + unknown, dim=1).split(1, dim=1)
        residual = self.config.residual_max * torch.tanh(residual)
        return (a * decoded + b * moved + c * (decoded + moved - moved_decoded) + residual).clamp(-1.0, 1.0)

    def save(self, directory: str | Path, dtype: torch.dtype | None = torch.bfloat16, extra: dict | None = None) -> Path:
        return save_checkpoint(directory, self.state_dict(), {"kind": KIND, "refiner": asdict(self.config),
                                                              **(extra or {})}, dtype=dtype)

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> Refiner:
        state, config = load_checkpoint(directory, device=device)
        if config.get("kind") != KIND:
            raise ValueError(f"{directory} does not hold a refiner checkpoint (kind={config.get('kind')!r})")
        refiner = cls(RefinerConfig(**config["refiner"])).to(device)
        refiner.load_state_dict(state)
        return refiner.eval()
