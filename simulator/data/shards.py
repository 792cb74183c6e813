"""The shard format: a directory of `.npz` files, each holding one or more episodes.

One shard file (numpy alone reads it, `np.load(path, allow_pickle=False)`):

    meta            uint8 [n]   UTF-8 JSON: {"format": 1, "episodes": [{...}, ...]}
    e{i}_frames     uint8 [T, H, W, 3]
    e{i}_buttons    uint8 [T, 9]      \
    e{i}_hotbar     int8  [T]          } simulator.actions.to_arrays layout
    e{i}_camera     float32 [T, 2]    /  (degrees, quantized: bin centers)

Each episode's JSON entry holds `frames` (T), `seed` (world seed), `biome`, `resolution`
([H, W]), `engine_version`, `caption`, plus whatever extra the collector adds (start kind,
policy seed). Time alignment follows docs/CONTRACTS.md: `actions[t]` produced `frames[t]`,
`actions[0]` is NOOP.

Shards are zip-deflated at level 1 (what `np.savez_compressed` writes, but at the fastest
level: ~5x smaller than raw at 64x64 for a tenth of the collection's CPU time): see docs/data.md
for the measured trade-off.
Writes are atomic: a hidden temp file in the same directory, fsync, then `os.replace`, so a
file named `*.npz` is always complete. Anything that fails to read raises `ShardError`
naming the file.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from simulator.actions import BUTTONS, Action, from_arrays, to_arrays

SHARD_FORMAT = 1
SHARD_COMPRESSLEVEL = 1  # zlib level: 1 writes 3x faster than numpy's default 6 for a 1.5x larger file
SHARD_SUFFIX = ".npz"
_ACTION_KEYS = ("buttons", "hotbar", "camera")


class ShardError(RuntimeError):
    """A shard file is missing, truncated, corrupt or inconsistent; the message names the file."""


@dataclass
class Episode:
    """One episode: T frames and the T actions that produced them."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    actions: list[Action]  # actions[t] produced frames[t]; actions[0] is NOOP
    seed: int  # world seed
    biome: str  # biome under the player at the first frame
    engine_version: str
    caption: str
    extra: dict = field(default_factory=dict)  # JSON-able extras (start kind, policy seed, ...)

    def __post_init__(self) -> None:
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(f"frames: expected uint8 [T, H, W, 3], got {self.frames.dtype} {list(self.frames.shape)}")
        if len(self.actions) != len(self.frames):
            raise ValueError(f"episode has {len(self.frames)} frames but {len(self.actions)} actions; "
                             "they must match one to one (actions[t] produced frames[t])")

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def meta(self) -> dict:
        return {"frames": len(self.frames), "seed": int(self.seed), "biome": self.biome,
                "resolution": list(self.resolution), "engine_version": self.engine_version,
                "caption": self.caption, **self.extra}


def write_npz(file: BinaryIO, arrays: dict[str, np.ndarray], compresslevel: int = SHARD_COMPRESSLEVEL) -> None:
    """An .npz (a zip of .npy files, as np.savez writes) deflated at `compresslevel` (0 = stored)."""
    compression = zipfile.ZIP_DEFLATED if compresslevel > 0 else zipfile.ZIP_STORED
    with zipfile.ZipFile(file, "w", compression=compression, compresslevel=compresslevel or None) as z:
        for key, value in arrays.items():
            with z.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def write_shard(path: str | Path, episodes: Sequence[Episode]) -> Path:
    """Write `episodes` into one shard file atomically; returns the path."""
    path = Path(path)
    if path.suffix != SHARD_SUFFIX:
        raise ValueError(f"shard path {path} must end in {SHARD_SUFFIX}")
    if not episodes:
        raise ValueError(f"shard {path}: refusing to write a shard with no episodes")
    arrays: dict[str, np.ndarray] = {}
    for i, ep in enumerate(episodes):
        arrays[f"e{i}_frames"] = np.ascontiguousarray(ep.frames)
        for key, value in to_arrays(ep.actions).items():
            arrays[f"e{i}_{key}"] = value
    meta = {"format": SHARD_FORMAT, "episodes": [ep.meta() for ep in episodes]}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    # hidden and not ending in .npz: never mistaken for a shard, even if we crash mid-write
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as f:
            write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def list_shards(root: str | Path) -> list[Path]:
    """Shard files under `root` (a directory, searched recursively, or one file), sorted by name."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"shard directory {root} does not exist")
    return sorted(p for p in root.rglob(f"*{SHARD_SUFFIX}") if not p.name.startswith("."))


class ShardReader:
    """Reads one shard lazily: the metadata at open, each episode's arrays only when asked.

    Use as a context manager (or call `close()`); every failure raises `ShardError` naming the file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._npz = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ShardError(f"shard {self.path}: cannot open ({type(err).__name__}: {err}); "
                             "the file is truncated or corrupt") from err
        try:
            meta = json.loads(bytes(self._read("meta")).decode())
            self.episodes: list[dict] = meta["episodes"]
            if meta.get("format") != SHARD_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, this code reads format {SHARD_FORMAT}")
            missing = [f"e{i}_{k}" for i in range(len(self.episodes))
                       for k in ("frames", *_ACTION_KEYS) if f"e{i}_{k}" not in self._npz.files]
            if missing:
                raise ValueError(f"arrays {missing[:4]} listed in the metadata are missing")
        except ShardError:
            self.close()
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            self.close()
            raise ShardError(f"shard {self.path}: bad metadata ({err})") from err

    def _read(self, key: str) -> np.ndarray:
        try:
            return self._npz[key]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            raise ShardError(f"shard {self.path}: cannot read array {key!r} "
                             f"({type(err).__name__}: {err}); the file is truncated or corrupt") from err

    def __len__(self) -> int:
        return len(self.episodes)

    def frames(self, i: int) -> np.ndarray:
        """uint8 [T, H, W, 3] of episode i, checked against its metadata."""
        frames = self._read(f"e{i}_frames")
        T = self.episodes[i]["frames"]
        H, W = self.episodes[i]["resolution"]
        if frames.dtype != np.uint8 or frames.shape != (T, H, W, 3):
            raise ShardError(f"shard {self.path}: episode {i} frames are {frames.dtype} {list(frames.shape)}, "
                             f"the metadata says uint8 {[T, H, W, 3]}")
        return frames

    def action_arrays(self, i: int) -> dict[str, np.ndarray]:
        """Episode i's actions in the `to_arrays` layout, checked against its metadata."""
        arrays = {k: self._read(f"e{i}_{k}") for k in _ACTION_KEYS}
        T = self.episodes[i]["frames"]
        expected = {"buttons": (T, len(BUTTONS)), "hotbar": (T,), "camera": (T, 2)}
        for key, shape in expected.items():
            if arrays[key].shape != shape:
                raise ShardError(f"shard {self.path}: episode {i} {key} has shape {list(arrays[key].shape)}, "
                                 f"expected {list(shape)}")
        return arrays

    def episode(self, i: int) -> Episode:
        meta = dict(self.episodes[i])
        known = {k: meta.pop(k) for k in ("seed", "biome", "engine_version", "caption")}
        meta.pop("frames"), meta.pop("resolution")
        return Episode(frames=self.frames(i), actions=from_arrays(self.action_arrays(i)), extra=meta, **known)

    def close(self) -> None:
        self._npz.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_shard(path: str | Path) -> list[Episode]:
    """Every episode of one shard, fully loaded."""
    with ShardReader(path) as reader:
        return [reader.episode(i) for i in range(len(reader))]
