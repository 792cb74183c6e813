"""Training on the model's own rollouts (`patchworld train --rollout-context P`; off by default).

Rollouts feed the model its own frames, and every frame it paints loses a little of what the true
one held: one tick at a time the picture blurs, and within ~200 ticks every model so far shows a
flat fog (docs/evaluation.md, "What the one-minute rollouts look like"). Training clips are true
frames, so the model never sees what its inputs look like after many ticks of its own work.

This buffer holds such inputs. Every `refresh` steps it runs the model (the weights being trained,
in the streaming Generator with the settings the exported checkpoint plays with) on a batch of
training spans: `context` true latents, then `frames` ticks of its own, driven by the span's true
actions. A share P of each training batch then comes from the buffer: a clip whose history (its
frames at context levels and every previous latent) is the model's own rollout, up to `frames` ticks
deep, and whose targets are the true frames at the same ticks. Only its frames at target levels
count, noised from the truth as in any clip (WorldTrainer.counted): a new frame predicted from the
model's own history, as in a rollout. The idea is DAgger's, pulling a drifted picture back towards
the world; measured on the CPU model it costs short-horizon fidelity at every depth and share tried
and does not bring terrain back (docs/training.md, "Its own rollouts as context").

`still=True` (`--rollout-still`) rolls out the player standing still, where the engine's answer is a
function of what the model shows: nothing changes. Spans end on a still frame of the data (the same
latent three frames running under no action: the player stands on the ground), and the rollouts go on
under no action. The target of each frame is the model's own previous frame, not the true one: every
model before it, left standing still, sharpened its picture tick after tick into noise within ~100
ticks, and with the true frame as the target it learnt to fade instead (docs/training.md, "Standing
still").
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from simulator.actions import NOOP, encode_many
from simulator.models.dit import DiT
from simulator.models.tokenizer import Tokenizer
from simulator.rollout.generator import Generator, GeneratorConfig
from simulator.train.world_data import LatentEpisodes


STILL_RUN = 3  # frames of the same latent under no action that make a still frame


def still_frames(episodes: LatentEpisodes, context: int) -> torch.Tensor:
    """Indices (into the episodes' frames) of still frames with `context` frames of their episode up to
    them: the same latent as the `STILL_RUN - 1` frames before, which came with no action."""
    hot, bins = encode_many([NOOP])
    idle = (episodes.buttons == torch.from_numpy(hot)).all(1) & (episodes.camera == torch.from_numpy(bins)).all(1)
    same = torch.zeros(len(episodes.latents), dtype=torch.bool)
    same[1:] = (episodes.latents[1:] == episodes.latents[:-1]).flatten(1).all(1) & idle[1:]
    still = same.clone()
    for back in range(1, STILL_RUN - 1):
        still[back:] &= same[:-back]
    position = torch.arange(len(still)) - torch.repeat_interleave(episodes.offsets[:-1],
                                                                   episodes.offsets[1:] - episodes.offsets[:-1])
    still &= position >= max(context, STILL_RUN) - 1  # the run and the context lie in the frame's episode
    return still.nonzero().flatten()


class RolloutBuffer:
    def __init__(self, episodes: LatentEpisodes, share: float, clip_frames: int, generator: GeneratorConfig,
                 tokenizer: Tokenizer, frames: int = 48, rollouts: int = 16, refresh: int = 100,
                 context: int = 4, seed: int = 0, device: torch.device | str = "cpu", still: bool = False):
        if not 0.0 < share <= 1.0:
            raise ValueError(f"rollout context share must lie in (0, 1], got {share}")
        if frames < clip_frames:
            raise ValueError(f"rollouts of {frames} ticks cannot hold a clip of {clip_frames} frames")
        self.share, self.span, self.context, self.frames = share, clip_frames + 1, context, frames
        self.rollouts, self.refresh_every = rollouts, refresh
        self.gen_config, self.tokenizer, self.device = generator, tokenizer, torch.device(device)
        self.rng = torch.Generator().manual_seed(seed + 1)
        self.episodes, self.still, self.sampler = episodes, None, None
        if not still:
            self.sampler = episodes.sampler(context + frames - 1, seed=seed)  # spans of context + frames latents
        else:  # still spans hold one frame as long as asked: no episode need be that long
            self.still = still_frames(episodes, context)
            if len(self.still) == 0:
                raise ValueError(f"no still frame in the training data ({STILL_RUN} frames of the same picture "
                                 f"under no action) to stand still from")
        self.seen: torch.Tensor | None = None  # [R, context + frames, C, h, w]: the rollouts (true context first)
        self.true: dict[str, torch.Tensor] | None = None  # the spans they ran over
        self.refreshed_at: int | None = None

    def due(self, step: int) -> bool:
        return self.refreshed_at is None or step - self.refreshed_at >= self.refresh_every

    @torch.no_grad()
    def refresh(self, model: DiT, step: int) -> float:
        """Roll the model out over a fresh batch of spans; returns the seconds it took."""
        tic = time.time()
        R, c = self.rollouts, self.context
        spans = self.sampler.batch(R) if self.still is None else self._still_spans()  # latents [R, S, C, h, w], ...
        was_training = model.training
        config = replace(self.gen_config, seed=step)  # fresh noise each refresh
        gen = Generator(model, self.tokenizer, config, batch_size=R, device=self.device)
        for r in range(R):
            gen.start_latents(r, spans["latents"][r, :c], spans["buttons"][r, :c], spans["camera"][r, :c])
        own = [spans["latents"][:, t] for t in range(c)]
        slots = list(range(R))
        for t in range(c, c + self.frames):
            own.append(gen.step_latents(slots, spans["buttons"][:, t], spans["camera"][:, t]).float().cpu())
        gen.flush()
        model.train(was_training)
        self.seen, self.true, self.refreshed_at = torch.stack(own, dim=1), spans, step
        return time.time() - tic

    def _still_spans(self) -> dict[str, torch.Tensor]:
        """Spans of `context` true frames ending on a still frame, then that frame for `frames` ticks of no action."""
        end = self.still[torch.randint(0, len(self.still), (self.rollouts,), generator=self.rng)]
        index = torch.minimum(end[:, None] - self.context + 1 + torch.arange(self.context + self.frames), end[:, None])
        ep = self.episodes
        return {"latents": ep.latents[index].float(), "buttons": ep.buttons[index], "camera": ep.camera[index]}

    def mix(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A share of the batch's clips replaced by buffered ones ("own" [B], bool): their targets (latents,
        actions) the true span, their inputs ("context", [B, T+1, C, h, w]: the model's own latents) the
        rollout; only their frames at target levels count in the loss (WorldTrainer.counted). Clips start
        between the last true context frame and the rollout's end, so every input but the clip's first
        previous frame (the true one, at the shallowest start) is the model's own."""
        if self.seen is None:
            raise RuntimeError("the rollout buffer is empty: call refresh() first")
        B = batch["latents"].shape[0]
        pick = (torch.rand(B, generator=self.rng) < self.share).nonzero().flatten()
        context = batch["latents"].clone()
        out = {**batch, "latents": batch["latents"].clone(), "buttons": batch["buttons"].clone(),
               "camera": batch["camera"].clone(), "context": context, "own": torch.zeros(B, dtype=torch.bool)}
        out["own"][pick] = True
        if len(pick) == 0:
            return out
        which = torch.randint(0, self.rollouts, (len(pick),), generator=self.rng)
        last_start = self.context + self.frames - self.span
        start = torch.randint(self.context - 1, last_start + 1, (len(pick),), generator=self.rng)
        index = start[:, None] + torch.arange(self.span)  # [P, T+1]
        # standing still, the engine's rule holds for any picture, the model's own too: the next frame is the
        # last one. Its own last frame is the target, not the true frame it drifted from, which its history
        # may no longer show (that target taught it to fade: docs/training.md, "Standing still")
        out["latents"][pick] = (self.seen[which[:, None], (index - 1).clamp_min(0)] if self.still is not None
                                else self.true["latents"][which[:, None], index])
        out["buttons"][pick] = self.true["buttons"][which[:, None], index]
        out["camera"][pick] = self.true["camera"][which[:, None], index]
        context[pick] = self.seen[which[:, None], index]
        return out
