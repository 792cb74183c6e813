"""Noise schedule, diffusion-forcing noise levels, and the sampler.

Rectified flow: a latent at noise level t in [0, 1] is `x_t = (1 - t) x0 + t noise`; t = 0 is
clean, t = 1 pure Gaussian noise. The network predicts the clean latent x0 (as previous latent
plus a correction, see simulator/models/dit.py).

Diffusion forcing: every frame of a training clip gets its own noise level, so one network
learns to denoise the newest frame while earlier frames are clean, lightly noised, or noisy.
Half of the frames are drawn at context levels (the light noise the streaming generator puts on
finished frames): that is the regime of generation, and training on slightly noised context
makes rollouts survive their own small errors (context-noise augmentation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class DiffusionConfig:
    logit_mean: float = 0.0  # target-frame levels: t = sigmoid(N(mean, std)) (logit-normal, as SD3)
    logit_std: float = 1.0
    context_prob: float = 0.5  # probability that a training frame is drawn at a context level instead
    context_max: float = 0.15  # context levels in training are uniform in [0, context_max]
    context_noise: float = 0.05  # level of finished frames (cache and previous-latent input) at inference
    snr_min_weight: float = 1.0  # x0-loss weight = clamp(SNR, min, max): extra weight on fine detail
    snr_max_weight: float = 5.0
    shift: float = 1.0  # sampler timestep shift (>1 spends more steps at high noise)


def add_noise(x0: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t noise; `level` broadcasts from the left ([B, T] against [B, T, C, h, w])."""
    t = level.reshape(*level.shape, *([1] * (x0.dim() - level.dim()))).to(x0.dtype)
    return (1 - t) * x0 + t * noise


def sample_levels(shape: tuple[int, ...], cfg: DiffusionConfig, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Independent per-frame noise levels [shape] for diffusion forcing (mixture of target and context levels)."""
    target = torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(shape, generator=generator, device=device))
    context = cfg.context_max * torch.rand(shape, generator=generator, device=device)
    is_context = torch.rand(shape, generator=generator, device=device) < cfg.context_prob
    return torch.where(is_context, context, target)


def sample_context_levels(shape: tuple[int, ...], cfg: DiffusionConfig, generator: torch.Generator | None = None,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """Levels for the previous-latent input channels: uniform in [0, context_max]."""
    return cfg.context_max * torch.rand(shape, generator=generator, device=device)


def loss_weight(level: torch.Tensor, cfg: DiffusionConfig) -> torch.Tensor:
    """Per-frame weight of the x0 loss: the signal-to-noise ratio ((1 - t) / t)^2, clamped."""
    snr = ((1 - level) / level.clamp_min(1e-4)) ** 2
    return snr.clamp(cfg.snr_min_weight, cfg.snr_max_weight)


def timesteps(steps: int, shift: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sampling levels [steps + 1], from 1 (pure noise) down to 0 (clean)."""
    if steps < 1:
        raise ValueError(f"sampler steps must be at least 1, got {steps}")
    t = torch.linspace(1.0, 0.0, steps + 1, device=device)
    return shift * t / (1 + (shift - 1) * t)


def sample(denoise: Callable[[torch.Tensor, float], torch.Tensor], noise: torch.Tensor, steps: int,
           eta: float = 1.0, shift: float = 1.0, draw: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
    """Denoise pure `noise` in `steps` steps; `denoise(x_t, t)` returns the predicted clean latent.

    Each step predicts x0, then moves to the next, lower level. `eta` in [0, 1] says how much of
    the noise at that level is fresh rather than the noise implied by the prediction: eta = 0 is
    the deterministic DDIM/Euler path (it converges to the average of possible frames); eta > 0
    re-draws detail at every level, so extra steps add detail instead of averaging it away.
    `draw()` returns fresh noise shaped like `noise` (default: torch.randn_like), so that a
    caller can give every stream its own random generator.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"sampler eta {eta} is outside [0, 1]")
    levels = timesteps(steps, shift).tolist()
    x = noise
    for t, t_next in zip(levels[:-1], levels[1:]):
        x0 = denoise(x, t)
        if t_next == 0.0:
            return x0
        implied = (x - (1 - t) * x0) / t  # the noise that x would contain if x0 were right
        fresh = torch.randn_like(x) if draw is None else draw()
        x = (1 - t_next) * x0 + t_next * ((1 - eta**2) ** 0.5 * implied + eta * fresh)
    return x
