"""A lent GPU machine's whole visit as one prepared command: `patchworld device-session --out $OUT`.

A session is lent a GPU only by chance, and briefly (the device tool's README: 15 minutes of device time
with every start counted, one command of at most 10 minutes, 64 MiB of working tree there, and back only 8
files of at most 16 MiB each). A visit improvised command by command spends that time starting machines and
reading errors; this one does, under one wall-clock budget and in this order, what a visit is for:

1. `env`: the GPU, torch, triton and numba versions.
2. `kernels`: tests/test_kernels.py on the GPU (pytest installed from carried wheels in `.whl/` when the
   machine lacks it), then `python -m kernels.bench` (training and streaming attention, ours against SDPA
   and FlexAttention); the rows bench records in docs/benchmarks.md come back as `benchmarks-device.md`.
3. `data`: the engine collects the training and held-out datasets on every core (`patchworld collect`).
4. `train`: the world model on the GPU for the rest of the budget (`patchworld train --minutes`),
   warm-started with `--init` when given; its best EMA weights are exported in bf16.
5. `pack`: the exported weights split into parts the way back takes (at most 16 MiB each), with sha256s.

Everything it learns goes to OUT/session.json (each phase's seconds, exit status and figures) and
OUT/session.log (every phase's output); the weights to OUT/world/. A phase that fails is recorded and the
next ones run when they can (training needs data, not kernels). Back on this machine,
`patchworld device-fetch FILES_AT --out runs/device-world` joins and checks the parts and attaches the
tokenizer the run trained on; docs/training.md, "A device session", has the call and what to do next.
It imports nothing beyond the standard library when loaded (torch only to size the model and read the
GPU); the phases run as subprocesses of this interpreter (the machine has torch, triton, numpy, numba,
safetensors and tqdm, not pygame, websockets or gymnasium).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulator.benchlog import machine_description

REPO = Path(__file__).resolve().parent.parent
PART_BYTES = 16 * 1024 * 1024 - 4096  # the way back takes files of at most 16 MiB (a margin for the filesystem)
MAX_FILES_BACK = 8  # ... and at most 8 of them
WHEELS = REPO / ".whl"  # ignored by git; carried to the machine (`carry: [".whl"]`)
PHASES = ("env", "kernels", "data", "train", "pack")
# what training leaves of the budget: reading and encoding the shards (~10-20 s), its last evaluation (~20-30 s),
# export and pack
TRAIN_RESERVE_S = 100.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="where the results go ($OUT on the device machine)")
    parser.add_argument("--prepare", action="store_true",
                        help="only download pytest's wheels into .whl/ (here, before the visit) and stop")
    parser.add_argument("--minutes", type=float, default=9.0,
                        help="wall-clock budget of the whole visit (default 9: one device command runs at most 10)")
    parser.add_argument("--skip", default="", help="phases to leave out, comma-separated (of: kernels, data, train)")
    parser.add_argument("--work", default=None,
                        help="scratch folder for data and the training run (default: a temporary folder)")
    parser.add_argument("--data-preset", default="train_wide", help="`patchworld collect` preset for training")
    parser.add_argument("--heldout-preset", default="heldout_select",
                        help="`patchworld collect` preset the run chooses its best weights on")
    parser.add_argument("--episodes", type=int, default=None,
                        help="instead of the presets, this many small episodes (--steps frames) each for training and "
                             "held-out (a dry run of the whole visit on a CPU)")
    parser.add_argument("--steps", type=int, default=24, help="frames per episode with --episodes")
    parser.add_argument("--workers", type=int, default=None, help="collection processes (default: every core)")
    parser.add_argument("--tokenizer", default=str(REPO / "checkpoints" / "world" / "tokenizer"))
    parser.add_argument("--init", default=None, help="warm-start the world model from this checkpoint folder")
    parser.add_argument("--preset", default="cpu", help="`patchworld train` preset (default cpu: the size that ships "
                                                        "and plays on a CPU, trained with a GPU's compute)")
    parser.add_argument("--train-args", default="",
                        help="more `patchworld train` options, as one string (e.g. '--batch-size 64 --lr 3e-4')")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--tune", action="store_true", help="also sweep the kernels' tile sizes (python -m kernels.tune)")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_file(path: Path, directory: Path, part_bytes: int = PART_BYTES) -> list[str]:
    """Copy `path` into `directory` as itself when it fits in `part_bytes`, else as NAME.part000, NAME.part001, ...
    Returns the names written, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    if path.stat().st_size <= part_bytes:
        shutil.copyfile(path, directory / path.name)
        return [path.name]
    names = []
    with path.open("rb") as f:
        for index, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
            name = f"{path.name}.part{index:03d}"
            (directory / name).write_bytes(block)
            names.append(name)
    return names


