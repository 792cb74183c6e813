"""`patchworld eval-compare`: the headline figures of several evaluations side by side.

Each argument names a setting and the `patchworld eval` output folders that evaluated it:
`NAME=DIR[,DIR...]`. Several folders of one setting (the same generator with other sampling
seeds, `--generator seed=N`) give the mean and the spread (half the range) of each figure: one
8-world evaluation moves with the sampler's seed by more than many settings differ
(docs/benchmarks.md), so compare settings over several seeds.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from simulator.benchlog import add_record_arguments, markdown_table, record

def _rollout(metrics: dict, key: str) -> list[float]:
    return metrics["rollout"]["methods"]["model"][key]


def _at_horizon(key: str, horizon: int) -> Callable[[dict], float]:
    return lambda metrics: _rollout(metrics, key)[horizon - 1]


def _late_contrast(metrics: dict) -> float:
    """The long rollouts' contrast (spatial colour std) over their second half, as a share of the engine's."""
    series = metrics["stability"]["series"]
    model, engine = (np.asarray(series[k]["colour_std"], dtype=float).mean(axis=1) for k in ("model", "engine"))
    half = len(model) // 2
    return float(model[half:].mean() / engine[half:].mean())


def _sharpness_ratio_max(metrics: dict) -> float:
    """The generated frames' highest sharpness over the engine's at any rollout horizon (above 1: over-sharpened).
    Read from the rollout series, so that evaluations made before issue8 recorded it compare too."""
    roll = metrics["rollout"]
    return float(max(m / t for m, t in zip(roll["methods"]["model"]["sharpness_mean"], roll["true_sharpness_mean"])))


# (column, how to read it from a metrics.json)
FIGURES: list[tuple[str, Callable[[dict], float]]] = [
    ("TF PSNR", lambda m: m["teacher_forced"]["model"]["psnr"]),
    ("TF sharpness", lambda m: m["teacher_forced"]["model"]["sharpness"]),
    ("TF FD", lambda m: m["teacher_forced"]["model"]["fd"]),
    *[(f"h{h}", _at_horizon("psnr_mean", h)) for h in (1, 8, 16, 32, 64)],
    ("mean h1-16", lambda m: float(np.mean(_rollout(m, "psnr_mean")[:16]))),
    *[(f"sharpness h{h}", _at_horizon("sharpness_mean", h)) for h in (1, 8, 32)],
    # issue 8's targets: at least 0.70 at every horizon up to 64; at most 2x the tokenizer's own FD
    ("sharpness / true, min", lambda m: m["issue8"]["generated_sharpness_ratio_min"]),
    ("sharpness / true, max", _sharpness_ratio_max),
    ("still sharpness / true", lambda m: m["probes"]["stand_still"]["mean"]["return_sharpness_ratio"]),
    ("FD / tokenizer's, max", lambda m: m["issue8"]["generated_fd_max_over_tokenizer_fd"]),
    ("IDM first 8", lambda m: m["control"]["first_8"]["generated"]["action"]),
    ("IDM first 64", lambda m: m["control"]["first_64"]["generated"]["action"]),
    ("yaw slope", lambda m: m["camera"]["methods"]["model"]["all"]["yaw"]["slope"]),
    ("colour drift from", lambda m: m["stability"]["collapse_onset"]["colour_drift"]),
    ("flat from", lambda m: m["stability"]["collapse_onset"]["flat"]),
    ("long contrast", _late_contrast),
    ("still 5 s", lambda m: m["probes"]["stand_still"]["mean"]["return_vs_engine_psnr"]),
]


def parse_setting(text: str) -> tuple[str, list[Path]]:
    """"NAME=DIR[,DIR...]" -> (name, folders)."""
    name, sep, dirs = text.partition("=")
    if not sep or not name or not dirs:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=DIR[,DIR...]")
    return name, [Path(d) for d in dirs.split(",")]


def figures(folder: Path) -> dict[str, float | None]:
    """The headline figures of one evaluation folder (None where the run did not measure one)."""
    path = folder / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no metrics.json (a `patchworld eval --out` folder?)")
    metrics = json.loads(path.read_text())
    out: dict[str, float | None] = {}
    for column, read in FIGURES:
        try:
            value = read(metrics)
        except (KeyError, IndexError, TypeError):
            value = None
        out[column] = None if value is None else float(value)
    return out


def _cell(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    mean, spread = float(np.mean(known)), (max(known) - min(known)) / 2
    digits = 0 if all(float(v).is_integer() for v in known) else 2  # frame numbers stay whole
    return f"{mean:.{digits}f}" if len(known) == 1 else f"{mean:.{digits}f} ±{spread:.{digits}f}"


def compare_table(settings: list[tuple[str, list[Path]]]) -> str:
    """Markdown: one row per setting (mean ± half range over its folders), one column per figure."""
    rows = []
    for name, folders in settings:
        per_run = [figures(f) for f in folders]
        rows.append([f"{name} ({len(folders)} run{'s' if len(folders) > 1 else ''})"]
                    + [_cell([r[column] for r in per_run]) for column, _ in FIGURES])
    return markdown_table(["setting"] + [column for column, _ in FIGURES], rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("settings", nargs="+", type=parse_setting, metavar="NAME=DIR[,DIR...]",
                        help="a setting's name and the `patchworld eval --out` folders that evaluated it")
    parser.add_argument("--title", default="World model: evaluations compared", help="section title with --record")
    add_record_arguments(parser, opt_in=True)


def main(args: argparse.Namespace) -> int:
    try:
        table = compare_table(args.settings)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    notes = ("TF = teacher-forced; h = rollout horizon (PSNR, dB); FD on the IDM's features; 'sharpness / true, "
             "min' and 'FD / tokenizer's, max' = the generated frames' worst ratios over the rollout's horizons "
             "(issue 8's targets: 0.70, 2); 'sharpness / true, max' = their highest (above 1: over-sharpened); "
             "'still sharpness / true' = the stand-still probe's last frame (100 ticks) against the engine's; "
             "'colour drift from' = first frame of the long rollouts where colour drift sets in. Several runs of a "
             "setting: mean ±half their range. " + args.note).strip()
    if args.record:
        record(args.title, table, notes=notes)
    else:
        print(table + "\n\n" + notes)
    return 0
