"""`patchworld decoder-pairs`: the world model's own latents beside the engine frames they stand for.

    patchworld decoder-pairs --checkpoint checkpoints/world --data data/train --out runs/pairs-train.safetensors
    patchworld decoder-pairs --checkpoint checkpoints/world --data data/heldout --out runs/pairs-heldout.safetensors

The decoder was trained on encoder latents, but in play it decodes what the world model predicts,
which is blurrier and off the encoder's manifold (docs/evaluation.md: generated frames at a third
of the reconstructions' sharpness). These pairs let `patchworld train-tokenizer --generated FILE`
(with `--freeze-encoder`) teach the decoder that input too: each pair is a latent the streaming
Generator produced `h` ticks after being started on true frames, driven by the recorded actions,
and the true frame of that tick. Short horizons only: further out the dream drifts away from the
recording and the true frame is no longer the right answer for its latent.

Episodes are cut at several starts (context frames, then `--horizon` generated ticks) and run
`--slots` at a time through `simulator.eval.rollouts.autoregressive`, the same loop evaluation
uses. The file holds `latents` (bf16 [N, C, h, w], normalised like `Tokenizer.encode`), `frames`
(uint8 [N, H, W, 3]) and `horizons` (int32 [N]), plus the checkpoint and settings as metadata.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from simulator.actions import Action
from simulator.data.shards import list_shards, read_shard
from simulator.eval.episodes import EvalEpisode
from simulator.eval.rollouts import Rollouts, autoregressive, slot_batches


class LatentTap:
    """A Generator that also keeps the clean latent of every frame it returns, per step call."""

    def __init__(self, generator):
        self.generator = generator
        self.resolution = generator.resolution
        self.steps: list[dict[int, torch.Tensor]] = []  # one {slot: latent [C, h, w]} per step call

    def start(self, slot: int, frames: np.ndarray, actions: list[Action]) -> None:
        self.generator.start(slot, frames, actions)

    def step(self, actions: dict[int, Action]) -> dict[int, np.ndarray]:
        frames = self.generator.step(actions)
        self.generator.flush()  # the frame's cache pass: afterwards `prev` holds its clean latent
        self.steps.append({slot: self.generator.prev[slot].detach().clone() for slot in actions})
        return frames

    def release(self, slot: int) -> None:
        self.generator.release(slot)


def cut_episodes(episodes: list, context: int, horizon: int, starts: int) -> list[EvalEpisode]:
    """`starts` windows of context + horizon frames per episode, evenly spread over it."""
    window = context + horizon
    cuts = []
    for ep in episodes:
        if len(ep.frames) < window:
            continue
        for first in np.linspace(0, len(ep.frames) - window, starts).round().astype(int):
            cuts.append(EvalEpisode(ep.frames[first:first + window], ep.actions[first:first + window], ep.seed))
    if not cuts:
        raise ValueError(f"no episode has the {window} frames that context {context} + horizon {horizon} need")
    return cuts


@torch.inference_mode()
def rollout_latents(generator, episodes: list[EvalEpisode], context: int, horizon: int, slots: int,
                    desc: str = "rollouts", progress: bool = True) -> tuple[Rollouts, torch.Tensor]:
    """`simulator.eval.rollouts.autoregressive` through the generator, plus the clean latent of every
    generated frame: [E, horizon, C, h, w] (float32), index h - 1 for horizon h."""
    tap = LatentTap(generator)
    rollouts = autoregressive(tap, episodes, context, horizon, slots, desc=desc, progress=progress)
    latents = torch.empty(len(episodes), horizon, *generator.latent_shape)
    calls = iter(tap.steps)
    for batch in slot_batches(len(episodes), slots):
        for h in range(horizon):
            step = next(calls)
            for slot, e in enumerate(batch):
                latents[e, h] = step[slot]
    return rollouts, latents


@torch.inference_mode()
def make_pairs(generator, episodes: list[EvalEpisode], context: int, horizon: int, slots: int,
               progress: bool = True) -> dict[str, torch.Tensor]:
    """Run the rollouts and return {"latents", "frames", "horizons"} aligned pair by pair (rollouts
    stepped together, then horizon, then rollout)."""
    rollouts, all_latents = rollout_latents(generator, episodes, context, horizon, slots, "decoder pairs", progress)
    latents, frames, horizons = [], [], []
    for batch in slot_batches(len(episodes), slots):
        for h in range(1, horizon + 1):
            for e in batch:
                latents.append(all_latents[e, h - 1])
                frames.append(rollouts.true[e, h])
                horizons.append(h)
    return {"latents": torch.stack(latents).to(torch.bfloat16),
            "frames": torch.from_numpy(np.stack(frames)),
            "horizons": torch.tensor(horizons, dtype=torch.int32)}


def load_pairs(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a pairs file, checking that its arrays agree."""
    pairs = load_file(str(path))
    missing = {"latents", "frames", "horizons"} - set(pairs)
    if missing:
        raise ValueError(f"{path}: not a decoder-pairs file (missing {sorted(missing)})")
    n = len(pairs["latents"])
    if len(pairs["frames"]) != n or len(pairs["horizons"]) != n or pairs["frames"].dtype != torch.uint8:
        raise ValueError(f"{path}: latents, frames and horizons disagree "
                         f"({n}, {len(pairs['frames'])} {pairs['frames'].dtype}, {len(pairs['horizons'])})")
    return pairs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="checkpoints/world", help="world-model checkpoint folder")
    parser.add_argument("--data", required=True, help="shard directory whose episodes drive the rollouts")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--context", type=int, default=8, help="true frames each rollout starts from")
    parser.add_argument("--horizon", type=int, default=3, help="generated ticks kept per rollout (short: see above)")
    parser.add_argument("--starts", type=int, default=5, help="rollouts per episode, spread over it")
    parser.add_argument("--max-episodes", type=int, default=None, help="use at most this many episodes")
    parser.add_argument("--slots", type=int, default=16, help="rollouts stepped together")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")


def main(args: argparse.Namespace) -> int:
    from simulator.rollout.generator import Generator

    if args.threads:
        torch.set_num_threads(args.threads)
    shards = list_shards(args.data)
    episodes = [ep for shard in shards for ep in read_shard(shard)][:args.max_episodes]
    cuts = cut_episodes(episodes, args.context, args.horizon, args.starts)
    generator = Generator.from_checkpoint(args.checkpoint, device=args.device, batch_size=args.slots)
    pairs = make_pairs(generator, cuts, args.context, args.horizon, args.slots)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoint": str(args.checkpoint), "data": str(args.data), "context": str(args.context),
            "horizon": str(args.horizon), "episodes": str(len(episodes)), "rollouts": str(len(cuts)),
            "generator": json.dumps(generator.describe(), default=str)}
    save_file({k: v.contiguous() for k, v in pairs.items()}, str(out), metadata=meta)
    print(f"wrote {len(pairs['latents'])} pairs from {len(cuts)} rollouts of {len(episodes)} episodes to {out}")
    return 0
