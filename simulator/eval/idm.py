"""Inverse-dynamics model (IDM): given two consecutive frames, which action was taken between them?

It referees action following: its accuracy on engine clips says how readable actions are at
all; its accuracy on generated clips driven by the same actions says how well the world model
obeys them (the ratio is the controllability). Its penultimate features also serve as the
embedding for the Frechet distance between generated and engine frames (stability.py).

Input: frames t-1 and t (uint8, resized to `IdmConfig.resolution`). Two paths read them: a
correlation volume (how well the previous frame matches the current one under each horizontal
and vertical shift, per image region, as in FlowNet's correlation layer), which makes camera
motion and walking cheap to learn, and a small conv trunk on both frames and their difference
for what is not a shift (a block broken or placed). Output: one logit per camera bin on each
axis (yaw, pitch) and one logit per button of `IDM_BUTTONS`. The hotbar press, sneak and
sprint are not predicted: the frames carry no HUD, and sneak/sprint mostly change speed, which
is not readable from one frame pair.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from simulator.actions import BUTTONS, CAMERA_BINS, Action, encode_many
from simulator.checkpoint import load_checkpoint, save_checkpoint

IDM_BUTTONS: tuple[str, ...] = ("forward", "back", "left", "right", "jump", "attack", "use")
_BUTTON_INDEX = [BUTTONS.index(b) for b in IDM_BUTTONS]  # columns of the multi-hot encoding


@dataclass
class IdmConfig:
    resolution: int = 64  # frames are resized to resolution x resolution before the network
    max_shift: int = 20  # pixels: the correlation looks for shifts up to this far (20 degrees ~ 18 px at 64 px)
    regions: int = 4  # the correlation is averaged over regions x regions image regions
    channels: tuple[int, ...] = (16, 32, 64)  # appearance trunk: one stride-2 conv block per entry, on half resolution
    feature_dim: int = 128  # width of the embedding used for the Frechet distance
    dropout: float = 0.3  # on the joined features: the first IDM memorised its training worlds
    # sub-pixel flow (0 = off, as the first shipped IDM): Lucas-Kanade flow on flow_regions x flow_regions image
    # regions, after the global shift is undone. A walking step moves most of a 64 px image by under a pixel,
    # below what the integer-shift correlation can see; the flow field's pattern (expanding = forward) reads it.
    flow_regions: int = 0
    flow_damping: float = 3e-4  # added to the Lucas-Kanade normal matrix ([-1, 1] grey / px): flat regions (sky) read ~0
    flow_clip: float = 4.0  # pixels: flows beyond are not sub-pixel motion but a failed match


IDM_PRESETS: dict[str, IdmConfig] = {
    "tiny": IdmConfig(resolution=32, max_shift=10, channels=(8, 16), feature_dim=32, flow_regions=4),  # tests
    "small": IdmConfig(flow_regions=8),  # the shipped one (checkpoints/idm/)
}


def shift_costs(prev: torch.Tensor, cur: torch.Tensor, max_shift: int, regions: int) -> torch.Tensor:
    """Correlation volume of two grey images [B, 1, R, R]: for every horizontal shift dx and every vertical
    shift dy in -max_shift..max_shift, the mean |cur - prev moved by that shift| over each of regions x regions
    image regions -> [B, 2 * (2 * max_shift + 1), regions, regions]. Turning moves the whole image one way
    (one minimum everywhere), walking makes it expand or slide with parallax (minima that differ by region):
    the heads read motion from the shape of these profiles instead of learning matching from scratch."""
    m = max_shift
    padded = F.pad(prev, (m, m, m, m), mode="replicate")  # [B, 1, R + 2m, R + 2m]
    R = prev.shape[-1]
    costs = []  # pooled right away: the full-resolution volume would be 2 * (2m + 1) images per pair
    for dx in range(-m, m + 1):  # content that moved right by dx: compare cur(x) with prev(x - dx)
        costs.append(F.adaptive_avg_pool2d((cur - padded[..., m:m + R, m - dx:m - dx + R]).abs(), regions))
    for dy in range(-m, m + 1):
        costs.append(F.adaptive_avg_pool2d((cur - padded[..., m - dy:m - dy + R, m:m + R]).abs(), regions))
    volume = torch.cat(costs, dim=1)  # [B, 2 * (2m + 1), regions, regions]
    return volume / (volume.mean(dim=1, keepdim=True) + 1e-3)  # the profile's shape, not the texture's contrast


def global_shift(prev: torch.Tensor, cur: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Integer (dx, dy) that best moves grey images prev onto cur [B, 1, R, R], by phase correlation -> int64 [B, 2]."""
    B, _, R, _ = prev.shape
    cross = torch.fft.fft2(cur[:, 0]) * torch.fft.fft2(prev[:, 0]).conj()  # [B, R, R]
    surface = torch.fft.ifft2(cross / (cross.abs().sqrt() + 1e-6)).real  # peaks at the shift (wrapped)
    shifts = torch.arange(-max_shift, max_shift + 1, device=prev.device)
    window = surface[:, shifts % R][:, :, shifts % R]  # [B, 2m + 1, 2m + 1]: (dy, dx) around zero
    best = window.flatten(1).argmax(1)
    return torch.stack([shifts[best % len(shifts)], shifts[best // len(shifts)]], dim=1)  # (dx, dy)


def residual_flow(prev: torch.Tensor, cur: torch.Tensor, max_shift: int, regions: int, damping: float,
                  clip: float) -> torch.Tensor:
    """Sub-pixel flow of grey images [B, 1, R, R] per region, after undoing the global integer shift:
    Lucas-Kanade least squares of Ix u + Iy v = -It over each of regions x regions image regions -> [B, 2, regions, regions]
    (u, v in pixels; 0 where a region has no texture)."""
    B, _, R, _ = prev.shape
    m = max_shift
    shift = global_shift(prev, cur, m)  # [B, 2]
    padded = F.pad(prev, (m, m, m, m), mode="replicate")  # [B, 1, R + 2m, R + 2m]
    rows = (m - shift[:, 1, None] + torch.arange(R, device=prev.device))  # [B, R]: cur(y) ~ prev(y - dy)
    cols = (m - shift[:, 0, None] + torch.arange(R, device=prev.device))
    moved = padded[torch.arange(B)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]  # [B, 1, R, R]
    smooth = torch.full((1, 1, 3, 3), 1 / 9, device=prev.device)
    p, c = F.conv2d(moved, smooth, padding=1), F.conv2d(cur, smooth, padding=1)  # less aliasing for the gradients
    mean = (p + c) / 2
    ix = (F.pad(mean, (1, 1, 0, 0), mode="replicate")[..., 2:] - F.pad(mean, (1, 1, 0, 0), mode="replicate")[..., :-2]) / 2
    iy = (F.pad(mean, (0, 0, 1, 1), mode="replicate")[..., 2:, :] - F.pad(mean, (0, 0, 1, 1), mode="replicate")[..., :-2, :]) / 2
    it = c - p
    pool = lambda t: F.adaptive_avg_pool2d(t, regions)  # noqa: E731  [B, 1, regions, regions]
    a, b, d = pool(ix * ix) + damping, pool(ix * iy), pool(iy * iy) + damping  # normal matrix [[a, b], [b, d]]
    ex, ey = -pool(ix * it), -pool(iy * it)
    det = a * d - b * b
    flow = torch.cat([(d * ex - b * ey) / det, (a * ey - b * ex) / det], dim=1)  # [B, 2, regions, regions]
    return flow.clamp(-clip, clip)


class InverseDynamics(nn.Module):
    def __init__(self, config: IdmConfig = IdmConfig()):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = 9  # previous RGB, current RGB, their difference
        for c_out in config.channels:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8 if c_out % 8 == 0 else 1, c_out),
                       nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]
            c_in = c_out
        self.trunk = nn.Sequential(*layers, nn.Flatten())  # appearance: blocks appearing or vanishing, the ground
        side = config.resolution // 2 // 2 ** len(config.channels)
        n_corr = 2 * (2 * config.max_shift + 1) * config.regions**2 + 2 * config.flow_regions**2
        self.embed = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(c_in * side * side + n_corr, 2 * config.feature_dim),
                                   nn.SiLU(), nn.Linear(2 * config.feature_dim, config.feature_dim), nn.SiLU())
        self.yaw = nn.Linear(config.feature_dim, CAMERA_BINS)
        self.pitch = nn.Linear(config.feature_dim, CAMERA_BINS)
        self.buttons = nn.Linear(config.feature_dim, len(IDM_BUTTONS))

    def prepare(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] pairs -> float [B, 9, R, R]: both frames in [-1, 1] and their (amplified) difference."""
        R = self.config.resolution
        x = torch.cat([prev, cur], dim=-1).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [B, 6, H, W]
        if x.shape[-2:] != (R, R):
            x = F.interpolate(x, size=(R, R), mode="bilinear", align_corners=False, antialias=True)
        return torch.cat([x, (x[:, 3:] - x[:, :3]) * 2.0], dim=1)  # [B, 9, R, R]

    def features(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] pairs -> embedding [B, feature_dim]."""
        x = self.prepare(prev, cur)
        grey = torch.tensor([0.299, 0.587, 0.114], device=x.device)
        g_prev = (x[:, 0:3] * grey[:, None, None]).sum(1, keepdim=True)  # [B, 1, R, R]
        g_cur = (x[:, 3:6] * grey[:, None, None]).sum(1, keepdim=True)
        with torch.no_grad():  # nothing to learn before the correlation: keep no graph
            corr = shift_costs(g_prev, g_cur, self.config.max_shift, self.config.regions).flatten(1)
            if self.config.flow_regions:
                flow = residual_flow(g_prev, g_cur, self.config.max_shift, self.config.flow_regions,
                                     self.config.flow_damping, self.config.flow_clip)
                corr = torch.cat([corr, flow.flatten(1)], dim=1)
        look = self.trunk(F.avg_pool2d(x, 2))  # [B, c * side * side], on half resolution
        return self.embed(torch.cat([corr, look], dim=1))

    def forward(self, prev: torch.Tensor, cur: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(prev, cur)
        return {"yaw": self.yaw(h), "pitch": self.pitch(h), "buttons": self.buttons(h)}

    def save(self, directory: str | Path, **extra_config) -> Path:
        return save_checkpoint(directory, self.state_dict(), {"kind": "idm", "idm": asdict(self.config), **extra_config},
                               dtype=torch.bfloat16)

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> InverseDynamics:
        state, config = load_checkpoint(directory, device=device)
        if config.get("kind") != "idm":
            raise ValueError(f"{directory} is not an IDM checkpoint (config kind {config.get('kind')!r})")
        cfg = dict(config["idm"])
        cfg["channels"] = tuple(cfg["channels"])
        model = cls(IdmConfig(**cfg)).to(device)
        model.load_state_dict(state)
        return model.eval()


def action_targets(actions: list[Action]) -> dict[str, np.ndarray]:
    """Actions -> IDM targets: {"yaw": int64 [T], "pitch": int64 [T], "buttons": float32 [T, len(IDM_BUTTONS)]}."""
    hot, camera = encode_many(actions)
    return {"yaw": camera[:, 0], "pitch": camera[:, 1], "buttons": hot[:, _BUTTON_INDEX]}


@torch.no_grad()
def predict(model: InverseDynamics, frames: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Predicted action for every transition of a clip uint8 [T, H, W, 3]: arrays of length T-1
    ("yaw", "pitch" bin indices, "buttons" bool [T-1, len(IDM_BUTTONS)]) and "features" [T-1, D]."""
    model.eval()
    device = next(model.parameters()).device
    frames_t = torch.as_tensor(np.ascontiguousarray(frames)).to(device)
    out: dict[str, list[np.ndarray]] = {"yaw": [], "pitch": [], "buttons": [], "features": []}
    for i in range(1, len(frames_t), batch_size):
        prev, cur = frames_t[i - 1:i - 1 + batch_size], frames_t[i:i + batch_size]
        prev = prev[:len(cur)]
        h = model.features(prev, cur)
        out["features"].append(h.cpu().numpy())
        out["yaw"].append(model.yaw(h).argmax(-1).cpu().numpy())
        out["pitch"].append(model.pitch(h).argmax(-1).cpu().numpy())
        out["buttons"].append((model.buttons(h) > 0).cpu().numpy())
    if not out["yaw"]:
        raise ValueError(f"IDM needs at least 2 frames, got a clip of {len(frames_t)}")
    return {k: np.concatenate(v) for k, v in out.items()}


def accuracy(pred: dict[str, np.ndarray], target: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-head accuracy of predictions against targets (both for the same transitions).

    Camera: exact bin and within one bin, over all ticks and over the ticks where that axis moved,
    and balanced (see below). Buttons: balanced accuracy (mean of the hit rates on
    pressed and on unpressed ticks), so that a head that always says "not pressed" scores 0.5,
    not the button's absent rate; NaN for a button never (or always) pressed in the set.
    `action` is the mean of the balanced figures over yaw, pitch and the buttons: the headline figure."""
    res: dict[str, float] = {}
    for axis in ("yaw", "pitch"):
        diff = np.abs(pred[axis].astype(int) - target[axis].astype(int))
        res[f"{axis}_exact"] = float((diff == 0).mean())
        res[f"{axis}_within1"] = float((diff <= 1).mean())
        moving = target[axis] != CAMERA_BINS // 2  # ticks where this axis turned: chance is ~3/20 here
        res[f"{axis}_moving_within1"] = float((diff[moving] <= 1).mean()) if moving.any() else float("nan")
        # balanced like the buttons: still ticks read exactly, moving ticks within one bin, weighted equally,
        # so that a model (or copy-last) that never turns cannot score well on a mostly-still policy
        still_ok = float((diff[~moving] == 0).mean()) if (~moving).any() else float("nan")
        res[f"{axis}_balanced"] = float(np.nanmean([still_ok, res[f"{axis}_moving_within1"]]))
    pb, tb = pred["buttons"].astype(bool), target["buttons"] > 0.5
    for j, name in enumerate(IDM_BUTTONS):
        pos, neg = tb[:, j], ~tb[:, j]
        if pos.any() and neg.any():
            res[name] = float(((pb[pos, j]).mean() + (~pb[neg, j]).mean()) / 2)
        else:
            res[name] = float("nan")
    heads = [res["yaw_balanced"], res["pitch_balanced"]] + [res[b] for b in IDM_BUTTONS if np.isfinite(res[b])]
    res["action"] = float(np.mean(heads))
    return res
