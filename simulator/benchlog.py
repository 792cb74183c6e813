"""Where benchmark and evaluation figures go: docs/benchmarks.md, with the machine named."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine_description() -> str:
    """CPU model and core count, plus the GPU when torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def add_record_arguments(parser, opt_in: bool = False) -> None:
    """The options of every command that records figures: `--no-record` (or `--record` where
    recording is opt-in) and `--note` (`--notes` is the same option)."""
    if opt_in:
        parser.add_argument("--record", action="store_true", help="append the figures to docs/benchmarks.md")
    else:
        parser.add_argument("--no-record", action="store_true", help="print only; do not append to docs/benchmarks.md")
    parser.add_argument("--note", "--notes", dest="note", default="",
                        help="recorded under the figures (e.g. 'machine shared', which checkpoint is which)")


def record(title: str, table: str, command: str | None = None, notes: str = "",
           path: Path = BENCHMARKS_MD, dry_run: bool = False) -> None:
    """Print `table` and append it to docs/benchmarks.md under a dated heading (print only when
    `dry_run`)."""
    command = command or "patchworld " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    block = (f"\n### {title} ({stamp})\n\nCommand: `{command}`  \nMachine: {machine_description()}\n\n"
             f"{table}\n" + (f"\n{notes}\n" if notes else ""))
    print(block)
    if dry_run:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# Benchmarks\n\nEvery figure the project claims, with the command and machine that produced it.\n")
    with path.open("a") as f:
        f.write(block)
