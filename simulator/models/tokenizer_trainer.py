"""One optimisation step of the tokenizer (and its optional discriminator), and the training
state on disk: weights and optimizer moments as safetensors, counters as JSON. No pickles.

`patchworld train-tokenizer` (simulator/train/tokenizer.py) drives this; tests drive it directly.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from simulator.checkpoint import load_optimizer, save_optimizer, save_tensors
from simulator.models.precision import use_bf16
from simulator.models.tokenizer import Tokenizer, TokenizerConfig
from simulator.models.tokenizer_losses import (PatchDiscriminator, edge_energy_l1, feature_matching_loss, hinge_d_loss,
                                               hinge_g_loss, kl_divergence, reconstruction_loss)


@dataclass
class TokenizerTrainConfig:
    batch_size: int = 64
    lr: float = 1e-3  # AdamW peak learning rate
    min_lr_ratio: float = 0.05  # cosine floor, as a fraction of lr (only when the step budget is known)
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    gradient_weight: float = 1.0  # weight of the image-gradient L1 (edge term)
    kl_weight: float = 1e-6  # small: the KL only keeps the latent from drifting to huge values
    adv_weight: float = 0.0  # hinge-GAN generator weight; 0 disables the discriminator
    adv_start: int = 2000  # steps of plain reconstruction before the discriminator joins
    # weight of the discriminator feature-matching L1 (pix2pixHD); needs the discriminator (adv_weight > 0)
    fm_weight: float = 0.0
    # weight of the local edge-energy L1 (tokenizer_losses.edge_energy_l1): contrast where the true frame has it
    energy_weight: float = 0.0
    energy_window: int = 8  # ... over regions of this many pixels a side
    disc_lr: float = 2e-4
    disc_channels: int = 32
    hflip: bool = True  # mirror half the batch: the world has no handedness
    # train on random crops of this size (0: whole frames). The model is fully convolutional,
    # so a 32x32 crop costs a quarter of a 64x64 frame and shows as many textures per FLOP.
    # Offsets are multiples of 4 (the stride) so crops keep the latent grid's phase.
    crop: int = 0
    # bf16 autocast. None means "where it is fast" (simulator.models.precision): on CUDA, and on
    # CPUs with AVX512-BF16/AMX (a training step 1.75x faster than fp32 there); CPUs without them
    # emulate bf16 convolutions 6-50x SLOWER than fp32, so they train in fp32
    bf16: bool | None = None
    # train the decoder only: the encoder, hence the latent space and its shift/scale, stay fixed,
    # so a world model trained on these latents keeps working with the improved decoder
    freeze_encoder: bool = False
    # distillation (`--teacher`): a new, cheaper encoder learns a trained tokenizer's latent space.
    # The student starts with the teacher's decoder and latent shift/scale; freeze_decoder keeps
    # them, so a world model trained on the teacher's latents works with the student unchanged.
    # distill_weight: weight of the MSE between student and teacher latents (normalised units)
    distill_weight: float = 0.0
    freeze_decoder: bool = False


TRAIN_PRESETS: dict[str, TokenizerTrainConfig] = {
    "tiny": TokenizerTrainConfig(batch_size=8, lr=3e-3, warmup_steps=5, adv_start=0),
    # no edge term: L1 alone measured better at equal steps (docs/training.md, "Tokenizer")
    "cpu": TokenizerTrainConfig(batch_size=32, crop=32, warmup_steps=100, gradient_weight=0.0),
    "gpu": TokenizerTrainConfig(batch_size=128, lr=1e-3, warmup_steps=500),
}


def frames_to_unit(frames: Tensor) -> Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1], channels_last."""
    return (frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)


