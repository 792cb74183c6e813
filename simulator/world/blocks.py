"""Block types, their properties and their procedural 8x8 pixel textures.

A block id is a uint8 index into the tables below. Textures are generated from a fixed hash
(not from the world seed), so every world draws blocks the same way, and they are built
lazily by `texture_atlas()` so nothing happens at import time.

Texel alpha: 1 = opaque, 0 = see-through (glass panes, gaps in leaves); the renderer
continues the ray through see-through texels.
"""

from __future__ import annotations

import functools

import numpy as np

AIR, GRASS, DIRT, STONE, SAND, WATER, LOG, LEAVES, SNOW, PLANKS, COBBLESTONE, BRICK, GLASS, CACTUS, \
    SNOWY_GRASS, GRAVEL, SANDSTONE = range(17)

BLOCK_NAMES: tuple[str, ...] = ("air", "grass", "dirt", "stone", "sand", "water", "log", "leaves", "snow",
                                "planks", "cobblestone", "brick", "glass", "cactus", "snowy grass", "gravel",
                                "sandstone")
NUM_BLOCKS = len(BLOCK_NAMES)

# solid: collides with the player and can be targeted; water and air are not solid
SOLID = np.array([b not in (AIR, WATER) for b in range(NUM_BLOCKS)], np.bool_)

# the nine placeable blocks of the hotbar, slot 0..8
HOTBAR: tuple[int, ...] = (PLANKS, COBBLESTONE, BRICK, GLASS, STONE, DIRT, LOG, SAND, SNOW)

TEXTURE_SIZE = 8  # texels per block face edge
FACE_SIDE, FACE_TOP, FACE_BOTTOM = 0, 1, 2

# base colours (RGB 0..255) per block, per face (side, top, bottom)
_BASE: dict[int, tuple[tuple[int, int, int], ...]] = {
    GRASS: ((134, 96, 67), (96, 168, 64), (134, 96, 67)),
    DIRT: ((134, 96, 67),) * 3,
    STONE: ((125, 125, 125),) * 3,
    SAND: ((219, 207, 163),) * 3,
    WATER: ((40, 90, 200),) * 3,
    LOG: ((102, 81, 50), (160, 130, 80), (160, 130, 80)),
    LEAVES: ((58, 122, 40),) * 3,
    SNOW: ((240, 246, 250),) * 3,
    PLANKS: ((170, 135, 80),) * 3,
    COBBLESTONE: ((120, 120, 120),) * 3,
    BRICK: ((150, 70, 55),) * 3,
    GLASS: ((200, 230, 240),) * 3,
    CACTUS: ((70, 140, 50), (90, 160, 60), (90, 160, 60)),
    SNOWY_GRASS: ((134, 96, 67), (240, 246, 250), (134, 96, 67)),
    GRAVEL: ((130, 122, 118),) * 3,
    SANDSTONE: ((205, 190, 140), (215, 200, 150), (205, 190, 140)),
}


def _texel_noise(block: int, face: int) -> np.ndarray:
    """Deterministic per-texel values in [0, 1), [8, 8], independent of numpy's global RNG."""
    rng = np.random.default_rng(1000 * block + face)
    return rng.random((TEXTURE_SIZE, TEXTURE_SIZE))


def _pattern(block: int, face: int) -> tuple[np.ndarray, np.ndarray]:
    """Brightness multiplier [8, 8] and alpha [8, 8] of one face (row 0 = top of the face)."""
    n = _texel_noise(block, face)
    rows, cols = np.mgrid[0:TEXTURE_SIZE, 0:TEXTURE_SIZE]
    light = 0.88 + 0.24 * n  # default: speckled
    alpha = np.ones((TEXTURE_SIZE, TEXTURE_SIZE))
    if block in (GRASS, SNOWY_GRASS) and face == FACE_SIDE:
        light = light.copy()  # the green/white fringe is painted in `_colours`
    elif block == LOG and face == FACE_SIDE:
        light = 0.8 + 0.15 * (cols % 3 == 0) + 0.12 * n  # vertical bark stripes
    elif block == LOG:
        ring = np.maximum(np.abs(rows - 3.5), np.abs(cols - 3.5))
        light = 0.85 + 0.15 * (np.floor(ring) % 2) + 0.05 * n
    elif block == LEAVES:
        alpha = (n > 0.18).astype(np.float64)  # gaps through which the ray continues
        light = 0.7 + 0.5 * n
    elif block == PLANKS:
        light = 0.9 + 0.1 * n - 0.3 * (rows % 4 == 3) - 0.2 * ((rows // 4 == 0) & (cols == 5)) \
            - 0.2 * ((rows // 4 == 1) & (cols == 1))
    elif block == COBBLESTONE:
        light = 0.7 + 0.5 * (n > 0.35) * n + 0.1 * n
    elif block == BRICK:
        mortar = (rows % 4 == 3) | (((rows // 4) % 2 == 0) & (cols == 3)) | (((rows // 4) % 2 == 1) & (cols == 7))
        light = np.where(mortar, 1.4, 0.85 + 0.2 * n)
    elif block == GLASS:
        edge = (rows == 0) | (cols == 0) | (rows == 7) | (cols == 7) | ((rows == 2) & (cols == 2))
        alpha = edge.astype(np.float64)
        light = np.ones_like(n)
    elif block == CACTUS and face == FACE_SIDE:
        light = 0.85 + 0.25 * (cols % 3 == 1) + 0.1 * n
    elif block == SANDSTONE and face == FACE_SIDE:
        light = 0.92 + 0.1 * n - 0.12 * (rows % 4 == 0)
    return light, alpha


def _colours(block: int, face: int) -> np.ndarray:
    """RGBA float [8, 8, 4] of one face in [0, 1]."""
    light, alpha = _pattern(block, face)
    base = np.array(_BASE[block][face], np.float64) / 255.0
    rgb = base[None, None, :] * light[:, :, None]  # [8, 8, 3]
    if block in (GRASS, SNOWY_GRASS) and face == FACE_SIDE:
        top = np.array(_BASE[block][FACE_TOP], np.float64) / 255.0
        depth = 2 + (_texel_noise(block, 9)[0] > 0.5)  # ragged lower edge of the fringe, per column
        fringe = np.arange(TEXTURE_SIZE)[:, None] < depth[None, :]
        rgb[fringe] = (top[None, :] * light[fringe][:, None])
    return np.concatenate([np.clip(rgb, 0.0, 1.0), alpha[:, :, None]], axis=2)


@functools.cache
def texture_atlas() -> np.ndarray:
    """float64 [NUM_BLOCKS, 3 faces, 8, 8, 4] RGBA in [0, 1]; air is all zeros."""
    atlas = np.zeros((NUM_BLOCKS, 3, TEXTURE_SIZE, TEXTURE_SIZE, 4), np.float64)
    for block in _BASE:
        for face in (FACE_SIDE, FACE_TOP, FACE_BOTTOM):
            atlas[block, face] = _colours(block, face)
    atlas.setflags(write=False)
    return atlas


def block_id(name: str) -> int:
    """Block id by name ("cobblestone" -> 10)."""
    try:
        return BLOCK_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown block {name!r} (known: {', '.join(BLOCK_NAMES)})") from None
