"""The engine as a Gymnasium environment (the only module of the engine that imports gymnasium).

Action space (a Dict matching `simulator.actions.Action`):
    "forward" ... "use": Discrete(2) each (the nine buttons)
    "hotbar": Discrete(10), 0 = no press, 1 + s = select slot s
    "camera": Box(-20, 20, (2,), float32), (yaw, pitch) degrees, quantized to the model's bins
Observation: Box(0, 255, (H, W, 3), uint8), the frame. Reward is always 0 (an exploration and
data world, not a task); episodes are truncated after `max_steps` ticks.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from simulator.actions import BUTTONS, CAMERA_MAX_DEG, HOTBAR_SLOTS, Action
from simulator.world.engine import World, WorldConfig


def action_space() -> spaces.Dict:
    items: dict[str, spaces.Space] = {name: spaces.Discrete(2) for name in BUTTONS}
    items["hotbar"] = spaces.Discrete(HOTBAR_SLOTS + 1)
    items["camera"] = spaces.Box(-CAMERA_MAX_DEG, CAMERA_MAX_DEG, (2,), np.float32)
    return spaces.Dict(items)


def to_action(sample: dict[str, Any]) -> Action:
    """A sample of `action_space()` -> the quantized Action the engine applies."""
    missing = [k for k in (*BUTTONS, "hotbar", "camera") if k not in sample]
    if missing:
        raise ValueError(f"action is missing keys {missing}")
    hotbar = int(sample["hotbar"])
    if not 0 <= hotbar <= HOTBAR_SLOTS:
        raise ValueError(f"hotbar {hotbar}: expected 0 (no press) .. {HOTBAR_SLOTS}")
    yaw, pitch = (float(v) for v in np.asarray(sample["camera"], np.float64).reshape(2))
    return Action(**{name: bool(sample[name]) for name in BUTTONS}, hotbar=None if hotbar == 0 else hotbar - 1,
                  yaw=yaw, pitch=pitch).quantized()


class WorldEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, config: WorldConfig = WorldConfig(), seed: int = 0, max_steps: int = 1200,
                 render_mode: str | None = "rgb_array"):
        self.config = config
        self.world_seed = seed
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.action_space = action_space()
        self.observation_space = spaces.Box(0, 255, (config.height, config.width, 3), np.uint8)
        self.world: World | None = None
        self._frame: np.ndarray | None = None

    def _info(self) -> dict[str, Any]:
        assert self.world is not None
        return {"seed": self.world.seed, "tick": self.world.tick, "biome": self.world.biome(),
                "position": self.world.player.position.copy(), "caption": self.world.caption()}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """`seed` picks the world (same seed, same world); None keeps the current one."""
        super().reset(seed=seed)
        if seed is not None:
            self.world_seed = int(seed)
        if self.world is None or self.world.seed != self.world_seed:
            self.world = World(self.world_seed, self.config)
        self._frame = self.world.reset()
        return self._frame, self._info()

    def step(self, action: dict[str, Any] | Action) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.world is None:
            raise RuntimeError("step() before reset(): call reset() first")
        act = action if isinstance(action, Action) else to_action(action)
        self._frame = self.world.step(act)
        truncated = self.world.tick >= self.max_steps
        return self._frame, 0.0, False, truncated, self._info()

    def render(self) -> np.ndarray | None:
        return self._frame if self.render_mode == "rgb_array" else None