def join_parts(directory: Path, names: list[str], target: Path, sha256: str) -> None:
    """Concatenate the parts `names` of `directory` into `target`, refusing a result whose sha256 is not `sha256`."""
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise SystemExit(f"{directory}: parts missing: {', '.join(missing)} (did every file come back?)")
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as out:
        for name in names:
            with (directory / name).open("rb") as part:
                shutil.copyfileobj(part, out)
    if file_sha256(tmp) != sha256:
        tmp.unlink()
        raise SystemExit(f"{target.name}: the joined parts do not match the sha256 the device recorded ({sha256[:12]}...)")
    os.replace(tmp, target)


class Visit:
    """The budget, the log and the record of one visit."""

    def __init__(self, out: Path, minutes: float):
        self.out = out
        self.deadline = time.time() + 60.0 * minutes
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "session.log"
        self.record: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "minutes": minutes,
                             "phases": {}}

    def remaining(self) -> float:
        return self.deadline - time.time()

    def note(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        with self.log_path.open("a") as log:
            log.write(line + "\n")

    def run(self, command: list[str], timeout: float, env: dict | None = None) -> tuple[int, float]:
        """Run a command with its output appended to the log; killed (with its children) after `timeout` seconds.
        Returns (exit status, seconds); 124 on timeout."""
        self.note("$ " + shlex.join(command) + f"   (at most {timeout:.0f} s)")
        started = time.time()
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                       env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                           [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                          if p]), "PYTHONUNBUFFERED": "1", **(env or {})})
            try:
                rc = process.wait(timeout=max(timeout, 1.0))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                rc = 124
        seconds = time.time() - started
        self.note(f"exit {rc} after {seconds:.1f} s")
        return rc, seconds

    def phase(self, name: str, **figures) -> None:
        self.record["phases"][name] = {**self.record["phases"].get(name, {}), **figures}
        self.save()

    def save(self) -> None:
        path = self.out / "session.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.record, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _env_phase(visit: Visit) -> None:
    facts: dict = {"python": platform.python_version(), "cpu_cores": os.cpu_count()}
    for name in ("torch", "triton", "numpy", "numba", "safetensors", "pytest"):
        try:
            facts[name] = importlib.import_module(name).__version__
        except Exception as error:  # a broken install is a finding too
            facts[name] = f"missing: {type(error).__name__}"
    torch = sys.modules.get("torch")
    facts["cuda"] = bool(torch is not None and torch.cuda.is_available())
    if facts["cuda"]:
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    facts["machine"] = machine_description()  # CPU model and cores, and the GPU
    visit.note("env " + json.dumps(facts))
    visit.phase("env", **facts)


def _ensure_pytest(visit: Visit, work: Path) -> dict | None:
    """The environment in which `python -m pytest` runs: {} where pytest is installed, else PYTHONPATH to the
    carried wheels installed into a scratch folder (no system install: the machine's Python may forbid one);
    None where neither works."""
    if not str(visit.record["phases"].get("env", {}).get("pytest", "missing")).startswith("missing"):
        return {}  # the env phase imported it
    if not WHEELS.is_dir():
        visit.note(f"pytest is missing and there are no wheels in {WHEELS} (prepare them: patchworld device-session "
                   "--prepare, then carry .whl)")
        return None
    site = work / "site"
    rc, _ = visit.run(_python("-m", "pip", "install", "--no-index", "--find-links", str(WHEELS), "--target", str(site),
                              "pytest"), 120)
    return {"PYTHONPATH": os.pathsep.join([str(REPO), str(site)])} if rc == 0 else None


def junit_counts(path: Path) -> dict[str, int]:
    """Test counts from a pytest --junitxml report: tests, failures, errors, skipped (and passed)."""
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def _kernels_phase(visit: Visit, work: Path, tune: bool) -> None:
    env = _ensure_pytest(visit, work)
    if env is None:
        visit.phase("kernels", tests="not run: no pytest")
    else:
        report = work / "kernels-junit.xml"
        rc, seconds = visit.run(_python("-m", "pytest", "tests/test_kernels.py", "-p", "no:cacheprovider", "-rfEs",
                                        f"--junitxml={report}"), min(150.0, visit.remaining() - 300), env=env)
        visit.phase("kernels", tests_exit=rc, tests_seconds=round(seconds, 1),
                    tests=junit_counts(report) if report.is_file() else "no report (killed?)")
    if tune:
        rc, seconds = visit.run(_python("-m", "kernels.tune"), min(120.0, visit.remaining() - 300))
        visit.phase("kernels", tune_exit=rc, tune_seconds=round(seconds, 1))
    benchmarks = REPO / "docs" / "benchmarks.md"
    size = benchmarks.stat().st_size if benchmarks.exists() else 0
    rc, seconds = visit.run(_python("-m", "kernels.bench"), min(90.0, visit.remaining() - 240))
    visit.phase("kernels", bench_exit=rc, bench_seconds=round(seconds, 1))
    if benchmarks.exists() and benchmarks.stat().st_size > size:  # what the bench recorded, alone
        with benchmarks.open("rb") as f:
            f.seek(size)
            (visit.out / "benchmarks-device.md").write_bytes(f.read())


