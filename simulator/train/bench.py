"""`patchworld bench train`: world-model training steps per second, eager against compiled.

What a session's background training run buys per CPU minute. The clips are random latents of the
shipped shape (the step's cost does not depend on their content); the model starts from random
weights. Each thread count runs eager and then compiled, one after the other, so their ratio is
measured on the same machine minutes apart (this VM's speed moves by ~15%).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from simulator.actions import BUTTON_DIM, CAMERA_BINS
from simulator.benchlog import add_record_arguments, markdown_table, record
from simulator.models.dit import build_dit
from simulator.train.ddp import DistInfo
from simulator.train.world_data import LatentEpisodes
from simulator.train.world_trainer import TRAIN_PRESETS, WorldTrainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", choices=sorted(TRAIN_PRESETS))
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per step (default: the preset's)")
    parser.add_argument("--latent", default="16,16", help="latent height,width (64x64 frames at stride 4: 16,16)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (the compile happens here)")
    add_record_arguments(parser)


def synthetic_episodes(channels: int, size: tuple[int, int], episodes: int = 8, frames: int = 64) -> LatentEpisodes:
    g = torch.Generator().manual_seed(0)
    n = episodes * frames
    return LatentEpisodes(torch.randn(n, channels, *size, generator=g).to(torch.bfloat16),
                          (torch.rand(n, BUTTON_DIM, generator=g) > 0.8).float(),
                          torch.randint(0, CAMERA_BINS, (n, 2), generator=g),
                          torch.arange(0, n + 1, frames), torch.arange(episodes), (4 * size[0], 4 * size[1]))


def measure(cfg, episodes: LatentEpisodes, compile: bool, steps: int, warmup: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_dit(cfg.model, latent_channels=episodes.latents.shape[1])
    trainer = WorldTrainer(cfg, model, DistInfo(0, 1, torch.device("cpu")), compile=compile)
    sampler = episodes.sampler(cfg.clip_frames, seed=0)
    start = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step(sampler.batch(cfg.batch_size))
    warmup_s = time.perf_counter() - start
    times = []
    for _ in tqdm(range(steps), desc=f"{'compiled' if compile else 'eager'} x{torch.get_num_threads()}", unit="step"):
        t0 = time.perf_counter()
        trainer.train_step(sampler.batch(cfg.batch_size))
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    return {"step_s": step_s, "frames_s": cfg.batch_size * cfg.clip_frames / step_s, "warmup_s": warmup_s}


def main(args: argparse.Namespace) -> int:
    cfg = TRAIN_PRESETS[args.preset]
    if args.batch_size:
        cfg = replace(cfg, batch_size=args.batch_size)
    size = tuple(int(v) for v in args.latent.split(","))
    channels = build_dit(cfg.model).cfg.latent_channels
    episodes = synthetic_episodes(channels, size)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        eager = measure(cfg, episodes, False, args.steps, args.warmup)
        compiled = measure(cfg, episodes, True, args.steps, args.warmup)
        for name, m in (("eager", eager), ("compiled", compiled)):
            rows.append([name, threads, round(m["step_s"] * 1000, 1), round(m["frames_s"], 1), round(m["warmup_s"], 1),
                         f"{eager['step_s'] / m['step_s']:.2f}x"])
    table = markdown_table(["pass", "threads", "ms/step (median)", "clip frames/s", f"first {args.warmup} steps s",
                            "speed against eager"], rows)
    notes = (f"Preset {args.preset!r}: batch {cfg.batch_size} clips of {cfg.clip_frames} frames, latents "
             f"{channels}x{size[0]}x{size[1]}, precision {cfg.precision} (bf16 autocast where the CPU has it); a step "
             f"is forward, backward, clipping, AdamW and the EMA update. {args.steps} timed steps after {args.warmup} "
             f"(compiled: the compile is in those). " + args.note)
    record("World-model training steps, eager against compiled", table, notes=notes, dry_run=args.no_record)
    return 0
