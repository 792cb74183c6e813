"""The block store: chunks generated on demand, edits kept, and a dense view around the player.

Chunks are the truth (generated from the seed the first time they are touched, then kept
with their edits). The renderer and the block picker read `view`, a dense uint8
[X, WORLD_HEIGHT, Z] copy of the (2R+1) x (2R+1) chunks around the player, rebuilt when the
player crosses into another chunk. Unedited chunks far away are dropped and regenerated if
the player comes back, so memory stays bounded however far one walks.
"""

from __future__ import annotations

import numpy as np

from simulator.world import blocks as B
from simulator.world.raycast import MACRO
from simulator.world.terrain import CHUNK, WORLD_HEIGHT, generate_chunk


class VoxelStore:
    def __init__(self, seed: int, view_radius_chunks: int = 4):
        if view_radius_chunks < 1:
            raise ValueError(f"view radius {view_radius_chunks} chunks: need at least 1")
        self.seed = int(seed)
        self.radius = view_radius_chunks
        self.chunks: dict[tuple[int, int], np.ndarray] = {}  # (cx, cz) -> uint8 [16, H, 16]
        self.edited: set[tuple[int, int]] = set()
        side = (2 * view_radius_chunks + 1) * CHUNK
        self.view = np.zeros((side, WORLD_HEIGHT, side), np.uint8)  # [x, y, z]
        self.center: tuple[int, int] | None = None
        self.origin = (0, 0)  # world (x, z) of view[0, :, 0]
        self.top = 0  # highest y of any non-air block in the view (rays above it going up see sky)
        # for empty-space skipping: 1 + highest non-air y per column [X, Z], and its max per MACRO^2 group
        self.heights = np.zeros((side, side), np.int64)
        self.macro = np.zeros((side // MACRO, side // MACRO), np.int64)

    def chunk(self, cx: int, cz: int) -> np.ndarray:
        key = (cx, cz)
        if key not in self.chunks:
            self.chunks[key] = generate_chunk(self.seed, cx, cz)
        return self.chunks[key]

    def get(self, x: int, y: int, z: int) -> int:
        """Block id at world (x, y, z); air above the world, stone below it."""
        if y >= WORLD_HEIGHT:
            return B.AIR
        if y < 0:
            return B.STONE
        return int(self.chunk(x // CHUNK, z // CHUNK)[x % CHUNK, y, z % CHUNK])

    def set(self, x: int, y: int, z: int, block: int) -> None:
        if not 0 <= y < WORLD_HEIGHT:
            raise ValueError(f"y={y} is outside the world (0..{WORLD_HEIGHT - 1})")
        cx, cz = x // CHUNK, z // CHUNK
        self.chunk(cx, cz)[x % CHUNK, y, z % CHUNK] = block
        self.edited.add((cx, cz))
        vx, vz = x - self.origin[0], z - self.origin[1]
        if self.center is not None and 0 <= vx < self.view.shape[0] and 0 <= vz < self.view.shape[2]:
            self.view[vx, y, vz] = block
            if block != B.AIR:
                self.top = max(self.top, y)
            filled = np.flatnonzero(self.view[vx, :, vz])
            self.heights[vx, vz] = filled[-1] + 1 if filled.size else 0
            mx, mz = vx // MACRO, vz // MACRO
            self.macro[mx, mz] = self.heights[mx * MACRO:(mx + 1) * MACRO, mz * MACRO:(mz + 1) * MACRO].max()

    def follow(self, x: float, z: float) -> None:
        """Make sure the view covers the chunks around world (x, z); rebuild it if the chunk changed."""
        center = (int(np.floor(x)) // CHUNK, int(np.floor(z)) // CHUNK)
        if center == self.center:
            return
        self.center = center
        r = self.radius
        self.origin = ((center[0] - r) * CHUNK, (center[1] - r) * CHUNK)
        for i in range(2 * r + 1):
            for j in range(2 * r + 1):
                chunk = self.chunk(center[0] - r + i, center[1] - r + j)
                self.view[i * CHUNK:(i + 1) * CHUNK, :, j * CHUNK:(j + 1) * CHUNK] = chunk
        filled = np.flatnonzero(self.view.any(axis=(0, 2)))  # y levels holding any block
        self.top = int(filled[-1]) if filled.size else 0
        occupied = self.view != B.AIR  # [X, H, Z]
        self.heights[:] = np.where(occupied.any(axis=1), WORLD_HEIGHT - np.argmax(occupied[:, ::-1, :], axis=1), 0)
        side = self.heights.shape[0]
        self.macro[:] = self.heights.reshape(side // MACRO, MACRO, side // MACRO, MACRO).max(axis=(1, 3))  # [X/M, Z/M]
        self._forget_far(center)

    def _forget_far(self, center: tuple[int, int]) -> None:
        """Drop unedited chunks well outside the view; they regenerate identically if needed."""
        keep = 2 * self.radius + 2
        for key in [k for k in self.chunks if k not in self.edited
                    and max(abs(k[0] - center[0]), abs(k[1] - center[1])) > keep]:
            del self.chunks[key]

    def surface_y(self, x: int, z: int) -> int:
        """y of the first air cell above the highest non-air block of column (x, z)."""
        column = self.chunk(x // CHUNK, z // CHUNK)[x % CHUNK, :, z % CHUNK]
        filled = np.flatnonzero(column)
        return int(filled[-1]) + 1 if filled.size else 0

    def _box(self, x0: int, x1: int, y0: int, y1: int, z0: int, z1: int) -> np.ndarray:
        """Blocks of the inclusive world box, y clipped to the world: uint8 [dx, dy, dz]."""
        ya, yb = max(y0, 0), min(y1, WORLD_HEIGHT - 1)
        if ya > yb:
            return np.zeros((0, 0, 0), np.uint8)
        vx0, vz0 = x0 - self.origin[0], z0 - self.origin[1]
        vx1, vz1 = x1 - self.origin[0], z1 - self.origin[1]
        side = self.view.shape[0]
        if self.center is not None and 0 <= vx0 and vx1 < side and 0 <= vz0 and vz1 < side:
            return self.view[vx0:vx1 + 1, ya:yb + 1, vz0:vz1 + 1]
        return np.array([[[self.get(x, y, z) for z in range(z0, z1 + 1)] for y in range(ya, yb + 1)]
                         for x in range(x0, x1 + 1)], np.uint8)

    def any_solid(self, x0: int, x1: int, y0: int, y1: int, z0: int, z1: int) -> bool:
        """Whether any block in the inclusive world box is solid (below the world counts as solid)."""
        if y0 < 0:
            return True
        return bool(B.SOLID[self._box(x0, x1, y0, y1, z0, z1)].any())

    def any_water(self, x0: int, x1: int, y: int, z0: int, z1: int) -> bool:
        return bool((self._box(x0, x1, y, y, z0, z1) == B.WATER).any())
