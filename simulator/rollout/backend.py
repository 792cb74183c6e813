"""What produces frames for live sessions: a small interface with two implementations.

- `EngineBackend` runs real `simulator.world.World` instances (the ground-truth game), so the
  server, the clients and recordings work and are testable without a model; `patchworld serve
  --engine` plays the real engine through the same server.
- `DreamBackend` runs the world model through the streaming `Generator`: all sessions are slots
  of one Generator, stepped together in ONE batched call per tick.

A backend is not thread-safe: the server calls it from one worker thread only.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.actions import NOOP, Action


@dataclass(frozen=True)
class StartCondition:
    """Exactly one of: a world seed (the engine renders the first frames), an image (image to
    world: uint8 [h, w, 3], fitted to the backend's resolution), a recording folder (continue it)."""

    seed: int | None = None
    image: np.ndarray | None = None
    recording: Path | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("seed", "image", "recording") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"a start condition needs exactly one of seed, image, recording; got {given or 'none'}")
        if self.image is not None and (self.image.dtype != np.uint8 or self.image.ndim != 3
                                       or self.image.shape[2] != 3):
            raise ValueError(f"start image must be uint8 [H, W, 3], got {self.image.dtype} {self.image.shape}")

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for recordings' metadata (an image is named by its hash)."""
        if self.seed is not None:
            return {"seed": self.seed}
        if self.image is not None:
            return {"image_sha256": hashlib.sha256(self.image.tobytes()).hexdigest(),
                    "image_shape": list(self.image.shape)}
        return {"recording": str(self.recording)}


class Backend(abc.ABC):
    """Sessions live in integer slots. Frames are uint8 [H, W, 3] at `resolution`."""

    name: str  # "engine" or "dream"
    resolution: tuple[int, int]  # (H, W)
    max_sessions: int  # slots available at once
    checkpoint: str | None = None

    @abc.abstractmethod
    def open(self, start: StartCondition) -> int:
        """Start a session; returns its slot. Raises ValueError for an unusable start, and
        RuntimeError when every slot is taken."""

    @abc.abstractmethod
    def step(self, actions: dict[int, Action],
             abort: Callable[[], bool] | None = None) -> dict[int, np.ndarray] | None:
        """One tick of every slot in `actions`, together; returns each slot's new frame.

        `abort` (optional, called from the stepping thread): a backend whose step takes long may
        ask it early on and, when it says True, return None having changed nothing (a server then
        restarts the tick with the newer actions). A backend may ignore it."""

    @abc.abstractmethod
    def reset(self, slot: int, start: StartCondition) -> None:
        """Restart a slot from `start` (its frame becomes the start frame)."""

    @abc.abstractmethod
    def close(self, slot: int) -> None:
        """Free a slot."""

    @abc.abstractmethod
    def frame(self, slot: int) -> np.ndarray:
        """The slot's latest frame (after open/reset: the start frame)."""

    def idle(self) -> None:
        """Work that the last `step` left for later, done now, between ticks (a server calls this
        after sending a tick's frames). Optional: the next call does it anyway; nothing by default."""

    def _free_slot(self, used: set[int] | dict[int, Any]) -> int:
        for slot in range(self.max_sessions):
            if slot not in used:
                return slot
        raise RuntimeError(f"all {self.max_sessions} session slots of the {self.name} backend are in use")


def recording_start(path: Path) -> tuple[np.ndarray, list[Action], dict[str, Any]]:
    """(frames [T, H, W, 3], actions, metadata) of a recording to continue."""
    from simulator.rollout.recorder import read_recording

    rec = read_recording(path)
    if len(rec.actions) == 0:
        raise ValueError(f"recording {path} has no complete tick to continue from")
    return rec.frames, rec.actions, rec.metadata


class EngineBackend(Backend):
    """The real voxel engine, one `World` per slot. Starts from a seed, or continues a recording
    made on the engine by replaying its actions from its seed (the engine is deterministic)."""

    name = "engine"

    def __init__(self, resolution: tuple[int, int] = (64, 64), max_sessions: int = 16,
                 world_config: Any = None) -> None:
        """`world_config`: a simulator.world.engine.WorldConfig (default: the engine's default);
        its width and height are replaced by `resolution`."""
        from simulator.world.engine import WorldConfig

        height, width = resolution
        self.world_config = dataclasses.replace(world_config or WorldConfig(), width=width, height=height)
        self.resolution, self.max_sessions = (height, width), max_sessions
        self._worlds: dict[int, Any] = {}
        self._frames: dict[int, np.ndarray] = {}

    def open(self, start: StartCondition) -> int:
        slot = self._free_slot(self._worlds)
        self._start(slot, start)
        return slot

    def reset(self, slot: int, start: StartCondition) -> None:
        self._check(slot)
        self._start(slot, start)

    def _start(self, slot: int, start: StartCondition) -> None:
        from simulator.world.engine import World

        if start.image is not None:
            raise ValueError("the engine backend starts from a seed or an engine recording, not an image "
                             "(image to world needs the dream backend)")
        actions: list[Action] = []
        seed = start.seed
        if start.recording is not None:
            _, actions, meta = recording_start(start.recording)
            if meta.get("backend") != "engine" or meta.get("seed") is None:
                raise ValueError(f"recording {start.recording} was made by the {meta.get('backend')} backend; "
                                 f"the engine can only continue engine recordings that start from a seed")
            if tuple(meta["resolution"]) != self.resolution:
                raise ValueError(f"recording {start.recording} is {meta['resolution']}, backend is "
                                 f"{list(self.resolution)}")
            seed = int(meta["seed"])
        world = World(seed, self.world_config)
        frame = world.reset()
        for action in actions[1:]:  # actions[0] is the reset frame's NOOP
            frame = world.step(action)
        self._worlds[slot], self._frames[slot] = world, frame

    def step(self, actions: dict[int, Action],
             abort: Callable[[], bool] | None = None) -> dict[int, np.ndarray]:
        for slot in actions:  # a tick of the engine takes ~1 ms: never worth abandoning
            self._check(slot)
        for slot, action in actions.items():
            self._frames[slot] = self._worlds[slot].step(action)
        return {slot: self._frames[slot] for slot in actions}

    def frame(self, slot: int) -> np.ndarray:
        self._check(slot)
        return self._frames[slot]

    def close(self, slot: int) -> None:
        self._worlds.pop(slot, None)
        self._frames.pop(slot, None)

    def _check(self, slot: int) -> None:
        if slot not in self._worlds:
            raise KeyError(f"slot {slot} is not open (open: {sorted(self._worlds)})")


