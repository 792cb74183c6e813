"""`patchworld bench TARGET`: speed benchmarks.

Each target lives beside the code it measures and exposes `add_arguments(parser)` and
`main(args)`, like a subcommand. Benchmarks print a table and append it to
docs/benchmarks.md (see `simulator.benchlog`).
"""

from __future__ import annotations

import argparse
import importlib

TARGETS: dict[str, tuple[str, str]] = {
    "world": ("simulator.world.bench", "engine frames/s at 64x64 and 256x256"),
    "collect": ("simulator.data.bench", "data collection frames/s"),
    "tokenizer": ("simulator.models.tokenizer_bench", "tokenizer encode/decode speed"),
    "attention": ("kernels.bench", "Triton attention kernels against SDPA and FlexAttention"),
    "rollout": ("simulator.rollout.bench", "streaming generation frames/s"),
    "train": ("simulator.train.bench", "world-model training steps/s, eager against compiled"),
    "latency": ("client.bench_latency", "action-to-frame latency through a real client"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="what to measure")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="options of the target")


def main(args: argparse.Namespace) -> int:
    module_name, help_text = TARGETS[args.target]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"patchworld bench {args.target}", description=help_text)
    module.add_arguments(sub)
    return int(module.main(sub.parse_args(args.rest)) or 0)
