"""One training step of the world model, EMA weights, and resumable training state.

The objective (simulator/diffusion.py): every target frame gets its own noise level
(diffusion forcing), every previous-latent input its own light context noise, and the network
predicts the clean latent, weighted by the clamped signal-to-noise ratio.

That loss is minimised by the mean of the possible frames, which is fog wherever the future is
uncertain (issue #8). With `adv_weight` > 0 a patch discriminator also judges the predicted clean
latents of frames drawn at target levels, decoded to pixels by the run's frozen tokenizer decoder,
against the true latents decoded the same way (hinge GAN, as the tokenizer's decoder is trained):
the network is pushed to commit to one sharp frame rather than paint their average. With
`adv_previous` (the default) the discriminator sees each frame beside its true previous frame, so
it also judges whether the frame follows from it: judged alone, sharp but made-up block clutter
passes for real (docs/training.md).

Mixed precision is bf16 autocast on CUDA and on CPUs with native bf16 (no loss scaling needed for
bf16), fp32 elsewhere (simulator/models/precision.py).

Resumable state lives in one folder, no pickles: `model.safetensors` + `config.json` (the raw
float32 weights), `ema.safetensors`, `optimizer.safetensors` (AdamW moments, one tensor per
parameter and key) with its hyperparameters in `trainer.json`, and the random states.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from simulator.checkpoint import load_checkpoint, load_optimizer, save_checkpoint, save_optimizer, save_tensors
from simulator.diffusion import DiffusionConfig, add_noise, loss_weight, sample_context_levels, sample_levels
from simulator.models.dit import DiT
from simulator.models.compiled import compiled_or_eager
from simulator.models.precision import autocast, use_bf16
from simulator.models.tokenizer import Tokenizer
from simulator.models.tokenizer_losses import PatchDiscriminator, hinge_d_loss, hinge_g_loss
from simulator.train.ddp import DistInfo, all_mean, wrap


# the previous-latent input noised at a quarter of the cache's level: the network adds its correction to that
# input, so less of the noise stays in each frame; the picture a player stands before holds +2.7 to +3.9 dB better
# after 100 ticks, teacher-forced FD falls to a third, rollout PSNR level (docs/evaluation.md, "Measured: noise on
# the previous latent", session 21)
SHIPPED_PREV_NOISE = 0.0125


def generation_prev_noise(diffusion: DiffusionConfig) -> float:
    """The level a run's exports read the previous latent at (`generator.prev_noise`): the shipped one,
    capped at the run's context_max, a level its training drew."""
    return min(SHIPPED_PREV_NOISE, diffusion.context_max)


