import math
from dataclasses import dataclass

import numpy as np
import pytest

from simulator import actions as A
from simulator.data.policy import POLICY_PRESETS, ExplorerPolicy, facing


@dataclass
class FakePlayer:
    position: tuple[float, float, float] = (0.5, 1.0, 0.5)
    yaw: float = 0.0
    pitch: float = 0.0


class FakeWorld:
    """Flat ground at y = 0 with a ring of 3-high walls at radius 12 and scattered 1-block steps.

    Enough physics for the policy's reflexes: walking is blocked by a solid block at feet
    level unless jumping onto a one-block step.
    """

    def __init__(self, walls: bool = True):
        self.player = FakePlayer()
        self.walls = walls

    def is_solid(self, x: int, y: int, z: int) -> bool:
        if y < 1:
            return True
        ground = 1 + ((x * 7 + z * 13) % 23 == 0)  # a one-block step here and there
        if self.walls and max(abs(x), abs(z)) >= 12:
            ground = 4
        return y < ground

    def step(self, a: A.Action) -> None:
        p = self.player
        p.yaw = (p.yaw + a.yaw) % 360.0
        p.pitch = float(np.clip(p.pitch + a.pitch, -90.0, 90.0))
        dx, dz = facing(p.yaw)
        sx, sz = -dz, dx  # to the right
        mx = (a.forward - a.back) * dx + (a.right - a.left) * sx
        mz = (a.forward - a.back) * dz + (a.right - a.left) * sz
        speed = 0.28 if a.sprint else 0.065 if a.sneak else 0.22
        x, y, z = p.position
        nx, nz = x + mx * speed, z + mz * speed
        feet = math.floor(y)
        if self.is_solid(math.floor(nx), feet, math.floor(nz)):
            if a.jump and not self.is_solid(math.floor(nx), feet + 1, math.floor(nz)):
                y += 1.0
            else:
                nx, nz = x, z
        while y > 1 and not self.is_solid(math.floor(nx), math.floor(y) - 1, math.floor(nz)):
            y -= 1.0
        p.position = (nx, y, nz)


def play(seed: int, ticks: int, world=None, preset: str = "human"):
    world = world or FakeWorld()
    policy = ExplorerPolicy(seed, POLICY_PRESETS[preset])
    out, pitches, positions = [], [], []
    for _ in range(ticks):
        a = policy.act(world)
        world.step(a)
        out.append(a)
        pitches.append(world.player.pitch)
        positions.append(world.player.position)
    return out, np.array(pitches), np.array(positions)


def test_deterministic_and_quantized():
    a, _, _ = play(3, 400)
    b, _, _ = play(3, 400)
    c, _, _ = play(4, 400)
    assert a == b and a != c
    assert all(x == x.quantized() for x in a)


def test_action_statistics_look_human():
    actions, pitches, _ = play(0, 6000)
    rate = {n: np.mean([getattr(a, n) for a in actions]) for n in A.BUTTONS}
    assert 0.15 < rate["forward"] < 0.45, rate
    assert 0.05 < rate["jump"] < 0.25, rate
    assert 0.06 < rate["attack"] < 0.25, rate
    assert 0.02 < rate["use"] < 0.10, rate
    for name in ("back", "left", "right", "sneak"):
        assert 0.003 < rate[name] < 0.08, (name, rate)
    hotbar = sum(a.hotbar is not None for a in actions)
    assert 20 < hotbar < 150, hotbar  # per 6000 ticks; humans ~47
    yaw = np.abs([a.yaw for a in actions])
    pitch = np.abs([a.pitch for a in actions])
    moving = (yaw > 0) | (pitch > 0)
    assert 0.2 < moving.mean() < 0.5, moving.mean()
    moved = np.concatenate([yaw[yaw > 0], pitch[pitch > 0]])
    assert 1.0 <= np.median(moved) <= 5.0, np.median(moved)
    assert 6.0 <= np.percentile(yaw[yaw > 0], 90) <= 20.0
    assert len({a.yaw for a in actions}) >= 12  # uses many camera bins, both signs
    # the pitch comes back to the horizon: not stuck looking up or down
    assert np.mean(np.abs(pitches) < 30) > 0.6, np.mean(np.abs(pitches) < 30)
    assert np.max(np.abs(pitches)) < 80


def test_sticky_actions():
    actions, _, _ = play(1, 3000)
    fwd = np.array([a.forward for a in actions], int)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, fwd, 0])))[::2]  # lengths of forward runs
    assert np.median(runs) >= 10, runs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gets_away_from_walls_and_explores(seed):
    # a closed arena: walking into the wall must turn the player, not pin it there
    _, _, pos = play(seed, 3000, preset="explorer")
    at_wall = np.maximum(np.abs(pos[:, 0]), np.abs(pos[:, 2])) > 11.0
    longest = max((len(r) for r in np.split(at_wall, np.flatnonzero(np.diff(at_wall)) + 1) if r[0]), default=0)
    assert longest < 200, longest  # never pinned for 10 seconds
    cells = {(math.floor(x / 4), math.floor(z / 4)) for x, _, z in pos}
    assert len(cells) >= 10, len(cells)  # it wanders over the arena
    assert pos[:, 1].max() >= 2.0  # it climbed onto a step at least once


def test_explores_the_real_engine():
    from simulator.world.engine import WORLD_PRESETS, World

    world = World(100003, WORLD_PRESETS["tiny"])
    world.reset()
    policy = ExplorerPolicy(0, POLICY_PRESETS["explorer"])
    cells, pitches = set(), []
    for _ in range(600):
        world.step(policy.act(world))
        x, _, z = world.player.position
        cells.add((math.floor(x), math.floor(z)))
        pitches.append(world.player.pitch)
    assert len(cells) >= 40, len(cells)  # it walked somewhere, not pinned to one spot
    assert np.mean(np.abs(pitches) < 45) > 0.8 and max(np.abs(pitches)) < 85
