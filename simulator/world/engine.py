"""The ground-truth voxel world: terrain by seed, a player, block breaking/placing, frames.

`World(seed, config)` is the one object the rest of the project uses (data collection,
evaluation, the env, the window). One `step(action)` is one 20 Hz tick and returns the frame
after it. Same seed + same actions -> bit-identical frames (all state is derived from the
seed; no global RNG, no wall clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simulator.actions import Action
from simulator.world import blocks as B
from simulator.world.physics import PhysicsConfig, Player, box_cells, step_player
from simulator.world.raycast import pick, render_parallel, render_serial
from simulator.world.terrain import BIOMES, CHUNK, OCEAN, SNOWY_MOUNTAINS, WORLD_HEIGHT, column
from simulator.world.voxels import VoxelStore

# Bump when terrain, physics or rendering change what a seed + actions produce.
ENGINE_VERSION = "1.2"

__all__ = ["BIOMES", "ENGINE_VERSION", "WORLD_PRESETS", "World", "WorldConfig"]


@dataclass(frozen=True)
class WorldConfig:
    width: int = 64  # frame width in pixels
    height: int = 64  # frame height in pixels
    fov_deg: float = 70.0  # vertical field of view, degrees
    render_distance: float = 56.0  # blocks; the fog is total here
    fog_start: float = 0.5  # fog begins at this fraction of the render distance
    view_radius_chunks: int = 4  # chunks kept dense around the player; must cover render_distance
    reach: float = 4.5  # blocks from the eye within which attack/use act
    action_repeat_ticks: int = 4  # holding attack/use repeats it every this many ticks
    # render rows on numba's threads: ~2x on an idle 2-core box, but slower than one thread when
    # other jobs share the cores (a barrier per frame waits for a descheduled thread)
    parallel: bool = False
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"resolution {self.width}x{self.height}: both sides must be >= 1 pixel")
        if not 1.0 <= self.fov_deg <= 170.0:
            raise ValueError(f"fov {self.fov_deg} degrees: must be in 1..170")
        if self.render_distance > self.view_radius_chunks * CHUNK:
            raise ValueError(f"render distance {self.render_distance} blocks exceeds the loaded view "
                             f"({self.view_radius_chunks} chunks = {self.view_radius_chunks * CHUNK} blocks)")


WORLD_PRESETS: dict[str, WorldConfig] = {
    "tiny": WorldConfig(width=32, height=24, render_distance=24.0, view_radius_chunks=2),  # tests
    "cpu": WorldConfig(),  # training data for the CPU model, 64x64
    "hd": WorldConfig(width=256, height=256),  # the window, GPU models
}

# blocks a caption can name: solid ones and water
_VISIBLE = B.SOLID.copy()
_VISIBLE[B.WATER] = True
_GROUND = (B.GRASS, B.DIRT, B.SAND, B.STONE, B.SNOW, B.SNOWY_GRASS, B.GRAVEL, B.SANDSTONE)


class World:
    def __init__(self, seed: int, config: WorldConfig = WorldConfig()):
        if not -2**63 <= int(seed) < 2**63:
            raise ValueError(f"seed {seed} does not fit in a signed 64-bit integer")
        self.seed = int(seed)
        self.config = config
        self.player = Player()
        self.tick = 0
        self.store = VoxelStore(self.seed, config.view_radius_chunks)
        self._cooldown = {"attack": 0, "use": 0}
        self.spawn = self._find_spawn()

    # --- lifecycle ------------------------------------------------------------------------

    def _find_spawn(self) -> tuple[float, float, float]:
        """First land column (not ocean, not a mountain top, not a tree) on a spiral from the origin."""
        fallback = None
        for radius in range(0, 4000, 8):
            for i in range(max(1, radius // 4)):
                angle = 2 * math.pi * i / max(1, radius // 4)
                x, z = int(round(radius * math.cos(angle))), int(round(radius * math.sin(angle)))
                height, biome = column(self.seed, x, z)
                if biome == OCEAN:
                    continue
                top = self.store.surface_y(x, z)
                if self.store.get(x, top - 1, z) not in _GROUND:
                    continue
                if biome != SNOWY_MOUNTAINS:
                    return x + 0.5, float(top), z + 0.5
                fallback = fallback or (x + 0.5, float(top), z + 0.5)
        if fallback is None:
            raise RuntimeError(f"seed {self.seed}: no land within 4000 blocks of the origin")
        return fallback

    def reset(self) -> np.ndarray:
        """A fresh world (edits undone), the player at the seed's spawn point; returns the frame."""
        self.store = VoxelStore(self.seed, self.config.view_radius_chunks)
        self.player = Player(position=np.array(self.spawn, np.float64))
        self.player.on_ground = True
        self.tick = 0
        self._cooldown = {"attack": 0, "use": 0}
        return self.render()

    def step(self, action: Action) -> np.ndarray:
        """One 20 Hz tick: camera, hotbar, movement, then attack/use; returns the frame after it."""
        self.store.follow(self.player.position[0], self.player.position[2])
        step_player(self.player, action, self.store, self.config.physics)
        self.store.follow(self.player.position[0], self.player.position[2])
        for name, pressed, act in (("attack", action.attack, self._break), ("use", action.use, self._place)):
            if not pressed:
                self._cooldown[name] = 0  # a fresh press always acts
            elif self._cooldown[name] > 0:
                self._cooldown[name] -= 1
            else:
                act()
                self._cooldown[name] = self.config.action_repeat_ticks - 1
        self.tick += 1
        return self.render()

    def teleport(self, x: float, z: float, yaw: float | None = None, pitch: float | None = None) -> None:
        """Put the player on the surface of column (x, z) (standing, at rest)."""
        self.player.position = np.array([x, float(self.store.surface_y(math.floor(x), math.floor(z))), z])
        self.player.velocity = np.zeros(3)
        self.player.on_ground = True
        self.player.yaw = self.player.yaw if yaw is None else float(yaw) % 360.0
        self.player.pitch = self.player.pitch if pitch is None else float(pitch)
        self.store.follow(x, z)

    def fill(self, lo: tuple[int, int, int], hi: tuple[int, int, int], block: str) -> None:
        """Set every cell of the inclusive box lo..hi (world coordinates) to `block` (a name)."""
        b = B.block_id(block)
        for x in range(lo[0], hi[0] + 1):
            for y in range(lo[1], hi[1] + 1):
                for z in range(lo[2], hi[2] + 1):
                    self.store.set(x, y, z, b)

    # --- looking --------------------------------------------------------------------------

    def _eye_in_view(self) -> tuple[float, float, float]:
        eye = self.player.eye(self.config.physics)
        return eye[0] - self.store.origin[0], eye[1], eye[2] - self.store.origin[1]

    def render(self, reference: bool = False) -> np.ndarray:
        """The frame seen by the player: uint8 [height, width, 3], no HUD. `reference=True` uses the
        plain DDA (slow; tests compare it with the fast path)."""
        c = self.config
        self.store.follow(self.player.position[0], self.player.position[2])
        ex, ey, ez = self._eye_in_view()
        s = self.store
        out = np.empty((c.height, c.width, 3), np.uint8)
        draw = render_parallel if c.parallel else render_serial
        draw(out, s.view, s.top, s.heights, s.macro, ex, ey, ez, float(self.player.yaw), float(self.player.pitch),
             c.fov_deg, c.render_distance, c.fog_start * c.render_distance, B.texture_atlas(), reference)
        return out

    def _pick(self, reach: float, mask: np.ndarray) -> tuple[bool, tuple[int, int, int], tuple[int, int, int]]:
        self.store.follow(self.player.position[0], self.player.position[2])
        d = self.player.look()
        hit, x, y, z, nx, ny, nz = pick(self.store.view, mask, *self._eye_in_view(), d[0], d[1], d[2], reach)
        ox, oz = self.store.origin
        return bool(hit), (x + ox, y, z + oz), (nx, ny, nz)

    def target(self) -> tuple[int, int, int] | None:
        """World coordinates of the solid block under the crosshair within reach, or None."""
        hit, cell, _ = self._pick(self.config.reach, B.SOLID)
        return cell if hit else None

    # --- acting ---------------------------------------------------------------------------

    def _break(self) -> bool:
        hit, (x, y, z), _ = self._pick(self.config.reach, B.SOLID)
        if not hit or y == 0:  # the bottom layer is unbreakable: nobody falls out of the world
            return False
        self.store.set(x, y, z, B.AIR)
        return True

    def _place(self) -> bool:
        hit, (x, y, z), (nx, ny, nz) = self._pick(self.config.reach, B.SOLID)
        if not hit:
            return False
        px, py, pz = x + nx, y + ny, z + nz
        if not 0 <= py < WORLD_HEIGHT or self.store.get(px, py, pz) not in (B.AIR, B.WATER):
            return False
        x0, x1, y0, y1, z0, z1 = box_cells(self.player.position, self.config.physics)
        if x0 <= px <= x1 and y0 <= py <= y1 and z0 <= pz <= z1:
            return False  # never inside the player
        self.store.set(px, py, pz, B.HOTBAR[self.player.slot])
        return True

    # --- queries for data collection ------------------------------------------------------

    def is_solid(self, x: int, y: int, z: int) -> bool:
        return bool(B.SOLID[self.store.get(x, y, z)])

    def block(self, x: int, y: int, z: int) -> str:
        return B.BLOCK_NAMES[self.store.get(x, y, z)]

    def biome(self) -> str:
        """Biome of the column under the player."""
        x, _, z = self.player.position
        return BIOMES[column(self.seed, math.floor(x), math.floor(z))[1]]

    def terrain_ahead(self, distance: float = 1.0) -> str:
        """What walking forward meets `distance` blocks ahead (horizontal look direction):
        "clear", "step" (one block up: jump), "wall" (two or more up), "drop" (3+ blocks down) or "water"."""
        yaw = math.radians(self.player.yaw)
        x = math.floor(self.player.position[0] + math.sin(yaw) * distance)
        z = math.floor(self.player.position[2] - math.cos(yaw) * distance)
        y = math.floor(self.player.position[1] + 1e-6)
        if self.is_solid(x, y, z):
            return "wall" if self.is_solid(x, y + 1, z) or self.is_solid(x, y + 2, z) else "step"
        if self.store.get(x, y, z) == B.WATER or self.store.get(x, y - 1, z) == B.WATER:
            return "water"
        if not any(self.is_solid(x, y - k, z) for k in (1, 2, 3)):
            return "drop"
        return "clear"

    def caption(self) -> str:
        """Short text for the scene, e.g. "snowy mountains, looking at stone, daytime"."""
        eye = self.player.eye(self.config.physics)
        underwater = self.store.get(math.floor(eye[0]), math.floor(eye[1]), math.floor(eye[2])) == B.WATER
        # under water the view goes through the water to what lies beyond it
        hit, (x, y, z), _ = self._pick(self.config.render_distance, B.SOLID if underwater else _VISIBLE)
        looking = f"looking at {B.BLOCK_NAMES[self.store.get(x, y, z)]}" if hit else "looking at the sky"
        words = [self.biome().replace("_", " "), looking] + (["underwater"] if underwater else [])
        return ", ".join(words + ["daytime"])