def _collect(visit: Visit, args: argparse.Namespace, preset: str, target: Path, heldout: bool) -> int:
    command = _python("-m", "simulator.cli", "collect", "--out", str(target), "--workers",
                      str(args.workers or os.cpu_count() or 1))
    if args.episodes is None:
        command += ["--preset", preset]
    else:  # a dry run's small datasets: training worlds from 0, held-out ones where the presets keep them
        from_seed = 100_100 if heldout else 0
        command += ["--episodes", str(args.episodes), "--steps", str(args.steps), "--seed", str(from_seed),
                    "--world-seeds", f"{from_seed}:{from_seed + max(1, args.episodes // 2)}"]
    rc, _ = visit.run(command, min(150.0, visit.remaining() - 120))
    return rc


def _data_phase(visit: Visit, args: argparse.Namespace, work: Path) -> bool:
    started = time.time()
    train_rc = _collect(visit, args, args.data_preset, work / "train", heldout=False)
    heldout_rc = _collect(visit, args, args.heldout_preset, work / "heldout", heldout=True) if train_rc == 0 else None
    frames = _shard_frames(work / "train") if train_rc == 0 else 0
    seconds = time.time() - started
    visit.phase("data", train_exit=train_rc, heldout_exit=heldout_rc, seconds=round(seconds, 1),
                train_frames=frames, frames_per_second=round(frames / max(seconds, 1e-6), 1))
    return train_rc == 0 and heldout_rc == 0


def _shard_frames(directory: Path) -> int:
    from simulator.data.shards import ShardReader, list_shards  # numpy: there on the machine, not needed before

    total = 0
    for shard in list_shards(directory):
        with ShardReader(shard) as reader:
            total += sum(int(episode["frames"]) for episode in reader.episodes)
    return total


def _train_command(args: argparse.Namespace, work: Path, minutes: float) -> list[str]:
    command = _python("-m", "simulator.cli", "train", "--data", str(work / "train"), "--heldout", str(work / "heldout"),
                      "--tokenizer", args.tokenizer, "--preset", args.preset, "--out", str(work / "run"),
                      "--export", str(work / "export"), "--device", args.device, "--minutes", f"{minutes:.2f}")
    return command + (["--init", args.init] if args.init else []) + shlex.split(args.train_args)


def _train_phase(visit: Visit, args: argparse.Namespace, work: Path) -> Path | None:
    """Train for what the budget leaves; on a failure with time to spare, once more with PyTorch attention (a
    second start resumes from the run's last save, if it made one)."""
    tests = visit.record["phases"].get("kernels", {}).get("tests")
    attention = "torch" if isinstance(tests, dict) and (tests.get("failures") or tests.get("errors")) else "auto"
    if attention == "torch":
        visit.note("the kernel tests failed: training attention takes the PyTorch path (PATCHWORLD_ATTENTION=torch)")
    attempts = []
    while True:
        minutes = (visit.remaining() - TRAIN_RESERVE_S) / 60.0
        if minutes < 0.5:
            visit.phase("train", skipped=f"{visit.remaining():.0f} s left")
            break
        env = {"PATCHWORLD_ATTENTION": "torch"} if attention == "torch" else {}
        rc, seconds = visit.run(_train_command(args, work, minutes), visit.remaining() - 10, env=env)
        attempts.append({"exit": rc, "seconds": round(seconds, 1), "attention": attention})
        if rc == 0 or attention == "torch":
            break
        visit.note("training failed with the default attention: once more on the PyTorch path")
        attention = "torch"
    evals = []
    if (work / "run" / "eval.jsonl").exists():
        evals = [json.loads(line) for line in (work / "run" / "eval.jsonl").read_text().splitlines() if line.strip()]
    steps = evals[-1]["step"] if evals else 0
    seconds = sum(a["seconds"] for a in attempts)
    visit.phase("train", exit=attempts[-1]["exit"] if attempts else None, attempts=attempts, seconds=round(seconds, 1),
                steps=steps, steps_per_second=round(steps / max(seconds, 1e-6), 2), evals=evals)
    export = work / "export"
    return export if (export / "model.safetensors").is_file() else None


