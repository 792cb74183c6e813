"""What evaluation drives: anything with the streaming Generator's interface (docs/CONTRACTS.md).

`load_predictor` gives the real `simulator.rollout.generator.Generator` for a checkpoint folder,
or `CopyLast` for the name "copy-last": the baseline every fidelity figure is read against (a
model that does not beat it is not yet a world model), and the stand-in that lets every part of
the evaluation run and be tested without a trained model. "copy-warped-last" (`CopyWarpedLast`)
is copy-last that also turns with the camera: the last frame moved as the commanded yaw/pitch
moves the picture, the baseline for models that warp their previous frame the same way;
"copy-walked-last" also enlarges it as walking forward does (`simulator.models.camera_warp.walk_scale`
at `WALK_ZOOM`), the baseline for models trained with `--walk-zoom`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from simulator.actions import Action, encode_many
from simulator.checkpoint import load_config

COPY_LAST = "copy-last"
COPY_WARPED_LAST = "copy-warped-last"
COPY_WALKED_LAST = "copy-walked-last"
WALK_ZOOM = 0.015  # copy-walked-last's zoom per tick: the best of a sweep on held-out straight walks (docs/training.md)
BASELINES = (COPY_LAST, COPY_WARPED_LAST, COPY_WALKED_LAST)


class Predictor(Protocol):
    """The subset of the Generator contract that evaluation uses."""

    resolution: tuple[int, int]

    def start(self, slot: int, frames: np.ndarray, actions: list[Action]) -> None: ...

    def step(self, actions: dict[int, Action]) -> dict[int, np.ndarray]: ...

    def release(self, slot: int) -> None: ...


class CopyLast:
    """Predicts that nothing changes: every step returns the last context frame of its slot."""

    def __init__(self, resolution: tuple[int, int], batch_size: int = 1):
        self.resolution = resolution
        self.batch_size = batch_size
        self._last: dict[int, np.ndarray] = {}

    def start(self, slot: int, frames: np.ndarray, actions: list[Action]) -> None:
        if not 0 <= slot < self.batch_size:
            raise ValueError(f"slot {slot} is outside 0..{self.batch_size - 1}")
        if frames.ndim != 4 or tuple(frames.shape[1:3]) != self.resolution or len(frames) == 0:
            raise ValueError(f"context frames: expected uint8 [T0>0, {self.resolution[0]}, {self.resolution[1]}, 3], "
                             f"got {list(frames.shape)}")
        if len(actions) != len(frames):
            raise ValueError(f"context has {len(frames)} frames but {len(actions)} actions")
        self._last[slot] = frames[-1].copy()

    def step(self, actions: dict[int, Action]) -> dict[int, np.ndarray]:
        missing = sorted(set(actions) - set(self._last))
        if missing:
            raise ValueError(f"slots {missing} were never started")
        return {slot: self._last[slot].copy() for slot in actions}

    def release(self, slot: int) -> None:
        self._last.pop(slot, None)


class CopyWarpedLast(CopyLast):
    """Copy-last that turns with the camera: each step moves the slot's last frame as the action's
    yaw/pitch moves a pinhole camera's picture (`simulator.models.camera_warp`, the engine's 70 degrees)."""

    def __init__(self, resolution: tuple[int, int], batch_size: int = 1, fov_deg: float | None = None,
                 walk_zoom: float = 0.0):
        from simulator.models.camera_warp import ENGINE_FOV_DEG  # torch-heavy: imported when used

        super().__init__(resolution, batch_size)
        self.fov_deg = ENGINE_FOV_DEG if fov_deg is None else fov_deg
        self.walk_zoom = walk_zoom  # > 0: also enlarge the frame per tick of walking forward

    def step(self, actions: dict[int, Action]) -> dict[int, np.ndarray]:
        import torch  # imported here: the rest of this module runs without torch

        from simulator.models.camera_warp import walk_scale, warp_by_camera

        super().step(actions)  # validates the slots
        slots = sorted(actions)
        frames = torch.from_numpy(np.stack([self._last[s] for s in slots])).permute(0, 3, 1, 2).float()
        turns = [actions[s].quantized() for s in slots]
        degrees = torch.tensor([[a.yaw, a.pitch] for a in turns], dtype=torch.float32)
        scale = walk_scale(torch.from_numpy(encode_many(turns)[0]), self.walk_zoom) if self.walk_zoom else None
        moved = warp_by_camera(frames, degrees, self.fov_deg, scale=scale)
        moved = moved.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        for i, slot in enumerate(slots):
            self._last[slot] = moved[i]
        return {slot: moved[i].copy() for i, slot in enumerate(slots)}


def load_predictor(checkpoint: str | Path, resolution: tuple[int, int], batch_size: int = 1,
                   device: str = "cpu", **overrides) -> tuple[Predictor, dict]:
    """(predictor, its checkpoint config) for a checkpoint folder, or a baseline by name (`BASELINES`).
    `overrides` set the generator's options (simulator.rollout.generator.GeneratorConfig fields)."""
    if str(checkpoint) == COPY_LAST:
        return CopyLast(resolution, batch_size), {"kind": COPY_LAST}
    if str(checkpoint) == COPY_WARPED_LAST:
        return CopyWarpedLast(resolution, batch_size), {"kind": COPY_WARPED_LAST}
    if str(checkpoint) == COPY_WALKED_LAST:
        return CopyWarpedLast(resolution, batch_size, walk_zoom=WALK_ZOOM), {"kind": COPY_WALKED_LAST}
    from simulator.rollout.generator import Generator  # imported here: torch-heavy, and absent in early trees

    generator = Generator.from_checkpoint(checkpoint, device=device, batch_size=batch_size, **overrides)
    if tuple(generator.resolution) != tuple(resolution):
        raise ValueError(f"checkpoint {checkpoint} generates {generator.resolution[0]}x{generator.resolution[1]} frames, "
                         f"the evaluation asked for {resolution[0]}x{resolution[1]}")
    return generator, load_config(checkpoint)
