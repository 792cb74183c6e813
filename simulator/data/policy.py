"""An exploration policy that plays like a person, for collecting training episodes.

Human play (FINDINGS.md, from VPT contractor data): forward on ~21% of ticks, jump 15%,
attack 13%, use 5%, sneak ~4.5%, back/left/right 3-4% each; a hotbar press every ~130
ticks; the camera moves on about a third of ticks, median 2 degrees, p90 ~11 (yaw) / ~7
(pitch), at most 20.

The policy is a small state machine of *activities* that last several ticks (walk, strafe,
look around, pause, mine, build), so actions are sticky as a player's are. On top of the
activity run camera *gestures*: a few ticks of smooth motion of a sampled size. Reflexes
override both: jump when a one-block step is ahead, turn away when walking into a wall or
when walking has not moved the player, and pull the pitch back toward the horizon so the
view does not stay stuck on the sky or the ground. Everything comes from one seeded
generator and the world state, so the same seed in the same world gives the same actions.
Every action it returns is quantized (`Action.quantized()`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from simulator.actions import HOTBAR_SLOTS, Action


class PlayerLike(Protocol):
    position: tuple[float, float, float]  # x, y (up), z; feet
    yaw: float  # degrees
    pitch: float  # degrees, + looks up


class WorldLike(Protocol):
    player: PlayerLike

    def is_solid(self, x: int, y: int, z: int) -> bool: ...


def facing(yaw_deg: float) -> tuple[float, float]:
    """Unit (dx, dz) the player walks toward at this yaw (engine: yaw 0 looks along -z, +yaw turns right)."""
    yaw = math.radians(yaw_deg)
    return math.sin(yaw), -math.cos(yaw)


@dataclass
class PolicyConfig:
    # activity -> (weight when choosing the next one, min ticks, max ticks)
    # activity -> (weight when choosing the next one, min ticks, max ticks); with these, about
    # 30% of ticks are walking, 10% strafing, 20% looking, 10% pausing, 15% mining, 15% building
    activities: dict[str, tuple[float, int, int]] = field(default_factory=lambda: {
        "walk": (0.16, 20, 90),  # forward, some sprinting, hops
        "strafe": (0.15, 8, 30),  # back / left / right, sometimes sneaking
        "look": (0.23, 10, 40),  # stand and look around
        "pause": (0.16, 5, 30),  # do nothing
        "mine": (0.13, 15, 50),  # look down and hold attack
        "build": (0.16, 15, 40),  # look down, pick a block, tap use
    })
    gesture_rate: float = 0.09  # chance per idle tick that a camera gesture starts
    gesture_ticks: tuple[int, int] = (2, 6)  # a gesture lasts this many ticks
    gesture_median_deg: float = 2.5  # median per-tick camera speed within a gesture (lognormal)
    gesture_sigma: float = 0.9  # lognormal sigma of that speed
    pitch_share: float = 0.55  # chance a gesture also moves the pitch
    horizon_pull: float = 0.025  # pitch gestures point back toward the horizon with prob ~ |pitch| * this
    pitch_limit_deg: float = 55.0  # beyond this, the policy always pulls back toward the horizon
    work_pitch_deg: tuple[float, float] = (-50.0, -15.0)  # mining/building looks down into this range
    sprint_prob: float = 0.15  # chance a walk is a sprint
    hop_prob: float = 0.05  # chance per walking tick that a hop starts (players jump a lot while walking)
    idle_hop_prob: float = 0.006  # the same when not walking
    hop_ticks: tuple[int, int] = (3, 7)  # how long the jump key is held
    hotbar_prob: float = 0.006  # chance per tick of a hotbar press (~28 per 3600 ticks)
    use_tap_prob: float = 0.35  # chance per build tick that use is pressed
    sneak_prob: float = 0.3  # chance a strafe is sneaking
    stuck_ticks: int = 12  # walking this long without moving...
    stuck_distance: float = 0.4  # ...less than this many blocks means stuck: turn away
    probe_distance: float = 0.8  # look this far ahead (blocks) for steps and walls


POLICY_PRESETS: dict[str, PolicyConfig] = {
    "human": PolicyConfig(),
    # more walking and turning, less standing: covers ground faster (for long episodes)
    "explorer": PolicyConfig(activities={"walk": (0.3, 30, 120), "strafe": (0.15, 8, 30), "look": (0.2, 10, 30),
                                         "pause": (0.1, 5, 20), "mine": (0.1, 15, 40), "build": (0.15, 15, 30)}),
}


class ExplorerPolicy:
    """`act(world)` once per tick -> a quantized Action. See the module docstring."""

    def __init__(self, seed: int, config: PolicyConfig | None = None):
        self.config = config or PolicyConfig()
        self.rng = np.random.default_rng(seed)
        self.activity, self.ticks_left = "pause", 0
        self.held: dict[str, bool] = {}  # buttons held through the current activity
        self.gesture_left, self.gesture = 0, (0.0, 0.0)  # ticks left, per-tick (yaw, pitch)
        self.work_pitch = 0.0
        self.pick_block = False
        self.hop_left = 0  # ticks the jump key stays held
        self.trail: list[tuple[float, float]] = []  # recent (x, z) while walking

    # --- activities --------------------------------------------------------------------
    def _next_activity(self) -> None:
        names = list(self.config.activities)
        weights = np.array([self.config.activities[n][0] for n in names])
        self.activity = names[int(self.rng.choice(len(names), p=weights / weights.sum()))]
        lo, hi = self.config.activities[self.activity][1:]
        self.ticks_left = int(self.rng.integers(lo, hi + 1))
        self.trail.clear()
        cfg, r = self.config, self.rng
        if self.activity == "walk":
            self.held = {"forward": True, "sprint": bool(r.random() < cfg.sprint_prob)}
        elif self.activity == "strafe":
            self.held = {str(r.choice(["back", "left", "right"])): True, "sneak": bool(r.random() < cfg.sneak_prob)}
        elif self.activity in ("mine", "build"):
            self.held = {}
            self.work_pitch = float(r.uniform(*cfg.work_pitch_deg))
            self.pick_block = self.activity == "build"  # choose what to place first
        else:
            self.held = {}

    def _start_gesture(self, pitch_now: float) -> None:
        cfg, r = self.config, self.rng
        ticks = int(r.integers(cfg.gesture_ticks[0], cfg.gesture_ticks[1] + 1))
        speed = min(20.0, float(r.lognormal(math.log(cfg.gesture_median_deg), cfg.gesture_sigma)))
        yaw = speed * float(r.choice([-1.0, 1.0]))
        pitch = 0.0
        if r.random() < cfg.pitch_share:
            toward_horizon = -math.copysign(1.0, pitch_now) if pitch_now else float(r.choice([-1.0, 1.0]))
            p_back = 1.0 if abs(pitch_now) > cfg.pitch_limit_deg else min(1.0, 0.5 + cfg.horizon_pull * abs(pitch_now))
            sign = toward_horizon if r.random() < p_back else -toward_horizon
            pitch = sign * min(speed * float(r.uniform(0.3, 0.8)), abs(pitch_now) + 5.0 if sign == toward_horizon
                               else 20.0)
            if r.random() < 0.4:  # a pure look up/down
                yaw = 0.0
        self.gesture_left, self.gesture = ticks, (yaw, pitch)

    def _camera(self, pitch_now: float) -> tuple[float, float]:
        cfg = self.config
        if self.activity in ("mine", "build") and abs(pitch_now - self.work_pitch) > 3.0:
            step = float(np.clip((self.work_pitch - pitch_now) * 0.4, -12.0, 12.0))
            return float(self.rng.normal(0.0, 1.0)), step  # aim at the work, a little wobble
        if self.gesture_left == 0 and self.rng.random() < cfg.gesture_rate * (2.0 if self.activity == "look" else 1.0):
            self._start_gesture(pitch_now)
        if self.gesture_left == 0:
            if abs(pitch_now) > cfg.pitch_limit_deg:  # never stay staring at the sky or the ground
                return 0.0, -math.copysign(min(8.0, abs(pitch_now) - cfg.pitch_limit_deg + 2.0), pitch_now)
            return 0.0, 0.0
        self.gesture_left -= 1
        jitter = self.rng.normal(1.0, 0.15)  # hands are not perfectly steady
        return self.gesture[0] * jitter, self.gesture[1] * jitter

    # --- reflexes ----------------------------------------------------------------------
    def _ahead(self, world: WorldLike) -> tuple[bool, bool]:
        """(a block at feet level ahead, too high to jump onto) in the walking direction."""
        x, y, z = world.player.position
        dx, dz = facing(world.player.yaw)
        d = self.config.probe_distance
        bx, by, bz = math.floor(x + dx * d), math.floor(y + 0.01), math.floor(z + dz * d)
        # a 1.8-block player stepping up one block needs the two cells above the step free
        return world.is_solid(bx, by, bz), world.is_solid(bx, by + 1, bz) or world.is_solid(bx, by + 2, bz)

    def _stuck(self, world: WorldLike) -> bool:
        x, _, z = world.player.position
        self.trail.append((x, z))
        n = self.config.stuck_ticks
        if len(self.trail) <= n:
            return False
        (x0, z0), self.trail = self.trail[-n - 1], self.trail[-n - 1:]
        return math.hypot(x - x0, z - z0) < self.config.stuck_distance

    def _turn_away(self) -> None:
        """A big turn over a few ticks, then walk on."""
        total = float(self.rng.uniform(90.0, 200.0))
        speed = float(self.rng.uniform(6.0, 14.0))  # degrees per tick: about a second for a half turn
        ticks = math.ceil(total / speed)
        self.gesture_left, self.gesture = ticks, (speed * float(self.rng.choice([-1.0, 1.0])), 0.0)
        self.trail.clear()

    def _walk_reflexes(self, world: WorldLike, buttons: dict[str, bool]) -> None:
        feet, head = self._ahead(world)
        if feet and head:  # a wall: turn away (unless already turning)
            if self.gesture_left == 0:
                self._turn_away()
        elif feet:  # a one-block step: jump onto it
            buttons["jump"] = True
        if self._stuck(world):  # walking but not moving: jump and turn away
            buttons["jump"] = True
            self._turn_away()

    def _hop(self) -> bool:
        cfg = self.config
        if self.hop_left == 0 and self.rng.random() < (cfg.hop_prob if self.activity == "walk" else cfg.idle_hop_prob):
            self.hop_left = int(self.rng.integers(cfg.hop_ticks[0], cfg.hop_ticks[1] + 1))
        if self.hop_left > 0:
            self.hop_left -= 1
            return True
        return False

    # --- the tick ----------------------------------------------------------------------
    def act(self, world: WorldLike) -> Action:
        cfg, r = self.config, self.rng
        if self.ticks_left <= 0:
            self._next_activity()
        self.ticks_left -= 1
        buttons = dict(self.held)
        if self.activity == "walk":
            self._walk_reflexes(world, buttons)
        elif self.activity == "mine":
            buttons["attack"] = True
        elif self.activity == "build":
            buttons["use"] = bool(r.random() < cfg.use_tap_prob)
        # in water, hold jump to swim at the surface, as players do, instead of sinking
        swimming = bool(getattr(world.player, "in_water", False))
        buttons["jump"] = self._hop() or swimming or buttons.get("jump", False)
        yaw, pitch = self._camera(float(world.player.pitch))
        hotbar = None
        if r.random() < cfg.hotbar_prob or self.pick_block:
            hotbar, self.pick_block = int(r.integers(HOTBAR_SLOTS)), False
        return Action(**{k: v for k, v in buttons.items() if v}, hotbar=hotbar, yaw=yaw, pitch=pitch).quantized()
