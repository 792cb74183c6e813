"""`patchworld eval --checkpoint CKPT --seeds ... --out DIR`: evaluate a world model against the engine.

Writes DIR/report.md (with PNG charts and pictures) and DIR/metrics.json (every figure).
Episodes are played on the fly by the engine and the exploration policy for the given seeds;
seeds the checkpoint lists as trained on are refused. `--checkpoint copy-last` evaluates the
copy-last-frame baseline itself through the same pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from simulator.benchlog import add_record_arguments
from simulator.eval.idm import InverseDynamics
from simulator.eval.pipeline import EVAL_PRESETS, run_evaluation
from simulator.eval.predictors import BASELINES, load_predictor
from simulator.eval.report import record_headline, write_report

DEFAULT_IDM = Path("checkpoints/idm")
DEFAULT_TOKENIZER = Path("checkpoints/tokenizer")


def parse_seeds(items: list[str]) -> list[int]:
    """"1000 1001 2000-2003" -> [1000, 1001, 2000, 2001, 2002, 2003] (ranges inclusive)."""
    seeds: list[int] = []
    for item in items:
        try:
            if "-" in item.lstrip("-"):
                lo, hi = item.split("-", 1)
                if int(hi) < int(lo):
                    raise ValueError
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(item))
        except ValueError:
            raise ValueError(f"seed {item!r} is neither an integer nor an inclusive range like 2000-2015") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    return seeds


def parse_options(items: list[str]) -> dict[str, int | float | str | bool]:
    """["steps=3", "context=reuse", "reencode=true"] -> {"steps": 3, "context": "reuse", "reencode": True}
    (numbers parsed as numbers, true/false as booleans)."""
    options: dict[str, int | float | str | bool] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"generator option {item!r} is not KEY=VALUE")
        if text.lower() in ("true", "false"):
            options[key] = text.lower() == "true"
            continue
        for kind in (int, float):
            try:
                options[key] = kind(text)
                break
            except ValueError:
                continue
        else:
            options[key] = text
    return options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help=f"world-model checkpoint folder, or a baseline: {', '.join(BASELINES)}")
    parser.add_argument("--seeds", nargs="+", required=True, help="world seeds never trained on (ints or ranges a-b)")
    parser.add_argument("--out", required=True, help="folder for report.md, metrics.json and the PNGs")
    parser.add_argument("--quick", action="store_true", help="short horizons and rollouts (tests, smoke checks)")
    parser.add_argument("--idm", default=str(DEFAULT_IDM), help="inverse-dynamics checkpoint ('none' to skip)")
    parser.add_argument("--tokenizer", help="tokenizer folder for the baselines (default: the generator's own, "
                                            f"else {DEFAULT_TOKENIZER} if present)")
    parser.add_argument("--slots", type=int, help="streams generated side by side")
    parser.add_argument("--horizon", type=int, help="rollout length (default: the preset's)")
    parser.add_argument("--stability-horizon", type=int, help="long-rollout length (default: the preset's)")
    parser.add_argument("--policy", help="exploration-policy preset that plays the episodes")
    parser.add_argument("--generator", nargs="+", default=[], metavar="KEY=VALUE",
                        help="generator options (GeneratorConfig fields), e.g. steps=3 context=reuse")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--device", default="cpu")
    add_record_arguments(parser, opt_in=True)


def _tokenizer(args: argparse.Namespace, predictor):
    from simulator.models.tokenizer import Tokenizer

    if args.tokenizer:
        return Tokenizer.load(args.tokenizer, device=args.device).eval()
    own = getattr(predictor, "tokenizer", None)
    if own is not None:
        return own
    return Tokenizer.load(DEFAULT_TOKENIZER, device=args.device).eval() if DEFAULT_TOKENIZER.is_dir() else None


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    config = dataclasses.replace(EVAL_PRESETS["quick" if args.quick else "full"])
    for name, value in (("slots", args.slots), ("horizon", args.horizon), ("stability_horizon", args.stability_horizon),
                        ("policy", args.policy)):
        if value is not None:
            setattr(config, name, value)
    seeds = parse_seeds(args.seeds)
    predictor, ckpt_config = load_predictor(args.checkpoint, config.resolution, config.slots, args.device,
                                            **parse_options(args.generator))
    idm = idm_info = None
    if args.idm != "none":
        if not Path(args.idm).is_dir():
            raise SystemExit(f"no IDM checkpoint at {args.idm} (pass --idm none to skip action following and FD)")
        idm = InverseDynamics.load(args.idm)
        from simulator.checkpoint import load_config

        idm_info = {k: v for k, v in load_config(args.idm).items() if k in ("idm", "heldout_accuracy", "train_seeds")}
    results, pictures = run_evaluation(predictor, args.checkpoint, ckpt_config, seeds, config,
                                       tokenizer=_tokenizer(args, predictor), idm=idm, idm_info=idm_info)
    results["generator_options"] = parse_options(args.generator)
    path = write_report(results, pictures, args.out)
    if args.record:
        record_headline(results, args.note)
    print(f"wrote {path} and {Path(args.out) / 'metrics.json'}")
    return 0
