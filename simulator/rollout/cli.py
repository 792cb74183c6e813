"""`patchworld rollout`: headless rollout to a recording (the same VPT format the server writes).

    patchworld rollout --checkpoint CKPT --seed S --actions FILE --frames N --out DIR

Time alignment as in docs/CONTRACTS.md: frame 0 is the start frame; line t of the actions file
(t >= 1) produces frame t, and line 0 (the start frame's, normally {}) is ignored. The file is
JSON lines of actions, or a recording's JSONL (lines with an "action" field), so a recording's
actions can be replayed. Fewer lines than frames: the rest are NOOP.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from simulator.actions import NOOP, Action, from_dict
from simulator.rollout.backend import Backend, StartCondition
from simulator.rollout.recorder import Recorder, RecordingInfo


def load_action_lines(path: Path) -> list[Action]:
    """Actions from JSON lines: plain action objects or recording lines {"tick", "action", ...}."""
    actions = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                data = json.loads(line)
                actions.append(from_dict(data["action"] if isinstance(data, dict) and "action" in data else data))
            except (ValueError, TypeError) as err:
                raise ValueError(f"{path}: line {number}: {err}") from None
    return actions


def rollout(backend: Backend, start: StartCondition, actions: list[Action], frames: int, out: Path,
            progress: bool = True) -> Recorder:
    """Run one session for `frames` frames (the start frame included), recording to `out`."""
    if frames < 1:
        raise ValueError(f"--frames {frames}: need at least the start frame")
    info = RecordingInfo(resolution=backend.resolution, backend=backend.name, start=start.describe(),
                         seed=start.seed, checkpoint=backend.checkpoint)
    slot = backend.open(start)
    try:
        with Recorder(out, info) as recorder:
            recorder.write(backend.frame(slot), NOOP, tick=0)
            for tick in tqdm(range(1, frames), desc="rollout", unit="frame", disable=not progress):
                action = actions[tick] if tick < len(actions) else NOOP
                frame = backend.step({slot: action})[slot]
                recorder.write(frame, action, tick=tick)
    finally:
        backend.close(slot)
    return recorder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simulator.serve.cli import add_backend_arguments

    add_backend_arguments(parser)
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--seed", type=int, help="world seed to start from (default 0)")
    start.add_argument("--image", type=Path, help="start from this PNG/JPEG (image to world)")
    start.add_argument("--continue", dest="continue_from", type=Path, help="continue this recording folder")
    parser.add_argument("--actions", type=Path, help="JSON-lines actions (default: all NOOP)")
    parser.add_argument("--frames", type=int, required=True, help="frames to write, the start frame included")
    parser.add_argument("--out", type=Path, required=True, help="recording folder to write")


def main(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from simulator.serve.cli import make_backend

    if args.image is not None:
        start = StartCondition(image=np.asarray(Image.open(args.image).convert("RGB")))
    elif args.continue_from is not None:
        start = StartCondition(recording=args.continue_from)
    else:
        start = StartCondition(seed=0 if args.seed is None else args.seed)
    actions = load_action_lines(args.actions) if args.actions else []
    if args.actions and len(actions) < args.frames:
        print(f"{args.actions} has {len(actions)} actions for {args.frames} frames: the last "
              f"{args.frames - max(len(actions), 1)} ticks are NOOP")
    backend = make_backend(args)
    if backend is None:
        return 1
    recorder = rollout(backend, start, actions, args.frames, args.out)
    print(f"wrote {recorder.frames} frames to {args.out}")
    return 0