class TokenizerTrainer:
    """Owns the model, the optional discriminator, their AdamW optimizers and the step counter."""

    def __init__(self, model: Tokenizer, cfg: TokenizerTrainConfig, device: torch.device,
                 total_steps: int | None = None, teacher: Tokenizer | None = None):
        self.model, self.cfg, self.device, self.total_steps = model, cfg, device, total_steps
        self.step = 0
        if cfg.freeze_encoder and cfg.freeze_decoder:
            raise ValueError("freeze_encoder and freeze_decoder together leave nothing to train")
        if cfg.crop % model.stride:
            raise ValueError(f"crop {cfg.crop} is not a multiple of the tokenizer stride {model.stride}")
        if (teacher is None) != (cfg.distill_weight == 0):
            raise ValueError("distill_weight > 0 and a teacher tokenizer go together")
        self.teacher = None if teacher is None else teacher.to(device).eval().requires_grad_(False)
        model.encoder.requires_grad_(not cfg.freeze_encoder)
        model.decoder.requires_grad_(not cfg.freeze_decoder)
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=(0.9, 0.99),
                                     weight_decay=cfg.weight_decay)
        self.disc: PatchDiscriminator | None = None
        self.disc_opt: torch.optim.Optimizer | None = None
        if cfg.energy_window < 1:
            raise ValueError(f"energy_window is a region side in pixels, >= 1; got {cfg.energy_window}")
        if cfg.fm_weight > 0 and cfg.adv_weight <= 0:
            raise ValueError("fm_weight > 0 matches the discriminator's features: it needs adv_weight > 0")
        if cfg.adv_weight > 0:
            self.disc = PatchDiscriminator(cfg.disc_channels).to(device).to(memory_format=torch.channels_last)
            self.disc_opt = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))

    def autocast(self):
        """bf16 autocast where it pays (see `TokenizerTrainConfig.bf16`), else a no-op."""
        enabled = self.cfg.bf16 if self.cfg.bf16 is not None else use_bf16("auto", self.device)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _crop_offset(self, H: int, W: int) -> tuple[int, int] | None:
        """One random stride-aligned (y, x) for a `cfg.crop` crop of H x W, or None for whole frames."""
        size, f = self.cfg.crop, self.model.stride
        if size <= 0 or (size >= H and size >= W):
            return None
        return f * int(torch.randint((H - size) // f + 1, ())), f * int(torch.randint((W - size) // f + 1, ()))

    def random_crop(self, frames: Tensor) -> Tensor:
        """uint8 [B, H, W, 3] -> [B, crop, crop, 3] at one random stride-aligned offset per batch."""
        at = self._crop_offset(*frames.shape[1:3])
        if at is None:
            return frames
        (y, x), size = at, self.cfg.crop
        return frames[:, y:y + size, x:x + size]

    def random_crop_pairs(self, latents: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        """The same crop of latents [G, C, h, w] and of the frames [G, H, W, 3] they decode to."""
        at = self._crop_offset(*frames.shape[1:3])
        if at is None:
            return latents, frames
        (y, x), size, f = at, self.cfg.crop, self.model.stride
        return (latents[:, :, y // f:(y + size) // f, x // f:(x + size) // f],
                frames[:, y:y + size, x:x + size])

    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        if self.total_steps is None:  # open-ended (minutes budget, resumable): constant after warmup
            return cfg.lr
        t = min(1.0, (step - cfg.warmup_steps) / max(1, self.total_steps - cfg.warmup_steps))
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    def train_step(self, frames: Tensor, generated: tuple[Tensor, Tensor] | None = None) -> dict[str, float]:
        """One step on uint8 frames [B, H, W, 3] already on the device; returns the loss parts.

        generated: optional (latents [G, C, h, w], normalised as `Tokenizer.encode` returns them,
        e.g. what the world model predicted; uint8 frames [G, H, W, 3] they should decode to),
        decoded beside the reconstructions and held to the same losses. Only with a frozen
        encoder: those latents live in the encoder's space, which must not move under them."""
        cfg = self.cfg
        x = frames_to_unit(self.random_crop(frames))
        if cfg.hflip:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if generated is not None:
            if not cfg.freeze_encoder:
                raise ValueError("decoding generated latents needs freeze_encoder: their latent space must stay fixed")
            latents, targets = self.random_crop_pairs(*generated)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        use_adv = self.disc is not None and self.step >= cfg.adv_start

        with self.autocast():
            recon, mean, logvar = self.model(x)
            if generated is not None:  # no flips: a mirrored latent is not the latent of the mirrored frame
                recon = torch.cat([recon, self.model.decoder(self.model.denormalize(latents.float()))])
        recon = recon.float()
        if generated is not None:
            x = torch.cat([x, frames_to_unit(targets)])
        rec, logs = reconstruction_loss(recon, x, cfg.gradient_weight)
        kl = kl_divergence(mean.float(), logvar.float())
        loss = rec + cfg.kl_weight * kl
        if cfg.energy_weight > 0:
            energy = edge_energy_l1(recon, x, cfg.energy_window)
            loss = loss + cfg.energy_weight * energy
            logs["energy"] = float(energy.detach())
        if self.teacher is not None:  # the generated latents (if any) follow the frames in `x`: not encoded
            with torch.no_grad(), self.autocast():
                target = self.teacher.posterior(x[:len(mean)])[0]
            scale = self.model.latent_scale.view(1, -1, 1, 1)
            distill = ((mean.float() - target.float()) / scale).pow(2).mean()
            loss = loss + cfg.distill_weight * distill
            logs["distill"] = float(distill.detach())
        if use_adv:
            with self.autocast():
                fake_feats, fake_logits = self.disc.features(recon)
                g_adv = hinge_g_loss(fake_logits.float())
            loss = loss + cfg.adv_weight * g_adv
            logs["g_adv"] = float(g_adv.detach())
            if cfg.fm_weight > 0:
                with torch.no_grad(), self.autocast():
                    real_feats, _ = self.disc.features(x)
                fm = feature_matching_loss(fake_feats, real_feats)
                loss = loss + cfg.fm_weight * fm
                logs["fm"] = float(fm.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()

        if use_adv:
            with self.autocast():
                d_loss = hinge_d_loss(self.disc(x).float(), self.disc(recon.detach()).float())
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()
            logs["d"] = float(d_loss.detach())
        self.step += 1
        return {"loss": float(loss.detach()), "kl": float(kl.detach()), **logs}

    @torch.no_grad()
    def measure_latent_stats(self, frames: Tensor, batch_size: int = 256) -> None:
        """Per-channel mean and std of the encoder mean over uint8 frames [N, H, W, 3]; stored in
        the model's config so that encode() returns ~unit-variance latents. A frozen encoder keeps
        the statistics it came with (the latent space a world model was trained in)."""
        if self.cfg.freeze_encoder or self.teacher is not None:
            return
        means = []
        for i in range(0, len(frames), batch_size):
            x = frames_to_unit(frames[i:i + batch_size].to(self.device))
            means.append(self.model.posterior(x)[0].float())
        mu = torch.cat(means)  # [N, C, h, w]
        shift = mu.mean(dim=(0, 2, 3))
        scale = mu.std(dim=(0, 2, 3)).clamp_min(1e-6)
        self.model.set_latent_stats(shift.cpu(), scale.cpu())

    # ---- state on disk --------------------------------------------------------------------------
    def save_state(self, directory: str | Path, **extra: object) -> None:
        """Resumable state: model (fp32) + config via Tokenizer.save, optimizer moments and the
        discriminator as safetensors, counters in config.json."""
        directory = Path(directory)
        self.model.save(directory, dtype=None, step=self.step, train=asdict(self.cfg), **extra)
        save_optimizer(self.opt, directory / "optim")
        if self.disc is not None:
            save_tensors(self.disc.state_dict(), directory / "disc.safetensors")
            save_optimizer(self.disc_opt, directory / "disc_optim")

    @classmethod
    def resume(cls, directory: str | Path, device: torch.device, total_steps: int | None = None,
               teacher: Tokenizer | None = None, **train_overrides: object) -> "TokenizerTrainer":
        directory = Path(directory)
        model = Tokenizer.load(directory, device=device).to(memory_format=torch.channels_last).train()
        config = json.loads((directory / "config.json").read_text())
        cfg = replace(TokenizerTrainConfig(**config["train"]), **train_overrides)
        trainer = cls(model, cfg, device, total_steps, teacher)
        trainer.step = int(config["step"])
        load_optimizer(trainer.opt, directory / "optim", device)
        if trainer.disc is not None and (directory / "disc.safetensors").is_file():
            trainer.disc.load_state_dict(load_file(str(directory / "disc.safetensors"), device=str(device)))
            load_optimizer(trainer.disc_opt, directory / "disc_optim", device)
        return trainer


def build_trainer(model_config: TokenizerConfig, cfg: TokenizerTrainConfig, device: torch.device,
                  total_steps: int | None = None, teacher: Tokenizer | None = None) -> TokenizerTrainer:
    model = Tokenizer(model_config).to(device).to(memory_format=torch.channels_last).train()
    return TokenizerTrainer(model, cfg, device, total_steps, teacher)


def student_of(teacher: Tokenizer, encoder: dict[str, object]) -> Tokenizer:
    """A tokenizer with the teacher's decoder, latent shape and latent shift/scale, and a fresh
    encoder of the given shape (`encoder_channels`, `encoder_blocks`)."""
    unknown = set(encoder) - {"encoder_channels", "encoder_blocks"}
    if unknown:
        raise ValueError(f"a student differs from its teacher in the encoder only, not in {sorted(unknown)}")
    student = Tokenizer(TokenizerConfig.from_dict({**teacher.config.to_dict(), **encoder}))
    student.decoder.load_state_dict(teacher.decoder.state_dict())
    return student


def widened_decoder(model: Tokenizer, decoder_channels: tuple[int, ...]) -> Tokenizer:
    """`model` with a wider decoder that decodes exactly as the old one did at the start.

    Every decoder conv keeps its trained weights in its leading slice; the new output channels keep
    their fresh initialisation and every weight reading a new input channel starts at zero, so the
    new channels carry signal the old ones never see until training moves those zeros (their
    gradients are not zero: the new channels' activations are not). Encoder, latent shape and
    latent shift/scale are the model's: world models trained on its latents need no change."""
    old = tuple(model.config.decoder_channels)
    decoder_channels = tuple(decoder_channels)
    if len(decoder_channels) != len(old) or any(n < o for n, o in zip(decoder_channels, old)):
        raise ValueError(f"a widened decoder has the same levels, each at least as wide: {old} -> {decoder_channels}")
    wide = Tokenizer(TokenizerConfig.from_dict({**model.config.to_dict(), "decoder_channels": decoder_channels}))
    wide.encoder.load_state_dict(model.encoder.state_dict())
    trained = model.decoder.state_dict()
    with torch.no_grad():
        for name, param in wide.decoder.state_dict().items():
            before = trained[name]
            if param.ndim == 4:  # conv weight [out, in, k, k]
                param[:, before.shape[1]:] = 0
            param[tuple(slice(0, n) for n in before.shape)] = before
    return wide
