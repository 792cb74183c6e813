"""Procedural terrain: per-column height and biome from layered noise, chunks with trees.

A column's height and biome depend only on (seed, x, z), so any chunk can be generated on
its own, in any order, and trees that straddle a chunk border come out the same from both
sides (each chunk re-derives the trees of a margin around it and keeps its own blocks).

Noise fields (all from one seed, separate channels):
  continentalness (scale 260)  -> oceans and lakes where it is low
  mountains       (scale 300)  -> ridged peaks where it is high
  temperature / moisture       -> desert (hot, dry), forest (wet), plains (the rest)
  detail          (scale 40)   -> rolling hills everywhere
"""

from __future__ import annotations

import numba as nb
import numpy as np

from simulator.world import blocks as B
from simulator.world.noise import fbm, hash_unit

CHUNK = 16  # blocks per chunk edge (x and z)
WORLD_HEIGHT = 96  # blocks, y in [0, WORLD_HEIGHT)
SEA_LEVEL = 32  # water fills empty cells up to and including y = SEA_LEVEL - 1

BIOMES: tuple[str, ...] = ("plains", "forest", "desert", "snowy_mountains", "ocean")
PLAINS, FOREST, DESERT, SNOWY_MOUNTAINS, OCEAN = range(5)

_TREE_CELL = 5  # one tree candidate per 5x5 cell, jittered: trees never touch
_TREE_MARGIN = 3  # a tree's leaves reach 2 columns from its trunk (+1 spare)
_SNOW_LINE = SEA_LEVEL + 24  # snowy mountains: snow blocks above, snowy grass below
# tree density per biome: chance that a cell has a tree (plains, forest, desert cactus, snowy spruce, ocean)
_TREE_DENSITY = np.array([0.07, 0.8, 0.12, 0.25, 0.0])