@dataclass
class DreamConfig:
    context_frames: int = 4  # engine frames rendered (NOOP actions) to prime a seed start
    world_preset: str = "cpu"  # simulator.world.engine.WORLD_PRESETS entry that renders them (size replaced)
    max_sessions: int = 4  # Generator batch size: slots stepped together each tick
    device: str = "cpu"
    # GeneratorConfig.context for live play: "reuse" saves one model pass per tick; on held-out
    # worlds its rollouts were within sampling noise of "pass" (docs/benchmarks.md; on 8 worlds
    # that noise is ~0.6 dB over rollout horizons 1-16 between two sampling seeds)
    context: str = "reuse"
    # GeneratorConfig.compile for live play: the streaming pass through torch.compile, compiled at
    # start (`Generator.warm_up`); on the 2-core CPU 1.3-1.8x the frames/s of one stream (docs/benchmarks.md)
    compile: bool = True


DREAM_PRESETS: dict[str, DreamConfig] = {
    "cpu": DreamConfig(),
    # not compute-bound: the cache pass (the trained path), a little better and steadier across
    # sampling seeds than "reuse" on held-out worlds (docs/benchmarks.md, 2026-11-29)
    # (compile off: the Triton kernels inside a compiled graph are not measured yet)
    "gpu": DreamConfig(max_sessions=16, device="cuda", context="pass", compile=False),
}


class DreamBackend(Backend):
    """The world model through the streaming Generator; one Generator slot per session."""

    name = "dream"

    def __init__(self, generator: Any, config: DreamConfig | None = None, checkpoint: str | None = None) -> None:
        self.config = config or DreamConfig()
        self.generator = generator
        self.resolution = tuple(generator.resolution)
        self.max_sessions = self.config.max_sessions
        self.checkpoint = checkpoint
        self._frames: dict[int, np.ndarray] = {}

    @classmethod
    def from_checkpoint(cls, directory: str | Path, config: DreamConfig | None = None,
                        **overrides: Any) -> DreamBackend:
        from simulator.rollout.generator import Generator

        config = config or DreamConfig()
        generator = Generator.from_checkpoint(directory, device=config.device, batch_size=config.max_sessions,
                                              **{"context": config.context, "compile": config.compile, **overrides})
        if generator.config.compile:
            print("preparing the world model's compiled pass (built once on a machine, under a minute; then loaded)",
                  flush=True)
            generator.warm_up()
        return cls(generator, config, checkpoint=str(directory))

    def open(self, start: StartCondition) -> int:
        slot = self._free_slot(self._frames)
        self._start(slot, start)
        return slot

    def reset(self, slot: int, start: StartCondition) -> None:
        self._check(slot)
        self.generator.release(slot)
        self._start(slot, start)

    def _start(self, slot: int, start: StartCondition) -> None:
        frames, actions = self._context(start)
        self.generator.start(slot, frames, actions)
        self._frames[slot] = frames[-1]

    def _context(self, start: StartCondition) -> tuple[np.ndarray, list[Action]]:
        """Context frames uint8 [T0, H, W, 3] and their actions for a start condition."""
        from simulator.serve.codec import fit_image

        height, width = self.resolution
        if start.image is not None:
            return fit_image(start.image, height, width)[None], [NOOP]  # [H, W, 3] -> [1, H, W, 3]
        if start.recording is not None:
            frames, actions, _ = recording_start(start.recording)
            keep = self.config.context_frames
            frames, actions = frames[-keep:], actions[-keep:]
            if frames.shape[1:3] != (height, width):
                frames = np.stack([fit_image(f, height, width) for f in frames])
            return frames, actions
        from simulator.world.engine import WORLD_PRESETS, World

        world = World(start.seed, dataclasses.replace(WORLD_PRESETS[self.config.world_preset], width=width,
                                                      height=height))
        frames = [world.reset()] + [world.step(NOOP) for _ in range(self.config.context_frames - 1)]
        return np.stack(frames), [NOOP] * len(frames)

    def step(self, actions: dict[int, Action],
             abort: Callable[[], bool] | None = None) -> dict[int, np.ndarray] | None:
        for slot in actions:
            self._check(slot)
        frames = self.generator.step({slot: action.quantized() for slot, action in actions.items()}, abort=abort)
        if frames is None:  # abandoned for a newer action: nothing changed
            return None
        self._frames.update(frames)
        return {slot: frames[slot] for slot in actions}

    def frame(self, slot: int) -> np.ndarray:
        self._check(slot)
        return self._frames[slot]

    def idle(self) -> None:
        self.generator.flush()  # the cache pass of the frames just sent

    def close(self, slot: int) -> None:
        if self._frames.pop(slot, None) is not None:
            self.generator.release(slot)

    def _check(self, slot: int) -> None:
        if slot not in self._frames:
            raise KeyError(f"slot {slot} is not open (open: {sorted(self._frames)})")