@dataclass
class TrainConfig:
    model: str = "cpu"  # DiT preset (simulator.models.dit.PRESETS)
    clip_frames: int = 8  # target frames per clip (plus one previous frame); generator window = clip_frames - 1
    batch_size: int = 12  # clips per step per process
    lr: float = 3e-4
    warmup_steps: int = 200  # linear learning-rate warmup
    # the last this-many steps before max_steps, the learning rate falls linearly to zero (the decay of a
    # warmup-stable-decay schedule: a constant-rate run that ends this way settles lower); 0 = constant
    cooldown_steps: int = 0
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm
    ema_decay: float = 0.999
    max_steps: int = 200_000
    log_every: int = 10
    save_every: int = 200  # steps between resumable checkpoints
    eval_every: int = 1000  # steps between held-out evaluations (and exports when they improve)
    sampler_steps: int = 4  # denoising steps at evaluation and in the shipped generator config
    precision: str = "auto"  # "auto" (bf16 autocast where the hardware is fast at it), "bf16" or "fp32"
    # share of clips whose context (input frames and previous latents) is the model's own prediction
    # (a no-grad pass) while the targets stay true: rollouts feed the model its own frames
    self_context: float = 0.0
    # share of clips whose inputs are the model's own rollouts, up to rollout_frames ticks deep, while
    # the targets stay the true frames (simulator/train/own_rollouts.py); 0 = off
    rollout_context: float = 0.0
    rollout_frames: int = 48  # ticks each buffered rollout runs past its true context
    rollout_batch: int = 16  # rollouts per refresh of the buffer
    rollout_refresh: int = 100  # steps between refreshes
    # the buffered rollouts stand still: from still frames of the data, under no action (own_rollouts.py)
    rollout_still: bool = False
    # patch-GAN term on the decoded clean-latent predictions (0 = off; see the module docstring)
    adv_weight: float = 0.0
    adv_frames: int = 16  # frames judged per step (drawn among those at target noise levels)
    adv_warmup: int = 100  # discriminator-only steps before its verdict reaches the world model
    adv_previous: bool = True  # the discriminator judges (previous frame, frame) pairs, not frames alone
    # > 0: the model's previous latent is also enlarged as walking forward moves the picture
    # (DiTConfig.walk_zoom, per tick; docs/training.md, "The walk zoom"); 0: the preset's (off)
    walk_zoom: float = 0.0
    # DiTConfig.warp_padding of a fresh or --init run: "border" (the preset's) or "zeros"
    warp_padding: str = "border"
    # DiTConfig.clean_base of a fresh or --init run: the correction added to the clean previous latent
    clean_base: bool = False
    # DiT blocks of a fresh or --init run (0: the preset's). Deeper than the --init checkpoint: its blocks
    # come first and the new ones start as identities (adaLN-Zero), so training starts from its predictions
    depth: int = 0
    # MLP hidden width of a fresh or --init run as a multiple of the model width (0: the preset's). Wider
    # than the --init checkpoint's: its hidden units come first and the new ones start with zero output
    # weights, so training starts from its predictions. On the CPU a pass is bound by per-call overhead at
    # 64 tokens a frame: hidden units cost far less time per parameter than blocks (docs/training.md)
    mlp_ratio: float = 0.0
    # context-noise augmentation (simulator.diffusion.DiffusionConfig, whose defaults these are): training
    # draws context and previous-latent levels uniformly in [0, context_max]; the exported generator noises
    # finished frames to context_noise. Higher inference levels trade sharpness for long-horizon PSNR
    # (docs/training.md, "Context noise")
    context_max: float = DiffusionConfig.context_max
    context_noise: float = DiffusionConfig.context_noise
    disc_lr: float = 2e-4
    # share of the objective given to the energy score (0 = the x0 loss alone, 1 = the energy score
    # alone): each clip is predicted twice from independent noise, and the score rewards predictions
    # near the truth but apart from each other, so the network draws one of the possible frames where
    # the x0 loss makes it paint their average (see energy_score below)
    energy_score: float = 0.0
    seed: int = 0

    def diffusion(self) -> DiffusionConfig:
        """The objective's settings this recipe trains with (the rest are DiffusionConfig's defaults)."""
        return DiffusionConfig(context_max=self.context_max, context_noise=self.context_noise)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(model="tiny", clip_frames=4, batch_size=4, lr=1e-3, warmup_steps=10, ema_decay=0.9,
                        save_every=20, eval_every=40, log_every=5),
    # the shipped CPU model: 6 target frames x 64 tokens per clip, 3,072 tokens per step (a few s on a
    # shared 2-core AVX2 CPU); the previous-latent input carries most of what longer context would
    "cpu": TrainConfig(model="cpu", clip_frames=6, batch_size=8, lr=5e-4, warmup_steps=100, save_every=50,
                       eval_every=250),
    # one GPU: wider model, longer clips, bigger batches
    "gpu": TrainConfig(model="gpu", clip_frames=16, batch_size=64, lr=2e-4, warmup_steps=1000,
                       ema_decay=0.9995, save_every=1000, eval_every=2000),
}


