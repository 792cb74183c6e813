"""Player physics at 20 ticks/s: an axis-aligned box with gravity, jumping, walking, swimming.

Constants follow Minecraft's per-tick integration (gravity 0.08 blocks/tick^2, vertical drag
0.98, jump impulse 0.42), which gives a jump apex of 1.25 blocks: one block up is clear,
two are not. Horizontal speed is set directly from the keys each tick (no inertia), which
keeps the action -> motion map simple for the model to learn.

Collision resolves one axis at a time (y, then x, then z), each move cut into pieces shorter
than half a block so fast falls cannot tunnel through a floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simulator.actions import Action
from simulator.world.voxels import VoxelStore


@dataclass(frozen=True)
class PhysicsConfig:
    tick_rate: float = 20.0  # ticks per second
    walk_speed: float = 4.317  # blocks per second
    sprint_speed: float = 5.612  # blocks per second (forward only)
    sneak_speed: float = 1.295  # blocks per second
    swim_factor: float = 0.6  # horizontal speed multiplier in water
    gravity: float = 0.08  # blocks per tick^2
    drag: float = 0.98  # vertical velocity multiplier per tick in air
    jump_velocity: float = 0.42  # blocks per tick, apex ~1.25 blocks
    water_gravity: float = 0.02  # blocks per tick^2 in water
    water_drag: float = 0.8  # vertical velocity multiplier per tick in water
    swim_up: float = 0.06  # blocks per tick^2 while jump is held in water
    water_exit_velocity: float = 0.3  # blocks per tick: jump in water against a wall climbs out (a bank)
    width: float = 0.6  # blocks, x and z extent of the box
    height: float = 1.8  # blocks
    eye_height: float = 1.62  # blocks above the feet
    sneak_eye_height: float = 1.27  # camera drops while sneaking
    max_pitch: float = 89.0  # degrees; the camera never flips over


@dataclass
class Player:
    position: np.ndarray = field(default_factory=lambda: np.zeros(3))  # feet centre (x, y, z), y up
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))  # blocks per tick
    yaw: float = 0.0  # degrees, 0 looks along -z, +yaw turns right
    pitch: float = 0.0  # degrees, + looks up
    on_ground: bool = False
    in_water: bool = False
    against_wall: bool = False  # a horizontal move was blocked in the last tick
    sneaking: bool = False
    slot: int = 0  # selected hotbar slot

    def eye(self, config: PhysicsConfig) -> np.ndarray:
        h = config.sneak_eye_height if self.sneaking else config.eye_height
        return self.position + np.array([0.0, h, 0.0])

    def look(self) -> np.ndarray:
        """Unit view direction."""
        yaw, pitch = math.radians(self.yaw), math.radians(self.pitch)
        return np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), -math.cos(yaw) * math.cos(pitch)])


_EPS = 1e-7


def box_cells(position: np.ndarray, config: PhysicsConfig) -> tuple[int, int, int, int, int, int]:
    """Inclusive integer cell ranges (x0, x1, y0, y1, z0, z1) that the player's box overlaps."""
    half = config.width / 2
    x, y, z = position
    return (math.floor(x - half + _EPS), math.floor(x + half - _EPS), math.floor(y + _EPS),
            math.floor(y + config.height - _EPS), math.floor(z - half + _EPS), math.floor(z + half - _EPS))


def _move_axis(store: VoxelStore, pos: np.ndarray, axis: int, delta: float, config: PhysicsConfig) -> bool:
    """Move `pos` (in place) by `delta` along `axis`, stopping at solid blocks. Returns True on contact."""
    pieces = max(1, math.ceil(abs(delta) / 0.45))
    piece = delta / pieces
    half = config.width / 2
    for _ in range(pieces):
        pos[axis] += piece
        x0, x1, y0, y1, z0, z1 = box_cells(pos, config)
        if not store.any_solid(x0, x1, y0, y1, z0, z1):
            continue
        lo, hi = ((x0, x1), (y0, y1), (z0, z1))[axis]
        if piece > 0:  # blocked by the nearest solid layer ahead: the cell index `hi`
            edge = hi
            pos[axis] = edge - (config.height if axis == 1 else half) - _EPS
        else:
            edge = lo
            pos[axis] = edge + 1 + (0.0 if axis == 1 else half) + _EPS
        return True
    return False


def _has_floor(store: VoxelStore, pos: np.ndarray, config: PhysicsConfig) -> bool:
    x0, x1, _, _, z0, z1 = box_cells(pos, config)
    y = math.floor(pos[1] - 0.05)
    return store.any_solid(x0, x1, y, y, z0, z1)


def step_player(player: Player, action: Action, store: VoxelStore, config: PhysicsConfig) -> None:
    """Advance the player one tick under `action` (camera, hotbar, movement; not attack/use)."""
    player.yaw = (player.yaw + action.yaw) % 360.0
    player.pitch = float(np.clip(player.pitch + action.pitch, -config.max_pitch, config.max_pitch))
    if action.hotbar is not None:
        player.slot = action.hotbar
    player.sneaking = action.sneak

    # horizontal velocity straight from the keys
    f = float(action.forward) - float(action.back)
    s = float(action.right) - float(action.left)
    if action.sneak:
        speed = config.sneak_speed
    elif action.sprint and action.forward:
        speed = config.sprint_speed
    else:
        speed = config.walk_speed
    speed /= config.tick_rate
    if player.in_water:
        speed *= config.swim_factor
    norm = math.hypot(f, s)
    yaw = math.radians(player.yaw)
    vx = vz = 0.0
    if norm > 0:
        f, s = f / norm, s / norm
        vx = (f * math.sin(yaw) + s * math.cos(yaw)) * speed
        vz = (-f * math.cos(yaw) + s * math.sin(yaw)) * speed

    # vertical: jump or swim, then move, then gravity and drag
    vy = player.velocity[1]
    if player.in_water:
        if action.jump and player.against_wall:
            vy = max(vy, config.water_exit_velocity)
        elif action.jump:
            vy += config.swim_up
    elif action.jump and player.on_ground:
        vy = config.jump_velocity
    pos = player.position
    player.on_ground = False
    if _move_axis(store, pos, 1, vy, config):
        player.on_ground = vy < 0
        vy = 0.0
    player.against_wall = False
    for axis, v in ((0, vx), (2, vz)):
        if v == 0.0:
            continue
        before = pos[axis]
        player.against_wall |= _move_axis(store, pos, axis, v, config)
        if action.sneak and player.on_ground and not _has_floor(store, pos, config):
            pos[axis] = before  # sneaking never walks off an edge
    if player.in_water:
        vy = (vy - config.water_gravity) * config.water_drag
    else:
        vy = (vy - config.gravity) * config.drag
    player.velocity[:] = (vx, vy, vz)
    x0, x1, _, _, z0, z1 = box_cells(pos, config)
    player.in_water = store.any_water(x0, x1, math.floor(pos[1] + 0.4), z0, z1)
