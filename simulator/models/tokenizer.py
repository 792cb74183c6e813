"""The frame tokenizer: a small-KL convolutional VAE, uint8 frames <-> latents `[C, H/f, W/f]`.

Fully convolutional, so one tokenizer serves any frame size that is a multiple of its stride
`f`. The encoder outputs a mean and a log-variance per latent; `encode()` returns the mean,
shifted and scaled per channel by statistics measured on data (`latent_shift`,
`latent_scale` in the config), so the world model sees roughly unit-variance latents.

The blocks carry no normalisation layers: at batch 1 (the streaming decoder's case) a norm is
pure overhead on this CPU, and residual branches whose last conv starts at zero train stably
without one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from simulator.checkpoint import load_checkpoint, save_checkpoint


@dataclass
class TokenizerConfig:
    # encoder widths, one per resolution level, full resolution first; the stride is
    # 2 ** (len(encoder_channels) - 1): each level after the first halves H and W
    encoder_channels: tuple[int, ...] = (32, 64, 128)
    encoder_blocks: tuple[int, ...] = (0, 1, 1)  # residual blocks per encoder level
    # decoder widths per level, full resolution first (same number of levels as the encoder)
    decoder_channels: tuple[int, ...] = (32, 64, 128)
    decoder_blocks: tuple[int, ...] = (1, 1, 1)  # residual blocks per decoder level
    latent_channels: int = 8  # C
    # per-channel statistics of the encoder's mean on data: encode() returns (mu - shift) / scale.
    # Empty means "not measured yet" (identity); the trainer fills them in.
    latent_shift: list[float] = field(default_factory=list)
    latent_scale: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.encoder_channels = tuple(self.encoder_channels)
        self.encoder_blocks = tuple(self.encoder_blocks)
        self.decoder_channels = tuple(self.decoder_channels)
        self.decoder_blocks = tuple(self.decoder_blocks)
        levels = len(self.encoder_channels)
        lengths = {len(self.encoder_blocks), len(self.decoder_channels), len(self.decoder_blocks)}
        if lengths != {levels}:
            raise ValueError(f"encoder_channels, encoder_blocks, decoder_channels and decoder_blocks "
                             f"must have one entry per level; got {self.encoder_channels}, "
                             f"{self.encoder_blocks}, {self.decoder_channels}, {self.decoder_blocks}")
        for name in ("latent_shift", "latent_scale"):
            values = getattr(self, name)
            if values and len(values) != self.latent_channels:
                raise ValueError(f"{name} has {len(values)} entries, expected latent_channels="
                                 f"{self.latent_channels}")

    @property
    def stride(self) -> int:
        return 2 ** (len(self.encoder_channels) - 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


TOKENIZER_PRESETS: dict[str, TokenizerConfig] = {
    # tests: a few thousand parameters, trains in seconds
    "tiny": TokenizerConfig(encoder_channels=(8, 16, 16), encoder_blocks=(0, 1, 0),
                            decoder_channels=(8, 16, 16), decoder_blocks=(0, 1, 0), latent_channels=4),
    # the shipped CPU tokenizer: stride 4, 16x16x8 latents at 64x64. Narrow at full resolution,
    # where every channel costs 16x what it costs at the latent's; sized by what this shared
    # 2-core CPU can train in about an hour (docs/training.md, "Tokenizer"; speed in
    # docs/benchmarks.md)
    "cpu": TokenizerConfig(encoder_channels=(16, 32, 64), encoder_blocks=(0, 1, 1),
                           decoder_channels=(16, 32, 64), decoder_blocks=(1, 1, 2)),
    # GPU: wider and deeper, same stride and latent shape, so the world model is unchanged
    "gpu": TokenizerConfig(encoder_channels=(64, 128, 256), encoder_blocks=(1, 2, 2),
                           decoder_channels=(64, 128, 256), decoder_blocks=(2, 2, 2)),
}


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))), the second conv zero-initialised so a block starts as identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    """[B, 3, H, W] in [-1, 1] -> [B, 2C, H/f, W/f] (mean and log-variance)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch, blocks = cfg.encoder_channels, cfg.encoder_blocks
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        layers: list[nn.Module] = []
        for level, (c, n) in enumerate(zip(ch, blocks)):
            if level > 0:  # downsample by 2 while widening
                layers += [nn.SiLU(), nn.Conv2d(ch[level - 1], c, 3, stride=2, padding=1)]
            layers += [ResBlock(c) for _ in range(n)]
        self.body = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(F.silu(self.body(self.conv_in(x))))


