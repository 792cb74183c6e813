"""`patchworld device-fetch FILES_AT --out DIR`: what a device session sent back, as a checkpoint folder.

`patchworld device-session` (simulator/device_session.py) leaves OUT/session.json (what each phase did and
measured), OUT/session.log, OUT/world/ (the exported world model's config and its weights, split into parts
of at most 16 MiB when they are larger) and, when the kernel benchmark ran, OUT/benchmarks-device.md. This
joins the parts, checks them against the sha256 the machine recorded, attaches the tokenizer the run
trained on (which did not travel back: this checkout holds it, and its sha256 must match), loads the result
in the streaming generator to prove it plays, and prints what the visit measured. `--record` appends the
kernel benchmark's rows to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from simulator.device_session import REPO, file_sha256, join_parts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="the folder the device's files came back to (the run tool's files_at)")
    parser.add_argument("--out", default=None, help="checkpoint folder to write (e.g. runs/device-world)")
    parser.add_argument("--tokenizer", default=str(REPO / "checkpoints" / "world" / "tokenizer"),
                        help="the tokenizer the visit trained on (its sha256 must be the one the machine recorded)")
    parser.add_argument("--record", action="store_true",
                        help="append the kernel benchmark's rows (benchmarks-device.md) to docs/benchmarks.md")


def summary(record: dict) -> list[str]:
    """One line per phase of a session.json."""
    phases = record.get("phases", {})
    lines = []
    env = phases.get("env", {})
    lines.append(f"env: {env.get('gpu', 'no GPU')}, torch {env.get('torch')}, triton {env.get('triton')}, "
                 f"{env.get('cpu_cores')} cores")
    if "kernels" in phases:
        k = phases["kernels"]
        lines.append(f"kernels: tests {k.get('tests')} (exit {k.get('tests_exit')}, {k.get('tests_seconds')} s), "
                     f"bench exit {k.get('bench_exit')} ({k.get('bench_seconds')} s)")
    if "data" in phases:
        d = phases["data"]
        lines.append(f"data: {d.get('train_frames')} training frames in {d.get('seconds')} s "
                     f"({d.get('frames_per_second')} frames/s; exits {d.get('train_exit')}, {d.get('heldout_exit')})")
    if "train" in phases:
        t = phases["train"]
        last = (t.get("evals") or [{}])[-1]
        lines.append(f"train: {t.get('steps')} steps in {t.get('seconds')} s ({t.get('steps_per_second')} steps/s, "
                     f"exit {t.get('exit')}); last evaluation: teacher-forced {last.get('teacher_forced_psnr_pooled')}, "
                     f"16-frame rollout {last.get('rollout16_psnr_pooled')} dB (pooled)")
    return lines


def main(args: argparse.Namespace) -> int:
    source = Path(args.source)
    record_path = source / "session.json"
    if not record_path.is_file():
        raise SystemExit(f"no session.json in {source}: not the result of `patchworld device-session`")
    record = json.loads(record_path.read_text())
    for line in summary(record):
        print(line)
    if args.record:
        rows = source / "benchmarks-device.md"
        if not rows.is_file():
            raise SystemExit(f"--record: no benchmarks-device.md in {source} (the kernel benchmark did not record)")
        with (REPO / "docs" / "benchmarks.md").open("a") as f:
            f.write(rows.read_text())
        print(f"appended {rows} to docs/benchmarks.md")
    if args.out is None:
        return 0
    pack = record.get("phases", {}).get("pack")
    if not pack:
        raise SystemExit(f"the visit exported no weights (phases: {sorted(record.get('phases', {}))}); see "
                         f"{source / 'session.log'}")
    tokenizer = Path(args.tokenizer)
    if pack.get("tokenizer_sha256") and file_sha256(tokenizer / "model.safetensors") != pack["tokenizer_sha256"]:
        raise SystemExit(f"{tokenizer} is not the tokenizer the visit trained on (sha256 differs): pass the one "
                         "it had (--tokenizer)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    join_parts(source / "world", pack["parts"], out / "model.safetensors", pack["sha256"])
    shutil.copyfile(source / "world" / "config.json", out / "config.json")
    shutil.copytree(tokenizer, out / "tokenizer", dirs_exist_ok=True)
    from simulator.rollout.generator import Generator  # torch-heavy: only once there is a checkpoint to load

    generator = Generator.from_checkpoint(out)
    print(f"wrote {out}: {pack['bytes'] / 2**20:.1f} MiB of weights from {len(pack['parts'])} part(s), checked; "
          f"it plays at {generator.resolution[0]}x{generator.resolution[1]}. Next: patchworld eval --checkpoint {out} "
          "--seeds 100008-100015 --out runs/eval-device --threads 2")
    return 0
