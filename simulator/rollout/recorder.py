"""Recordings in OpenAI VPT's convention: `<name>.mp4` of the frames beside `<name>.jsonl` with one
line per tick (the action and the tick's timing), plus `metadata.json`.

Written incrementally, so that a killed process leaves a recording readable up to its last
second: the mp4 is fragmented (a self-contained fragment every second, no index at the end)
and encoded without lookahead, and every JSONL line is flushed as it is written. A reader
takes the ticks present in both files.

Tick 0 is the start frame; its action is NOOP (the time alignment of docs/CONTRACTS.md:
`actions[t]` produced `frames[t]` from `frames[t-1]`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from simulator.actions import ENCODING_VERSION, Action, from_dict, to_dict

FORMAT_NAME = "patchworld-recording"
FORMAT_VERSION = 1
METADATA = "metadata.json"


@dataclass
class RecorderConfig:
    fps: int = 20  # the tick rate: one frame per tick
    crf: int = 12  # x264 quality (0 = lossless .. 51); low because 64x64 frames have little to spare
    keyframe_every: int = 20  # frames per GOP = per mp4 fragment: at most this much is lost on a kill
    name: str = "recording"  # file stem, as VPT names each clip's mp4 and jsonl alike


RECORDER_PRESETS: dict[str, RecorderConfig] = {
    "default": RecorderConfig(),
    "small": RecorderConfig(crf=23),  # long sessions where disk matters more than fidelity
}


@dataclass
class RecordingInfo:
    """What metadata.json says about a recording besides its frames and actions."""

    resolution: tuple[int, int]  # (H, W)
    backend: str  # "engine" or "dream"
    start: dict[str, Any]  # the start condition, e.g. {"seed": 3} or {"image": "<sha256>"}
    seed: int | None = None  # world seed when the start was a seed
    checkpoint: str | None = None  # world-model checkpoint folder (dream backend)
    extra: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """Appends frames and actions to a recording folder, one tick at a time."""

    def __init__(self, directory: str | Path, info: RecordingInfo, config: RecorderConfig | None = None) -> None:
        self.config = config or RecorderConfig()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.info = info
        self.frames = 0
        height, width = info.resolution
        if height % 2 or width % 2:
            raise ValueError(f"recording resolution {height}x{width}: yuv420p mp4 needs even sides")
        self._metadata(complete=False)
        self._jsonl = open(self.directory / f"{self.config.name}.jsonl", "w")
        self._video = imageio_ffmpeg.write_frames(
            str(self.directory / f"{self.config.name}.mp4"), (width, height), fps=self.config.fps,
            codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1, quality=None, ffmpeg_log_level="error",
            output_params=["-crf", str(self.config.crf), "-tune", "zerolatency", "-g", str(self.config.keyframe_every),
                           "-movflags", "frag_keyframe+empty_moov+default_base_moof"])
        self._video.send(None)  # starts ffmpeg

    def write(self, frame: np.ndarray, action: Action, *, tick: int, seq: int = -1, gen_ms: float = 0.0) -> None:
        """One tick: `frame` uint8 [H, W, 3] and the action that produced it."""
        if frame.shape != (*self.info.resolution, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame is {frame.dtype} {frame.shape}, recording is uint8 "
                             f"{(*self.info.resolution, 3)}")
        self._video.send(np.ascontiguousarray(frame))
        line = {"tick": tick, "action": to_dict(action), "seq": seq, "gen_ms": round(gen_ms, 3),
                "time": round(time.time(), 4)}
        self._jsonl.write(json.dumps(line) + "\n")
        self._jsonl.flush()
        self.frames += 1

    def close(self) -> None:
        if self._jsonl.closed:
            return
        self._jsonl.close()
        self._video.close()
        self._metadata(complete=True)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _metadata(self, complete: bool) -> None:
        data = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "action_encoding": ENCODING_VERSION,
                "fps": self.config.fps, "name": self.config.name, "frames": self.frames if complete else None,
                "complete": complete, "written": datetime.datetime.now().isoformat(timespec="seconds"),
                **dataclasses.asdict(self.info)}
        data["resolution"] = list(self.info.resolution)
        tmp = self.directory / (METADATA + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.directory / METADATA)


@dataclass
class Recording:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    actions: list[Action]  # T actions, actions[0] = NOOP
    ticks: list[dict[str, Any]]  # the T JSONL lines as written
    metadata: dict[str, Any]


def read_recording(directory: str | Path, max_frames: int | None = None) -> Recording:
    """Read a recording, complete or cut short by a kill: the ticks present in both files."""
    directory = Path(directory)
    metadata = json.loads((directory / METADATA).read_text())
    if metadata.get("format") != FORMAT_NAME:
        raise ValueError(f"{directory / METADATA}: format {metadata.get('format')!r} is not {FORMAT_NAME!r}")
    name = metadata["name"]
    ticks = []
    with open(directory / f"{name}.jsonl") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # a line cut by a kill
            ticks.append(json.loads(line))
    frames = _read_mp4(directory / f"{name}.mp4", tuple(metadata["resolution"]), max_frames)
    count = min(len(frames), len(ticks), max_frames if max_frames is not None else len(ticks))
    return Recording(frames=frames[:count], actions=[from_dict(t["action"]) for t in ticks[:count]],
                     ticks=ticks[:count], metadata=metadata)


def _read_mp4(path: Path, resolution: tuple[int, int], max_frames: int | None) -> np.ndarray:
    height, width = resolution
    frames = []
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        reader.__next__()  # the meta dict
        for data in reader:
            frames.append(np.frombuffer(data, np.uint8).reshape(height, width, 3))  # bytes -> [H, W, 3]
            if max_frames is not None and len(frames) >= max_frames:
                break
    except (OSError, RuntimeError, StopIteration):
        pass  # a truncated file ends early; the frames read so far stand
    finally:
        reader.close()
    return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)
