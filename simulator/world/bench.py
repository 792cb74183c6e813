"""`patchworld bench world`: engine frames/s at 64x64 and 256x256, in one process.

Each case steps a World (physics + render, what data collection pays) along a scripted walk
that turns, looks up and down and crosses chunk borders, over several seeds, after a warm-up
that compiles the numba kernels. Reported: wall-clock frames/s, and frames per CPU-second of
this process (which tells the speed on an idle machine when others share the box).
"""

from __future__ import annotations

import argparse
import os
import time

from simulator.actions import Action
from simulator.benchlog import add_record_arguments, markdown_table, record
from simulator.world.engine import World, WorldConfig

TARGETS = {(64, 64): 200.0, (256, 256): 20.0}  # frames/s the issue asks for


def walk(t: int) -> Action:
    """A deterministic walk: forward with sprint bursts, a slow turn, pitch swinging +-20 degrees."""
    phase = (t // 40) % 4
    return Action(forward=True, sprint=phase == 1, jump=t % 13 == 0, yaw=3.0 if phase != 2 else -6.0,
                  pitch=2.0 if (t // 20) % 2 == 0 else -2.0).quantized()


def measure(width: int, height: int, parallel: bool, seeds: list[int], ticks: int) -> tuple[float, float]:
    """(wall frames/s, frames per CPU-second) over `ticks` steps in each seed's world."""
    frames, wall, cpu = 0, 0.0, 0.0
    for seed in seeds:
        world = World(seed, WorldConfig(width=width, height=height, parallel=parallel))
        world.reset()
        for t in range(10):  # warm-up: compile, fill the view
            world.step(walk(t))
        w0, c0 = time.perf_counter(), time.process_time()
        for t in range(ticks):
            world.step(walk(t))
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        frames += ticks
    return frames / wall, frames / cpu


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="worlds to walk in")
    parser.add_argument("--ticks", type=int, default=400, help="timed steps per seed (64x64; 256x256 gets 1/8)")
    add_record_arguments(parser)


def main(args: argparse.Namespace) -> int:
    rows = []
    for (width, height), target in TARGETS.items():
        ticks = args.ticks if width * height <= 64 * 64 else max(10, args.ticks // 8)
        for parallel in (False, True):
            fps, cpu_fps = measure(width, height, parallel, args.seeds, ticks)
            rows.append([f"{width}x{height}", "parallel (prange)" if parallel else "1 thread", round(fps, 1),
                         round(cpu_fps, 1), target, "yes" if fps >= target else "no"])
            print(rows[-1])
    load = os.getloadavg()
    table = markdown_table(["resolution", "render", "frames/s (wall)", "frames per CPU-s", "target", "met (wall)"],
                           rows)
    notes = (f"World.step (physics + ray-cast render) along a scripted walk, seeds {args.seeds}, one process. "
             f"Load average during the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} "
             f"cores{' (machine shared with other jobs: wall figures are pessimistic)' if load[0] > 1.5 else ''}.")
    record("World engine frames/s", table, notes=notes, dry_run=args.no_record)
    return 0