class Decoder(nn.Module):
    """[B, C, h, w] -> [B, 3, h*f, w*f], unbounded (trained towards [-1, 1])."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch, blocks = cfg.decoder_channels, cfg.decoder_blocks
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1)
        layers: list[nn.Module] = []
        for level in reversed(range(len(ch))):
            layers += [ResBlock(ch[level]) for _ in range(blocks[level])]
            if level > 0:  # upsample by 2 while narrowing
                layers += [nn.SiLU(), nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.Conv2d(ch[level], ch[level - 1], 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        return self.conv_out(F.silu(self.body(self.conv_in(z))))


class Tokenizer(nn.Module):
    """uint8 RGB frames <-> normalised latents. See the module docstring and docs/CONTRACTS.md."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.stride = config.stride
        self.latent_channels = config.latent_channels
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # not persistent: the config (JSON) is their single source of truth
        self.register_buffer("latent_shift", torch.zeros(config.latent_channels), persistent=False)
        self.register_buffer("latent_scale", torch.ones(config.latent_channels), persistent=False)
        self._load_latent_stats()

    # ---- latent normalisation -------------------------------------------------------------
    def _load_latent_stats(self) -> None:
        C = self.latent_channels
        shift = self.config.latent_shift or [0.0] * C
        scale = self.config.latent_scale or [1.0] * C
        self.latent_shift.copy_(torch.tensor(shift, dtype=torch.float32))
        self.latent_scale.copy_(torch.tensor(scale, dtype=torch.float32))

    def set_latent_stats(self, shift: Tensor, scale: Tensor) -> None:
        """Store per-channel statistics of the raw encoder mean (each `[C]`) in config and buffers."""
        if shift.shape != (self.latent_channels,) or scale.shape != (self.latent_channels,):
            raise ValueError(f"latent shift/scale must be [{self.latent_channels}], got "
                             f"{tuple(shift.shape)} and {tuple(scale.shape)}")
        if not bool((scale > 0).all()):
            raise ValueError(f"latent scale must be positive, got {scale.tolist()}")
        self.config.latent_shift = [float(v) for v in shift]
        self.config.latent_scale = [float(v) for v in scale]
        self._load_latent_stats()

    # ---- raw (training) path ----------------------------------------------------------------
    def check_size(self, height: int, width: int) -> None:
        f = self.stride
        if height % f or width % f:
            raise ValueError(f"frame size {height}x{width} (HxW) is not a multiple of the tokenizer "
                             f"stride {f}")

    def frames_to_input(self, frames: Tensor) -> Tensor:
        """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1], after checking the size."""
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [B, H, W, 3], got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        B, H, W, _ = frames.shape
        self.check_size(H, W)
        x = frames.permute(0, 3, 1, 2).float()  # [B, 3, H, W]
        return (x / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, 3, H, W] in [-1, 1] -> raw (unnormalised) mean and log-variance, each [B, C, h, w]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass: (reconstruction [B, 3, H, W] unbounded, mean, logvar) with a sampled latent."""
        mean, logvar = self.posterior(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return self.decoder(z), mean, logvar

    # ---- contract API -------------------------------------------------------------------------
    def encode(self, frames: Tensor) -> Tensor:
        """uint8 [B, H, W, 3] -> float [B, C, H/f, W/f], normalised to ~zero mean, unit variance."""
        mean, _ = self.posterior(self.frames_to_input(frames))
        shift, scale = self.latent_shift.view(1, -1, 1, 1), self.latent_scale.view(1, -1, 1, 1)
        return ((mean.float() - shift) / scale).contiguous()

    def decode(self, latents: Tensor) -> Tensor:
        """[B, C, h, w] normalised latents -> float [B, 3, h*f, w*f] in [-1, 1]."""
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"expected latents [B, {self.latent_channels}, h, w], got "
                             f"{tuple(latents.shape)}")
        return self.decoder(self.denormalize(latents.float())).float().clamp(-1.0, 1.0)

    def denormalize(self, latents: Tensor) -> Tensor:
        """Normalised latents [B, C, h, w] (what `encode` returns) -> the decoder's raw input."""
        shift, scale = self.latent_shift.view(1, -1, 1, 1), self.latent_scale.view(1, -1, 1, 1)
        return (latents * scale + shift).contiguous(memory_format=torch.channels_last)

    def decode_frames(self, latents: Tensor) -> Tensor:
        """[B, C, h, w] -> uint8 [B, h*f, w*f, 3]."""
        return unit_to_frames(self.decode(latents))

    # ---- checkpoints --------------------------------------------------------------------------
    def save(self, directory: str | Path, dtype: torch.dtype | None = torch.bfloat16,
             **extra_config: object) -> None:
        """Weights (bf16 by default: small enough for git) plus the config and any extra fields
        (training steps, measured figures) in config.json."""
        config = {"kind": "tokenizer", "stride": self.stride, "tokenizer": self.config.to_dict(),
                  **extra_config}
        save_checkpoint(directory, self.state_dict(), config, dtype=dtype)

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "Tokenizer":
        state, config = load_checkpoint(directory, device="cpu")
        if config.get("kind") != "tokenizer" or "tokenizer" not in config:
            raise ValueError(f"{directory} does not hold a tokenizer checkpoint "
                             f"(config kind={config.get('kind')!r})")
        model = cls(TokenizerConfig.from_dict(config["tokenizer"]))
        model.load_state_dict(state)
        return model.to(device).eval()


def unit_to_frames(x: Tensor) -> Tensor:
    """Images [B, 3, H, W] in [-1, 1] (clamped here) -> uint8 frames [B, H, W, 3]."""
    return ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def preset(name: str) -> TokenizerConfig:
    """A fresh copy of a named preset (presets are shared; configs get mutated by training)."""
    if name not in TOKENIZER_PRESETS:
        raise ValueError(f"unknown tokenizer preset {name!r}; choose from {sorted(TOKENIZER_PRESETS)}")
    return TokenizerConfig.from_dict(TOKENIZER_PRESETS[name].to_dict())