def _pack_phase(visit: Visit, export: Path) -> None:
    world = visit.out / "world"
    parts = split_file(export / "model.safetensors", world, PART_BYTES)
    shutil.copyfile(export / "config.json", world / "config.json")
    tokenizer = export / "tokenizer" / "model.safetensors"
    files_back = [p for p in visit.out.rglob("*") if p.is_file()]
    too_big = [str(p.relative_to(visit.out)) for p in files_back if p.stat().st_size > 16 * 1024 * 1024]
    visit.phase("pack", parts=parts, bytes=(export / "model.safetensors").stat().st_size,
                sha256=file_sha256(export / "model.safetensors"),
                tokenizer_sha256=file_sha256(tokenizer) if tokenizer.is_file() else None,
                files_back=len(files_back), too_big=too_big)
    if len(files_back) > MAX_FILES_BACK or too_big:
        visit.note(f"warning: {len(files_back)} files under {visit.out} (the way back takes {MAX_FILES_BACK}), "
                   f"too big: {too_big or 'none'}")


def weights_fit_the_way_back(preset: str, train_args: str, init: str | None = None) -> tuple[bool, str]:
    """Whether the `preset` world model's bf16 weights (with --depth / --mlp-ratio from train_args, else those of
    the `init` checkpoint; the shipped tokenizer's 8 latent channels) come back in the parts the way back leaves
    room for (MAX_FILES_BACK less session.json, session.log, the benchmark's rows and config.json), and a line
    that says its size. Asked before the visit spends its minutes."""
    from simulator.models.dit import build_dit  # torch: there on the machine, and asked once, before the visit
    from simulator.train.world_trainer import TRAIN_PRESETS

    if preset not in TRAIN_PRESETS:
        raise SystemExit(f"--preset {preset}: not one of {sorted(TRAIN_PRESETS)}")
    tokens = shlex.split(train_args)
    sizes = {flag[2:].replace("-", "_"): tokens[i + 1] for i, flag in enumerate(tokens[:-1])
             if flag in ("--depth", "--mlp-ratio")}
    if init:  # a warm start keeps its checkpoint's depth and MLP width unless told otherwise (train --init)
        model = json.loads((Path(init) / "config.json").read_text())["model"]
        sizes = {**{k: model[k] for k in ("depth", "mlp_ratio") if k in model}, **sizes}
    sizes = {k: float(v) if k == "mlp_ratio" else int(v) for k, v in sizes.items()}
    params = sum(p.numel() for p in build_dit(TRAIN_PRESETS[preset].model, latent_channels=8, **sizes).parameters())
    room = (MAX_FILES_BACK - 4) * PART_BYTES
    line = f"{params / 1e6:.1f} M parameters, {2 * params / 2**20:.0f} MiB in bf16 (room for {room / 2**20:.0f} MiB)"
    return 2 * params <= room, line


def prepare_wheels() -> int:
    """Download pytest and what it needs as wheels into .whl/ (run here, where a package registry is reachable)."""
    WHEELS.mkdir(exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "-d", str(WHEELS)]
    subprocess.run(base + ["pytest", "pluggy", "iniconfig", "packaging", "pygments"], check=True)
    # for a machine whose Python is older than 3.11: pure-Python builds
    subprocess.run(base + ["--python-version", "3.10", "--implementation", "py", "exceptiongroup", "tomli",
                           "typing_extensions"], check=True)
    print(f"wheels in {WHEELS}: carry it with the call (carry: ['.whl'])")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.prepare:
        return prepare_wheels()
    if not args.out:
        raise SystemExit("--out is required (the device machine's $OUT)")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(PHASES[1:4])
    if unknown:
        raise SystemExit(f"--skip: unknown phases {sorted(unknown)} (of: kernels, data, train)")
    if args.minutes <= 0:
        raise SystemExit(f"--minutes {args.minutes} must be positive")
    if not Path(args.tokenizer).is_dir():
        raise SystemExit(f"no tokenizer checkpoint at {args.tokenizer}")
    if "train" not in skip:
        fits, size = weights_fit_the_way_back(args.preset, args.train_args, args.init)
        if not fits:
            raise SystemExit(f"--preset {args.preset}: {size}: its weights could not come back from the device "
                             "machine (8 files of at most 16 MiB); train a smaller model")
    visit = Visit(Path(args.out), args.minutes)
    if "train" not in skip:
        visit.record["model_size"] = size
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="device-session-"))
    work.mkdir(parents=True, exist_ok=True)
    visit.record.update(command=shlex.join(sys.argv), work=str(work))
    _env_phase(visit)
    if "kernels" not in skip:
        _kernels_phase(visit, work, args.tune)
    have_data = (work / "train").is_dir() and (work / "heldout").is_dir() if "data" in skip else \
        _data_phase(visit, args, work)
    export = None
    if "train" not in skip and have_data:
        export = _train_phase(visit, args, work)
    if export is not None:
        _pack_phase(visit, export)
    visit.record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    visit.save()
    visit.note(f"done: {sorted(visit.record['phases'])} in {args.minutes * 60 - visit.remaining():.0f} s; "
               f"results in {visit.out}")
    return 0