def energy_score(first: torch.Tensor, second: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-frame energy score [B, T] of two independent predictions [B, T, C, h, w] of the truth:
    (|a - x| + |b - x|) / 2 - |a - b| / 2, distances as root-mean-square over (C, h, w). A strictly
    proper scoring rule (Gneiting and Raftery 2007): its expectation is lowest when the predictions
    are drawn from the true conditional distribution, not at its mean (the mean of a spread of futures
    pays the first term and earns nothing from the second)."""
    def rms(d: torch.Tensor) -> torch.Tensor:
        return d.pow(2).mean(dim=(2, 3, 4)).add(1e-8).sqrt()

    return 0.5 * (rms(first - truth) + rms(second - truth)) - 0.5 * rms(first - second)


class WorldTrainer:
    def __init__(self, cfg: TrainConfig, model: DiT, info: DistInfo, diffusion: DiffusionConfig | None = None,
                 tokenizer: Tokenizer | None = None, compile: bool = False):
        self.cfg, self.info = cfg, info
        self.diffusion = diffusion or cfg.diffusion()
        self.model = model.to(info.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.net = wrap(self.model, info)
        if compile:  # the training pass (forward and backward) through inductor: a run-time choice, not the recipe's
            self.net = compiled_or_eager(self.net, "the training pass")
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.dim() < 2 or "embed" in name else decay).append(p)
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}],
                                           lr=cfg.lr, betas=(0.9, 0.99), fused=False)
        self.bf16 = use_bf16(cfg.precision, info.device)
        self.step = 0
        self.noise_rng = torch.Generator(device=info.device).manual_seed(cfg.seed * 7919 + info.rank)
        self.tokenizer, self.disc, self.disc_opt, self.disc_steps = None, None, None, 0
        if cfg.adv_weight > 0:
            if tokenizer is None:
                raise ValueError("adv_weight > 0 needs the run's tokenizer: its decoder turns latents into pixels")
            self.tokenizer = copy.deepcopy(tokenizer).to(info.device).eval().requires_grad_(False)
            disc = PatchDiscriminator(in_channels=6 if cfg.adv_previous else 3).to(info.device)
            self.disc_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
            self.disc = wrap(disc, info)

    def lr_at(self, step: int) -> float:
        """Linear warmup, then constant; with `cooldown_steps`, linear to zero at `max_steps`."""
        rate = self.cfg.lr * min(1.0, (step + 1) / max(1, self.cfg.warmup_steps))
        if self.cfg.cooldown_steps:
            rate *= min(1.0, max(0.0, (self.cfg.max_steps - step) / self.cfg.cooldown_steps))
        return rate

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted x0 loss of one batch {"latents" [B, T+1, C, h, w], "buttons", "camera" [B, T+1, ...]}; an
        optional "context" [B, T+1, C, h, w] is what the model sees instead of the true latents (the targets),
        and in the clips an optional "own" [B] (bool) marks, only frames drawn at target levels count."""
        pred, x0, level = self.predict(batch)
        return self.diffusion_loss(pred, x0, level, self.counted(batch, level))

    def counted(self, batch: dict[str, torch.Tensor], level: torch.Tensor) -> torch.Tensor | None:
        """Which frames [B, T] the loss counts: None (all) unless the batch marks clips of the model's own
        rollouts ("own"). Their frames at context levels are near copies of the model's own drifted frames,
        which a rollout never asks it to turn into the truth (it only predicts new frames from them); only
        their frames at target levels count, and those the pass sees noised from the true frame (`predict`):
        a new frame denoised against the model's own history, as in a rollout."""
        own = batch.get("own")
        if own is None or not bool(own.any()):
            return None
        return ~own.to(level.device)[:, None] | (level > self.diffusion.context_max)

    def diffusion_loss(self, pred: torch.Tensor, x0: torch.Tensor, level: torch.Tensor,
                       counted: torch.Tensor | None = None) -> torch.Tensor:
        """The weighted x0 loss; with `energy_score`, pred holds the two draws [2B, ...] (x0 and level [B, ...]).
        `counted` [B, T] (bool) leaves the other frames out (weight 0; the mean still runs over all frames)."""
        w, weight = self.cfg.energy_score, loss_weight(level, self.diffusion)  # weight [B, T]
        if counted is not None:
            weight = weight * counted
        first, second = pred.float().chunk(2) if w > 0 else (pred.float(), None)
        x0_loss = (weight * (first - x0).pow(2).mean(dim=(2, 3, 4))).mean()
        if w == 0:
            return x0_loss
        return (1 - w) * x0_loss + w * (weight * energy_score(first, second, x0)).mean()

    def predict(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training pass: (predicted clean latents, true ones [B, T, C, h, w], noise levels [B, T]).
        With `energy_score` the clips run twice in one batch, from independent noise: predictions [2B, ...]."""
        dev, g = self.info.device, self.noise_rng
        x0 = batch["latents"][:, 1:].to(dev)  # targets, [B, T, C, h, w]
        seen = batch.get("context", batch["latents"]).to(dev)  # what the model sees (own rollouts: not the targets)
        inputs, prev = seen[:, 1:], seen[:, :-1]  # the frames the pass sees and their previous frames
        B, T = x0.shape[:2]
        buttons, camera = batch["buttons"][:, 1:].to(dev), batch["camera"][:, 1:].to(dev)
        level = sample_levels((B, T), self.diffusion, g, dev)  # [B, T], independent per frame
        prev_level = sample_context_levels((B, T), self.diffusion, g, dev)
        counted = self.counted(batch, level)
        if counted is not None:  # own rollouts: the frames it predicts are noised from the truth, their history its own
            inputs = torch.where(counted[:, :, None, None, None], x0, inputs)
        draws = 2 if self.cfg.energy_score > 0 else 1
        noise = torch.randn((draws * B, *x0.shape[1:]), generator=g, device=dev)
        prev_noise = torch.randn((draws * B, *x0.shape[1:]), generator=g, device=dev)
        if self.cfg.self_context > 0:
            inputs, prev = self.own_context(inputs, prev, buttons, camera)
        if draws == 2:
            inputs, prev = torch.cat([inputs, inputs]), torch.cat([prev, prev])
            buttons, camera = torch.cat([buttons, buttons]), torch.cat([camera, camera])
        levels, prev_levels = level.repeat(draws, 1), prev_level.repeat(draws, 1)
        with autocast(dev, self.bf16):
            pred = self.net(add_noise(inputs, levels, noise), add_noise(prev, prev_levels, prev_noise), levels,
                            prev_levels, buttons, camera, prev_clean=prev)
        return pred, x0, level

    def judged(self, pred: torch.Tensor, latents: torch.Tensor, level: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """What the discriminator sees, (predicted, true) [K, 3 or 6, H, W], for up to `adv_frames`
        frames drawn at target levels (above the context levels, which are near copies of the truth):
        decoded frames, with `adv_previous` each behind its decoded true previous frame. `latents` is
        the batch's [B, T+1, C, h, w] (previous frames included). None if no frame qualifies."""
        rows = (level.flatten() > self.diffusion.context_max).nonzero().flatten()
        if rows.numel() == 0:
            return None
        pick = torch.randperm(rows.numel(), generator=self.noise_rng, device=rows.device)[:self.cfg.adv_frames]
        rows = rows[pick]

        def decode(z: torch.Tensor) -> torch.Tensor:
            return self.tokenizer.decoder(self.tokenizer.denormalize(z.float())).float().clamp(-1, 1)

        with autocast(self.info.device, self.bf16):
            fake = decode(pred.flatten(0, 1)[rows])
            with torch.no_grad():
                real = decode(latents[:, 1:].flatten(0, 1)[rows])
                previous = decode(latents[:, :-1].flatten(0, 1)[rows]) if self.cfg.adv_previous else None
        if previous is None:
            return fake, real
        return torch.cat([previous, fake], dim=1), torch.cat([previous, real], dim=1)

    @torch.no_grad()
    def own_context(self, seen: torch.Tensor, prev: torch.Tensor, buttons: torch.Tensor, camera: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(input frames, previous latents) with a `self_context` share of the clips replaced by the model's guesses.

        One no-grad pass predicts every frame from its own noise level (drawn as target levels are: blurry
        guesses at high levels, near copies at low ones) given the frames and previous latents the pass
        would see (the true ones unless the batch brought a context), the previous latents noised at the
        level the run's exports read them at (`generation_prev_noise`). In
        the chosen clips these guesses become the frames the training pass sees and each frame's previous latent, the first one (the clip's true start) excepted. The targets stay the true
        frames, so the model learns to restore what its own frames lost instead of copying it on."""
        dev, g = seen.device, self.noise_rng
        B, T = seen.shape[:2]
        level = sample_levels((B, T), replace(self.diffusion, context_prob=0.0), g, dev)
        noise, prev_noise = torch.randn((2, *seen.shape), generator=g, device=dev)
        prev_level = torch.full_like(level, generation_prev_noise(self.diffusion))  # as the exported generator reads it
        with autocast(dev, self.bf16):
            guess = self.model(add_noise(seen, level, noise), add_noise(prev, prev_level, prev_noise), level,
                               prev_level, buttons, camera, prev_clean=prev).float()
        pick = (torch.rand(B, generator=g, device=dev) < self.cfg.self_context)[:, None, None, None, None]
        inputs = torch.where(pick, guess, seen)
        return inputs, torch.cat([prev[:, :1], inputs[:, :-1]], dim=1)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        pred, x0, level = self.predict(batch)
        loss = self.diffusion_loss(pred, x0, level, self.counted(batch, level))
        logs = {"loss": all_mean(float(loss.detach()), self.info)}
        first = pred[:len(x0)]  # with the energy score, the first of the two draws
        frames = self.judged(first, batch["latents"].to(self.info.device), level) if self.disc is not None else None
        if frames is not None and self.disc_steps >= self.cfg.adv_warmup:
            with autocast(self.info.device, self.bf16):
                g_adv = hinge_g_loss(self.disc(frames[0]).float())
            loss = loss + self.cfg.adv_weight * g_adv
            logs["g_adv"] = float(g_adv.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.update_ema()
        if frames is not None:
            logs["d"] = self.train_discriminator(*frames)
        self.step += 1
        return {**logs, "grad_norm": float(grad_norm)}

    def train_discriminator(self, fake: torch.Tensor, real: torch.Tensor) -> float:
        """One hinge step of the discriminator on decoded frames; returns its loss."""
        with autocast(self.info.device, self.bf16):
            d_loss = hinge_d_loss(self.disc(real).float(), self.disc(fake.detach()).float())
        self.disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.disc_opt.step()
        self.disc_steps += 1
        return float(d_loss.detach())

    @torch.no_grad()
    def update_ema(self) -> None:
        # short warm-up of the decay so early EMA weights are not dominated by the random init
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - decay)

    # --- resumable state ---------------------------------------------------------------------

    def save(self, directory: str | Path, config: dict, rng_state: dict[str, torch.Tensor]) -> None:
        """Everything needed to continue bit-for-bit: weights, EMA, AdamW moments, step, random states."""
        directory = Path(directory)
        save_checkpoint(directory, self.model.state_dict(), {**config, "step": self.step}, dtype=None)
        save_file({k: v.contiguous() for k, v in self.ema.state_dict().items()}, str(directory / "ema.safetensors"))
        opt = self.optimizer.state_dict()
        tensors = {f"{pid}.{key}": (v if torch.is_tensor(v) else torch.tensor(v)).contiguous()
                   for pid, state in opt["state"].items() for key, v in state.items()}
        save_file(tensors, str(directory / "optimizer.safetensors"))
        save_file({"noise_rng": self.noise_rng.get_state(), **rng_state}, str(directory / "rng.safetensors"))
        (directory / "trainer.json").write_text(json.dumps({"step": self.step, "param_groups": opt["param_groups"],
                                                            "disc_steps": self.disc_steps}, indent=2) + "\n")
        if self.disc is not None:
            save_tensors(self._disc_module().state_dict(), directory / "disc.safetensors")
            save_optimizer(self.disc_opt, directory / "disc_optim")

    def _disc_module(self) -> torch.nn.Module:
        return getattr(self.disc, "module", self.disc)  # under DDP, the wrapped discriminator

    def init_weights(self, directory: str | Path) -> int:
        """Warm start from a shipped checkpoint (weights only: it carries no optimizer state).
        Model and EMA both start from its weights; returns the steps it was trained for.

        The model may be the checkpoint's grown: more blocks (the appended ones keep their adaLN-Zero
        identity init) or wider MLPs (the checkpoint's hidden units first; the new ones keep their input
        weights and get zero output weights). Either way its first predictions are the checkpoint's."""
        state, config = load_checkpoint(directory, device=self.info.device)
        own = self.model.state_dict()
        for name, tensor in list(state.items()):
            if name in own and own[name].shape != tensor.shape:
                state[name] = _widened(name, tensor, own[name])
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        grown = {f"blocks.{i}." for i in range(int(config["model"]["depth"]), self.model.cfg.depth)}
        if unexpected or any(not any(k.startswith(g) for g in grown) for k in missing):
            raise ValueError(f"{directory} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}): "
                             "--init takes a checkpoint of the same model, or one with fewer blocks or narrower "
                             "MLPs to grow")
        self.ema.load_state_dict(self.model.state_dict())  # grown parts: their function-preserving init in both
        return int(config.get("steps", 0)) + int(config.get("init_steps", 0))

    def load(self, directory: str | Path) -> dict[str, torch.Tensor]:
        """Restore from `save()`; returns the extra random states saved beside (e.g. the data sampler's)."""
        directory = Path(directory)
        state, _ = load_checkpoint(directory, device=self.info.device, dtype=None)
        self.model.load_state_dict(state)
        self.ema.load_state_dict(load_file(str(directory / "ema.safetensors"), device=str(self.info.device)))
        meta = json.loads((directory / "trainer.json").read_text())
        flat = load_file(str(directory / "optimizer.safetensors"), device=str(self.info.device))
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for name, tensor in flat.items():
            pid, key = name.split(".", 1)
            opt_state.setdefault(int(pid), {})[key] = tensor.cpu() if key == "step" else tensor
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        self.step = int(meta["step"])
        if self.disc is not None and (directory / "disc.safetensors").is_file():  # else: a new discriminator
            self._disc_module().load_state_dict(load_file(str(directory / "disc.safetensors"),
                                                          device=str(self.info.device)))
            load_optimizer(self.disc_opt, directory / "disc_optim", self.info.device)
            self.disc_steps = int(meta.get("disc_steps", 0))
        rng = load_file(str(directory / "rng.safetensors"))
        self.noise_rng.set_state(rng.pop("noise_rng"))
        return rng


def _widened(name: str, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A checkpoint's MLP tensor `source` placed in the wider model's `target` (its fresh init): the
    first layer's weight and bias gain rows (new hidden units keep their fresh input weights), the second
    layer's weight gains zero columns, so the new units add nothing until trained. Anything else whose
    shape differs does not fit."""
    if name.endswith(("mlp.0.weight", "mlp.0.bias")) and source.shape[1:] == target.shape[1:] \
            and len(source) < len(target):
        return torch.cat([source, target[len(source):].to(source.dtype)])
    if name.endswith("mlp.2.weight") and len(source) == len(target) and source.shape[1] < target.shape[1]:
        return torch.cat([source, source.new_zeros(len(source), target.shape[1] - source.shape[1])], dim=1)
    raise ValueError(f"checkpoint tensor {name} {list(source.shape)} does not fit this model's "
                     f"{list(target.shape)}: only more blocks or wider MLPs can be grown")
