"""`patchworld serve`: run the websocket server (the dreamed world, or the real engine with --engine).

Also the backend options shared by `patchworld play`, `rollout` and the benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
from pathlib import Path

from simulator.cli import parse_resolution
from simulator.rollout.backend import DREAM_PRESETS, Backend, DreamBackend, EngineBackend

DEFAULT_CHECKPOINT = Path("checkpoints/world")


def parse_even_resolution(text: str) -> tuple[int, int]:
    """HEIGHTxWIDTH with even sides (H.264 recordings need them)."""
    height, width = parse_resolution(text)
    if height < 2 or width < 2 or height % 2 or width % 2:
        raise argparse.ArgumentTypeError(f"resolution {text!r}: sides must be even and at least 2")
    return height, width


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help=f"world-model checkpoint folder (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--engine", action="store_true", help="run the real voxel engine instead of the model")
    parser.add_argument("--resolution", type=parse_even_resolution, default=(64, 64),
                        help="engine resolution HEIGHTxWIDTH (the model's comes from its checkpoint)")
    parser.add_argument("--max-sessions", type=int, help="session slots (dream: the batch stepped together)")
    parser.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
    parser.add_argument("--sample-seed", type=int, help="seed of the model's sampling noise")
    parser.add_argument("--steps", type=int, help="denoising steps per frame (default: the checkpoint's)")
    parser.add_argument("--guidance", type=float,
                        help="history guidance weight: each denoising pass is pushed away from the same pass without "
                             "the earlier frames; sharper dreamed frames for lower PSNR (docs/evaluation.md, "
                             "'History guidance'; default: the checkpoint's, 0 = off)")
    parser.add_argument("--prev-noise", type=float,
                        help="the noise level the model reads its previous frame at; for a clean-base model "
                             "(checkpoints/candidates/world-sharp) a dial from faithful (0.0125) to sharp (0.15) "
                             "frames (docs/evaluation.md, 'The sharp candidate'; default: the checkpoint's)")
    parser.add_argument("--context",
                        help="how a finished frame enters the model's cache: the last denoising pass's keys/values "
                             "('reuse', the default for live play: one pass less per tick) or its own pass ('pass', "
                             "as trained)")
    parser.add_argument("--no-compile", action="store_true",
                        help="run the model eagerly instead of through torch.compile (compiled, the default on CPU: "
                             "1.3-1.8x the frames/s of one player for a compile of under a minute the first time "
                             "on a machine; several players: eager batches them, compiled runs one at a time)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads for the model (default: all cores but one, which the server loop, "
                             "JPEG encoding and a local client need: on 2 cores, 1 thread answered actions in 87 ms "
                             "at the median against 169 ms with 2, before tick restarts; docs/benchmarks.md)")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of a server, local (`play`, `bench latency`) or not (`serve`)."""
    parser.add_argument("--no-restart", action="store_true",
                        help="never abandon a tick that has just begun for a player's newer, different action "
                             "(by default the tick restarts with it, which answers it up to a tick sooner)")


def default_threads() -> int:
    """Torch threads for serving on CPU: every core but one (at least one)."""
    return max(1, (os.cpu_count() or 2) - 1)


def make_backend(args: argparse.Namespace) -> Backend | None:
    """The backend the options ask for; None (after printing why) when the checkpoint is missing."""
    if args.engine:
        return EngineBackend(resolution=args.resolution, max_sessions=args.max_sessions or 16)
    if not (args.checkpoint / "config.json").is_file():
        print(f"no world-model checkpoint in {args.checkpoint} (expected {args.checkpoint / 'config.json'} and "
              f"model.safetensors).\nTrain one with `patchworld train`, pass --checkpoint DIR, or play the real "
              f"engine through the same server with --engine.")
        return None
    if not args.device.startswith("cuda"):
        import torch

        torch.set_num_threads(args.threads or default_threads())
    preset = DREAM_PRESETS["gpu" if args.device.startswith("cuda") else "cpu"]
    config = dataclasses.replace(preset, device=args.device, max_sessions=args.max_sessions or preset.max_sessions,
                                 compile=preset.compile and not args.no_compile)
    overrides = {k: v for k, v in (("seed", args.sample_seed), ("steps", args.steps), ("context", args.context),
                                   ("guidance", args.guidance), ("prev_noise", args.prev_noise)) if v is not None}
    from simulator.checkpoint import load_config
    from simulator.rollout.generator import generator_config

    try:  # a folder that is not a world model's, an option out of range: a message, not a traceback
        generator_config(load_config(args.checkpoint), args.checkpoint, **overrides)
    except ValueError as err:
        raise SystemExit(f"{args.checkpoint}: {err}") from None
    return DreamBackend.from_checkpoint(args.checkpoint, config, **overrides)


def start_local_server(args: argparse.Namespace):
    """A server on a free loopback port over the backend the options ask for, in a background
    thread (`patchworld play`, `patchworld bench latency`); None when the backend can't be made."""
    from simulator.serve.server import ServerConfig, ServerThread

    backend = make_backend(args)
    return None if backend is None else ServerThread(backend, ServerConfig(
        port=0, restart_on_action=not args.no_restart)).start()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simulator.serve.server import ServerConfig

    add_backend_arguments(parser)
    add_server_arguments(parser)
    parser.add_argument("--host", default=ServerConfig.host, help="interface to bind (default: localhost only)")
    parser.add_argument("--port", type=int, default=ServerConfig.port)
    parser.add_argument("--record-dir", type=Path, help="record every session (VPT format) under this folder")
    parser.add_argument("--default-seed", type=int, default=ServerConfig.default_seed,
                        help="world seed for players whose hello names no start")


def main(args: argparse.Namespace) -> int:
    from simulator.serve.server import Server, ServerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    backend = make_backend(args)
    if backend is None:
        return 1
    config = ServerConfig(host=args.host, port=args.port, record_dir=args.record_dir,
                          default_seed=args.default_seed, restart_on_action=not args.no_restart)

    async def run() -> None:
        server = Server(backend, config)
        await server.start()
        print(f"patchworld serving the {backend.name} backend at ws://{config.host}:{server.port} "
              f"({backend.resolution[0]}x{backend.resolution[1]}, {backend.max_sessions} session slots)")
        stopped = asyncio.get_running_loop().create_future()
        # SIGTERM stops as cleanly as Ctrl-C: recordings are closed, viewers told
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set_result, None)
        try:
            await stopped
        finally:
            await server.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0
