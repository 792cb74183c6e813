"""`patchworld bench collect`: collection frames/s, the shard format's size and speed, loader clips/s.

Three tables, appended to docs/benchmarks.md:
  1. collection: recorded frames/s per worker count (world creation and start placement included);
  2. shard format: np.savez against np.savez_compressed on the frames just collected;
  3. loader: ClipDataset clips/s over those shards.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from simulator.benchlog import add_record_arguments, markdown_table, record
from simulator.cli import parse_resolution
from simulator.data.collect import CollectConfig, collect
from simulator.world.engine import ENGINE_VERSION
from simulator.data.shards import list_shards, read_shard, write_npz


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (pool workers): load-independent."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_collection(resolution: tuple[int, int], episodes: int, steps: int, workers: list[int],
                     tmp: Path) -> tuple[list[list[object]], Path]:
    rows, last = [], tmp
    for w in workers:
        config = CollectConfig(episodes=episodes, steps=steps, resolution=resolution, seed=12345,
                               world_seeds=tuple(range(12345, 12345 + max(2, w))), episodes_per_shard=1,
                               engine_version=ENGINE_VERSION)
        # numba compile caches and the OS file cache: one episode per worker, not timed
        collect(dataclasses.replace(config, episodes=w), tmp / f"warmup{w}", workers=w, progress=False)
        out = tmp / f"w{w}"
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        collect(config, out, workers=w, progress=False)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        frames = episodes * steps
        rows.append([w, episodes, frames, seconds, frames / seconds, frames / cpu])
        last = out
    return rows, last


def bench_format(shard_dir: Path) -> list[list[object]]:
    frames = np.concatenate([e.frames for p in list_shards(shard_dir) for e in read_shard(p)])  # [N, H, W, 3]
    rows = []
    for name, level in (("stored (np.savez)", 0), ("deflate 1 (shards)", 1), ("deflate 3", 3),
                        ("deflate 6 (np.savez_compressed)", 6)):
        buf = io.BytesIO()
        start = time.perf_counter()
        write_npz(buf, {"frames": frames}, compresslevel=level)
        write_s = time.perf_counter() - start
        repeats = 3
        start = time.perf_counter()
        for _ in range(repeats):
            buf.seek(0)
            with np.load(buf, allow_pickle=False) as z:
                z["frames"]
        load_s = (time.perf_counter() - start) / repeats
        size = buf.getbuffer().nbytes
        rows.append([name, len(frames), size / len(frames) / 1024, frames.nbytes / size,
                     len(frames) / write_s, len(frames) / load_s])
    return rows


def bench_loader(shard_dir: Path, clip_frames: int) -> list[list[object]]:
    from simulator.data.loader import ClipDataset

    ds = ClipDataset(shard_dir, clip_frames=clip_frames, shuffle_buffer=64)
    start = time.perf_counter()
    n = sum(1 for _ in ds)
    seconds = time.perf_counter() - start
    return [[clip_frames, n, n / seconds, n * clip_frames / seconds]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resolution", type=parse_resolution, default=(64, 64))
    parser.add_argument("--episodes", type=int, default=48)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    add_record_arguments(parser)


def main(args: argparse.Namespace) -> int:
    H, W = args.resolution
    with tempfile.TemporaryDirectory() as tmp:
        rows, shard_dir = bench_collection(args.resolution, args.episodes, args.steps, args.workers, Path(tmp))
        record(f"Data collection, {H}x{W}", markdown_table(
            ["workers", "episodes", "frames", "seconds", "frames/s (wall)", "frames per CPU-s"], rows),
            notes=f"{args.episodes} episodes x {args.steps} frames, human policy, one episode per shard. "
                  + args.note, dry_run=args.no_record)
        record(f"Shard format, {H}x{W} frames", markdown_table(
            ["writer", "frames", "KiB/frame", "ratio", "write frames/s", "load frames/s"], bench_format(shard_dir)),
            notes="Frames collected by the run above, one array, in memory (no disk). " + args.note,
            dry_run=args.no_record)
        record(f"ClipDataset, {H}x{W}", markdown_table(
            ["clip frames", "clips", "clips/s", "frames/s"], bench_loader(shard_dir, clip_frames=16)),
            notes="One process, no DataLoader workers, page cache warm. " + args.note, dry_run=args.no_record)
    return 0