@nb.njit(cache=True)
def _smoothstep(a: float, b: float, x: float) -> float:
    t = min(max((x - a) / (b - a), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


@nb.njit(cache=True)
def column(seed: np.int64, x: np.int64, z: np.int64) -> tuple[np.int64, np.int64]:
    """(height, biome) of column (x, z): the top solid block is at y = height - 1."""
    fx = float(x)
    fz = float(z)
    cont = fbm(seed, 1, fx, fz, 260.0, 4)
    lake = fbm(seed, 7, fx, fz, 70.0, 3)
    mount = _smoothstep(0.56, 0.7, fbm(seed, 2, fx, fz, 300.0, 3))
    temp = fbm(seed, 3, fx, fz, 350.0, 2)
    moist = fbm(seed, 4, fx, fz, 240.0, 2)
    detail = fbm(seed, 5, fx, fz, 40.0, 4)
    ridge = 1.0 - abs(2.0 * fbm(seed, 6, fx, fz, 70.0, 4) - 1.0)

    land = _smoothstep(0.3, 0.4, cont) * _smoothstep(0.22, 0.3, lake)  # 0 = open water, 1 = inland
    h = SEA_LEVEL - 12.0 + 16.0 * land + (detail - 0.5) * (6.0 + 8.0 * land)
    h += land * mount * (10.0 + 44.0 * ridge * ridge)
    height = np.int64(min(max(np.floor(h), 4.0), WORLD_HEIGHT - 12.0))

    if height < SEA_LEVEL:
        biome = OCEAN
    elif mount > 0.45 and height > SEA_LEVEL + 12:
        biome = SNOWY_MOUNTAINS
    elif temp > 0.53 and moist < 0.5:
        biome = DESERT
    elif moist > 0.5:
        biome = FOREST
    else:
        biome = PLAINS
    return height, biome


@nb.njit(cache=True)
def _fill_column(out: np.ndarray, lx: int, lz: int, height: int, biome: int, slope: int) -> None:
    """Stone, soil layers, surface block and water of one column of a chunk [16, H, 16];
    `slope` = the largest height step to a neighbour column (cliffs show bare stone)."""
    for y in range(height):
        out[lx, y, lz] = B.STONE
    top = height - 1
    if biome == OCEAN:
        floor = B.GRAVEL if height < SEA_LEVEL - 6 else B.SAND
        for y in range(max(top - 2, 1), height):
            out[lx, y, lz] = floor
        for y in range(height, SEA_LEVEL):
            out[lx, y, lz] = B.WATER
    elif biome == DESERT:
        for y in range(max(top - 7, 1), max(top - 3, 1)):
            out[lx, y, lz] = B.SANDSTONE
        for y in range(max(top - 3, 1), height):
            out[lx, y, lz] = B.SAND
    elif biome == SNOWY_MOUNTAINS:
        if slope <= 2:  # snow does not stick to cliffs
            out[lx, top, lz] = B.SNOW if height > _SNOW_LINE else B.SNOWY_GRASS
    elif height <= SEA_LEVEL + 1:  # shores of lakes and the sea
        for y in range(max(top - 2, 1), height):
            out[lx, y, lz] = B.SAND
    else:
        for y in range(max(top - 3, 1), top):
            out[lx, y, lz] = B.DIRT
        out[lx, top, lz] = B.GRASS


@nb.njit(cache=True)
def _put(out: np.ndarray, x0: int, z0: int, x: int, y: int, z: int, block: int) -> None:
    """Write a tree block given in world coordinates if it falls in this chunk and is air."""
    lx = x - x0
    lz = z - z0
    if 0 <= lx < CHUNK and 0 <= lz < CHUNK and 0 <= y < WORLD_HEIGHT and out[lx, y, lz] == B.AIR:
        out[lx, y, lz] = block


@nb.njit(cache=True)
def _tree(out: np.ndarray, seed: int, x0: int, z0: int, x: int, base: int, z: int, biome: int) -> None:
    """Oak (plains, forest), spruce (snowy) or cactus (desert) with its trunk at (x, base.., z)."""
    r = hash_unit(seed, 10, x, z)
    if biome == DESERT:
        for y in range(base, base + 1 + np.int64(r * 3.0)):
            _put(out, x0, z0, x, y, z, B.CACTUS)
        return
    trunk = (5 + np.int64(r * 3.0)) if biome == SNOWY_MOUNTAINS else (4 + np.int64(r * 3.0))
    top = base + trunk
    for dy in range(-3, 2):  # leaves first claim air; trunk overwrites below
        y = top + dy
        if biome == SNOWY_MOUNTAINS:
            radius = 1 if dy >= 0 else (2 if dy >= -2 else 1)
        else:
            radius = 2 if dy < -1 else 1
        for dx in range(-radius, radius + 1):
            for dz in range(-radius, radius + 1):
                corner = abs(dx) == radius and abs(dz) == radius and radius > 0
                if corner and hash_unit(seed, 11, x * 7 + dx, (z * 7 + dz) * 13 + dy) < 0.6:
                    continue
                if dx == 0 and dz == 0 and dy < 0:
                    continue
                _put(out, x0, z0, x + dx, y, z + dz, B.LEAVES)
    for y in range(base, top):
        _put(out, x0, z0, x, y, z, B.LOG)


@nb.njit(cache=True)
def generate_chunk(seed: np.int64, cx: np.int64, cz: np.int64) -> np.ndarray:
    """Blocks of chunk (cx, cz): uint8 [16, WORLD_HEIGHT, 16] indexed [x, y, z]."""
    out = np.zeros((CHUNK, WORLD_HEIGHT, CHUNK), np.uint8)
    x0 = cx * CHUNK
    z0 = cz * CHUNK
    heights = np.empty((CHUNK + 2, CHUNK + 2), np.int64)  # one column of margin for slopes
    biomes = np.empty((CHUNK + 2, CHUNK + 2), np.int64)
    for i in range(CHUNK + 2):
        for j in range(CHUNK + 2):
            heights[i, j], biomes[i, j] = column(seed, x0 + i - 1, z0 + j - 1)
    for lx in range(CHUNK):
        for lz in range(CHUNK):
            h = heights[lx + 1, lz + 1]
            slope = max(abs(h - heights[lx, lz + 1]), abs(h - heights[lx + 2, lz + 1]),
                        abs(h - heights[lx + 1, lz]), abs(h - heights[lx + 1, lz + 2]))
            _fill_column(out, lx, lz, h, biomes[lx + 1, lz + 1], slope)
    # trees from every cell whose candidate could reach into this chunk
    c_lo_x = (x0 - _TREE_MARGIN) // _TREE_CELL
    c_hi_x = (x0 + CHUNK + _TREE_MARGIN) // _TREE_CELL
    c_lo_z = (z0 - _TREE_MARGIN) // _TREE_CELL
    c_hi_z = (z0 + CHUNK + _TREE_MARGIN) // _TREE_CELL
    for gx in range(c_lo_x, c_hi_x + 1):
        for gz in range(c_lo_z, c_hi_z + 1):
            tx = gx * _TREE_CELL + np.int64(hash_unit(seed, 8, gx, gz) * _TREE_CELL)
            tz = gz * _TREE_CELL + np.int64(hash_unit(seed, 9, gx, gz) * _TREE_CELL)
            if abs(tx - (x0 + 7.5)) > 8 + _TREE_MARGIN or abs(tz - (z0 + 7.5)) > 8 + _TREE_MARGIN:
                continue
            height, biome = column(seed, tx, tz)
            if hash_unit(seed, 12, gx, gz) >= _TREE_DENSITY[biome]:
                continue
            if biome != DESERT and (height <= SEA_LEVEL + 1 or height > _SNOW_LINE):
                continue  # no trees on shores or above the snow line
            _tree(out, seed, x0, z0, tx, height, tz, biome)
    return out


@nb.njit(cache=True)
def biome_map(seed: np.int64, x0: np.int64, z0: np.int64, size: np.int64, step: np.int64) -> np.ndarray:
    """Biome ids of a size x size grid of columns starting at (x0, z0), `step` blocks apart: int64 [size, size]."""
    out = np.empty((size, size), np.int64)
    for i in range(size):
        for j in range(size):
            out[i, j] = column(seed, x0 + i * step, z0 + j * step)[1]
    return out
