"""The one action encoding, shared by the engine, the data, the model, the server and the client.

One action per tick (20 Hz). The model sees the buttons and the hotbar press as one
multi-hot vector and each camera axis as a bin index. Camera bins are mu-law spaced, finer
near zero, as in VPT: most camera moves are small (median 2 degrees per tick in human play),
a few are large (up to 20 degrees). Everything that feeds the model should use quantized
actions (`Action.quantized()`), so that the bin the model sees is the move the engine made.

Text form: one JSON object per line, non-default fields only, e.g.
    {"forward": true, "yaw": 4.3}
    {"hotbar": 2, "use": true}
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENCODING_VERSION = 1

BUTTONS: tuple[str, ...] = ("forward", "back", "left", "right", "jump", "sneak", "sprint", "attack", "use")
HOTBAR_SLOTS = 9
# multi-hot layout: the 9 buttons, then a one-hot of the hotbar press: index 0 = no press,
# index 1 + s = "select slot s".
BUTTON_DIM = len(BUTTONS) + 1 + HOTBAR_SLOTS

CAMERA_MAX_DEG = 20.0  # largest camera move per tick; larger requests are clamped (VPT's range)
CAMERA_BINS = 21  # odd, so that bin CAMERA_BINS // 2 is exactly "no move"
CAMERA_MU = 10.0  # mu-law strength: higher = finer bins near zero


def _bin_centers() -> np.ndarray:
    u = np.linspace(-1.0, 1.0, CAMERA_BINS)
    centers = np.sign(u) * CAMERA_MAX_DEG * (np.power(1.0 + CAMERA_MU, np.abs(u)) - 1.0) / CAMERA_MU
    return np.round(centers, 4).astype(np.float32)


CAMERA_BIN_CENTERS = _bin_centers()  # degrees, ascending, symmetric, middle one is 0.0
_CAMERA_EDGES = (CAMERA_BIN_CENTERS[1:] + CAMERA_BIN_CENTERS[:-1]) / 2


@dataclass(frozen=True)
class Action:
    """What the player does in one tick. Camera in degrees: +yaw turns right, +pitch looks up."""

    forward: bool = False
    back: bool = False
    left: bool = False
    right: bool = False
    jump: bool = False
    sneak: bool = False
    sprint: bool = False
    attack: bool = False  # break the block in the crosshair
    use: bool = False  # place the selected hotbar block
    hotbar: int | None = None  # select slot 0-8 this tick; None keeps the current slot
    yaw: float = 0.0
    pitch: float = 0.0

    def __post_init__(self) -> None:
        if self.hotbar is not None and (isinstance(self.hotbar, bool) or not isinstance(self.hotbar, (int, np.integer))
                                        or not 0 <= self.hotbar < HOTBAR_SLOTS):
            raise ValueError(f"hotbar: slot {self.hotbar!r} is not an integer in 0..{HOTBAR_SLOTS - 1}")
        for name in ("yaw", "pitch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(value):
                raise ValueError(f"{name}: camera delta {value!r} is not a finite number of degrees")

    def quantized(self) -> Action:
        """The same action with each camera delta snapped to its bin center."""
        return dataclasses.replace(self, yaw=float(CAMERA_BIN_CENTERS[camera_bin(self.yaw)]),
                                   pitch=float(CAMERA_BIN_CENTERS[camera_bin(self.pitch)]))


NOOP = Action()


def camera_bin(degrees: float) -> int:
    """Bin index of a camera delta (clamped to +-CAMERA_MAX_DEG)."""
    return int(np.searchsorted(_CAMERA_EDGES, float(np.clip(degrees, -CAMERA_MAX_DEG, CAMERA_MAX_DEG))))


def encode(action: Action) -> tuple[np.ndarray, np.ndarray]:
    """One action -> (multi-hot float32 [BUTTON_DIM], camera bins int64 [2] as (yaw, pitch))."""
    hot = np.zeros(BUTTON_DIM, np.float32)
    for i, name in enumerate(BUTTONS):
        hot[i] = getattr(action, name)
    hot[len(BUTTONS) + (0 if action.hotbar is None else 1 + action.hotbar)] = 1.0
    return hot, np.array([camera_bin(action.yaw), camera_bin(action.pitch)], np.int64)


def encode_many(actions: Sequence[Action]) -> tuple[np.ndarray, np.ndarray]:
    """Actions -> (multi-hot [T, BUTTON_DIM] float32, camera bins [T, 2] int64)."""
    if not actions:
        return np.zeros((0, BUTTON_DIM), np.float32), np.zeros((0, 2), np.int64)
    hot, cam = zip(*(encode(a) for a in actions))
    return np.stack(hot), np.stack(cam)


def decode(hot: np.ndarray, camera: np.ndarray) -> Action:
    """Inverse of `encode` (camera comes back as bin centers; buttons are thresholded at 0.5)."""
    hot = np.asarray(hot)
    if hot.shape != (BUTTON_DIM,):
        raise ValueError(f"buttons: expected shape ({BUTTON_DIM},), got {hot.shape}")
    camera = np.asarray(camera)
    if camera.shape != (2,) or not all(0 <= int(c) < CAMERA_BINS for c in camera):
        raise ValueError(f"camera: expected two bin indices in 0..{CAMERA_BINS - 1}, got {camera.tolist()}")
    press = int(np.argmax(hot[len(BUTTONS):]))
    return Action(**{name: bool(hot[i] > 0.5) for i, name in enumerate(BUTTONS)},
                  hotbar=None if press == 0 else press - 1,
                  yaw=float(CAMERA_BIN_CENTERS[camera[0]]), pitch=float(CAMERA_BIN_CENTERS[camera[1]]))


# --- compact arrays, as stored in shards -------------------------------------------------

def to_arrays(actions: Sequence[Action]) -> dict[str, np.ndarray]:
    """Actions -> {"buttons": uint8 [T, 9], "hotbar": int8 [T] (-1 = none), "camera": float32 [T, 2]}."""
    return {
        "buttons": np.array([[getattr(a, n) for n in BUTTONS] for a in actions], np.uint8).reshape(-1, len(BUTTONS)),
        "hotbar": np.array([-1 if a.hotbar is None else a.hotbar for a in actions], np.int8),
        "camera": np.array([[a.yaw, a.pitch] for a in actions], np.float32).reshape(-1, 2),
    }


def from_arrays(arrays: dict[str, np.ndarray]) -> list[Action]:
    buttons, hotbar, camera = arrays["buttons"], arrays["hotbar"], arrays["camera"]
    return [Action(**{n: bool(b[i]) for i, n in enumerate(BUTTONS)}, hotbar=None if h < 0 else int(h),
                   yaw=float(c[0]), pitch=float(c[1]))
            for b, h, c in zip(buttons, hotbar, camera)]


# --- text form ---------------------------------------------------------------------------

_FIELDS = {f.name for f in dataclasses.fields(Action)}


def from_dict(data: dict) -> Action:
    """Validate a JSON-like dict (unknown keys, wrong types, ranges) and build an Action."""
    if not isinstance(data, dict):
        raise ValueError(f"action: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown action key (known: {', '.join(sorted(_FIELDS))})")
    kwargs = {}
    for name in BUTTONS:
        if name in data:
            if not isinstance(data[name], (bool, int)) or data[name] not in (0, 1):
                raise ValueError(f"{name}: expected true/false, got {data[name]!r}")
            kwargs[name] = bool(data[name])
    for name in ("hotbar", "yaw", "pitch"):
        if name in data:
            kwargs[name] = data[name]
    return Action(**kwargs)


def to_dict(action: Action) -> dict:
    """Non-default fields only."""
    out: dict = {n: True for n in BUTTONS if getattr(action, n)}
    if action.hotbar is not None:
        out["hotbar"] = action.hotbar
    for name in ("yaw", "pitch"):
        if getattr(action, name) != 0.0:
            out[name] = float(getattr(action, name))
    return out


def parse_lines(lines: Iterable[str]) -> list[Action]:
    """JSON-lines text -> actions; errors name the line number. Blank lines and #-comments are skipped."""
    actions = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            actions.append(from_dict(json.loads(line)))
        except (ValueError, TypeError) as err:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"line {number}: {err}") from None
    return actions


def load_actions(path: str | Path) -> list[Action]:
    with open(path) as f:
        return parse_lines(f)


def save_actions(path: str | Path, actions: Iterable[Action]) -> None:
    with open(path, "w") as f:
        for action in actions:
            f.write(json.dumps(to_dict(action)) + "\n")
