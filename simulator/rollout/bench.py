"""`patchworld bench rollout`: sustained frames/s of live generation, decoding and JPEG encoding
included (what the server does per tick), for 1..B sessions stepped together."""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from tqdm import tqdm

from simulator.actions import Action
from simulator.benchlog import add_record_arguments, markdown_table, record
from simulator.rollout.backend import Backend, StartCondition
from simulator.serve.codec import encode_frame

TARGET_FPS = 20.0  # the target at 64x64 on the 2-core CPU with the shipped checkpoint


def scripted_action(tick: int) -> Action:
    """A varied but fixed action stream: walk, turn both ways, look, jump now and then."""
    phase = (tick // 20) % 4
    return Action(forward=phase != 3, jump=tick % 17 == 0, yaw=(6.0, -6.0, 0.0, 2.0)[phase],
                  pitch=(0.0, 0.0, 3.0, -3.0)[phase] if tick % 40 < 10 else 0.0)


def measure(backend: Backend, sessions: int, frames: int, warmup: int, fmt: str = "jpeg") -> dict[str, float]:
    """Step `sessions` sessions together for `frames` ticks after `warmup`; time step + encode (the
    action-to-frame part, what a player waits for) and then the backend's between-tick work (idle)."""
    slots = [backend.open(StartCondition(seed=seed)) for seed in range(sessions)]
    try:
        tick_ms, frame_ms, cpu_ms = [], [], []
        for tick in tqdm(range(warmup + frames), desc=f"{backend.name} x{sessions}", unit="tick"):
            t0, c0 = time.perf_counter(), time.process_time()
            out = backend.step({slot: scripted_action(tick) for slot in slots})
            for frame in out.values():
                encode_frame(frame, fmt)
            t1 = time.perf_counter()
            backend.idle()
            if tick >= warmup:
                tick_ms.append((time.perf_counter() - t0) * 1000.0)
                frame_ms.append((t1 - t0) * 1000.0)
                cpu_ms.append((time.process_time() - c0) * 1000.0)
    finally:
        for slot in slots:
            backend.close(slot)
    tick_ms = np.array(tick_ms)
    total_s = tick_ms.sum() / 1000.0
    return {"sessions": sessions, "ms_per_tick": float(np.median(tick_ms)), "p99_ms": float(np.percentile(tick_ms, 99)),
            "frame_ms": float(np.median(frame_ms)), "cpu_ms": float(np.median(cpu_ms)), "session_fps": frames / total_s, "total_fps": sessions * frames / total_s}


def untrained_backend(sessions: int, device: str) -> Backend:
    """The shipped architecture with random weights (DiT and tokenizer 'cpu' presets, 64x64)."""
    import torch

    from simulator.models.dit import build_dit
    from simulator.models.tokenizer import Tokenizer, preset
    from simulator.rollout.backend import DreamBackend, DreamConfig
    from simulator.rollout.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    config = DreamConfig(max_sessions=sessions, device=device)
    generator = Generator(build_dit("cpu"), Tokenizer(preset("cpu")),
                          GeneratorConfig(resolution=(64, 64), context=config.context), batch_size=sessions, device=device)
    return DreamBackend(generator, config,
                        checkpoint="none (untrained 'cpu' presets)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simulator.serve.cli import add_backend_arguments

    add_backend_arguments(parser)
    parser.add_argument("--untrained", action="store_true",
                        help="time the shipped architecture (DiT and tokenizer 'cpu' presets) with random weights, "
                             "before a trained checkpoint exists: speed does not depend on the weights")
    parser.add_argument("--frames", type=int, default=200, help="timed ticks per configuration")
    parser.add_argument("--warmup", type=int, default=10, help="untimed ticks first")
    parser.add_argument("--sessions", default="1,2,4", help="comma-separated session counts to measure")
    add_record_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from simulator.serve.cli import make_backend

    if args.untrained and args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    counts = [int(c) for c in args.sessions.split(",")]
    if args.max_sessions is None:
        args.max_sessions = max(counts)
    began = time.perf_counter()
    backend = untrained_backend(args.max_sessions, args.device) if args.untrained else make_backend(args)
    if backend is None:
        return 1
    start_s = time.perf_counter() - began  # loading, and a compiled backend's warm-up (its compile or package load)
    rows = []
    for count in counts:
        m = measure(backend, count, args.frames, args.warmup)
        rows.append([count, m["ms_per_tick"], m["p99_ms"], m["frame_ms"], m["cpu_ms"], m["session_fps"], m["total_fps"],
                     "yes" if m["session_fps"] >= TARGET_FPS else "no"])
    height, width = backend.resolution
    what = (f"engine backend (ground-truth voxel engine, not the model), {height}x{width}" if backend.name == "engine"
            else f"dream backend, checkpoint {backend.checkpoint}, {height}x{width}, "
                 f"generator {json.dumps(backend.generator.describe(), default=str)}")
    table = markdown_table(["sessions", "ms/tick (median)", "ms/tick (p99)", "ms step+JPEG (median)",
                            "CPU ms/tick (median)", "frames/s per session",
                            "frames/s total", f">= {TARGET_FPS:.0f} fps per session"], rows)
    notes = (f"{what}. One tick = one batched backend step for all sessions + JPEG encoding of every frame + "
             f"the backend's between-tick work (what the server does per tick; 'step+JPEG' is the part between "
             f"reading the actions and having the frames; 'CPU ms' is the process's CPU time per tick, all threads, "
             f"which other jobs on the cores inflate less than wall time); {args.frames} timed ticks after {args.warmup} warm-up. "
             f"Load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on "
             f"{os.cpu_count()} cores. Backend start (loading and warm-up, a compile's included): {start_s:.1f} s. "
             + args.note).strip()
    record(f"Rollout: {backend.name} backend", table, notes=notes, dry_run=args.no_record)
    return 0
