"""The one command-line entry point: `patchworld <subcommand>`.

Each subcommand lives in its own module, which exposes
`add_arguments(parser: argparse.ArgumentParser) -> None` and `main(args) -> int | None`.
Modules are imported only when their subcommand runs, so `patchworld --help` is fast and
a machine without pygame can still train.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "play": ("client.play", "play the dreamed world in a window (starts a local server unless --url)"),
    "world": ("simulator.world.play", "play the real voxel engine, or render it headless to an mp4"),
    "serve": ("simulator.serve.cli", "run the websocket server that streams dreamed frames"),
    "watch": ("client.watch", "spectate a session on a server"),
    "collect": ("simulator.data.collect", "collect training episodes from the engine into shards"),
    "train-tokenizer": ("simulator.train.tokenizer", "train the frame tokenizer (autoencoder)"),
    "train": ("simulator.train.world_model", "train the world model (DiT, diffusion forcing)"),
    "decoder-pairs": ("simulator.train.decoder_pairs", "world-model latents beside true frames, to tune the decoder"),
    "train-refiner": ("simulator.train.refiner", "train the pixel refiner of shown frames on the world model's rollouts"),
    "rollout": ("simulator.rollout.cli", "headless rollout of the world model to a recording"),
    "eval": ("simulator.eval.cli", "evaluate a checkpoint against the engine"),
    "eval-sweep": ("simulator.train.world_eval",
                   "quick held-out figures of a world model from shards, comparing generator settings"),
    "eval-compare": ("simulator.eval.compare", "headline figures of several evaluations side by side (mean over seeds)"),
    "device-session": ("simulator.device_session",
                       "a lent GPU machine's visit in one command: kernel tests and benchmarks, data, training"),
    "device-fetch": ("simulator.device_fetch", "turn what a device session sent back into a checkpoint folder"),
    "bench": ("simulator.bench", "speed benchmarks (world, tokenizer, attention, rollout, latency, train)"),
}


def parse_resolution(text: str) -> tuple[int, int]:
    """The one resolution format of every subcommand: "HEIGHTxWIDTH" ("64x64") -> (height, width),
    the order of frame arrays [H, W, 3]."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution {text!r}: expected HEIGHTxWIDTH, e.g. 64x64") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"resolution {text!r}: both sides must be >= 1")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patchworld", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints help or the usage error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"patchworld {name}", description=help_text)
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
