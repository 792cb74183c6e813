"""Finding places in a seed's world: where each biome is, for contact sheets, tests and data."""

from __future__ import annotations

import numpy as np

from simulator.world.terrain import BIOMES, OCEAN, SEA_LEVEL, biome_map, column

_STEP = 16  # blocks between sampled columns
_GRID = 96  # samples per side: the search covers +-768 blocks around the centre


def find_biome(seed: int, biome: str, center: tuple[int, int] = (0, 0), margin: int = 2) -> tuple[int, int] | None:
    """(x, z) of a column deep inside `biome` (its sampled neighbours within `margin` samples are
    the same biome) and, on land, off the shore; nearest to `center` within +-768 blocks; None if
    there is none."""
    if biome not in BIOMES:
        raise ValueError(f"unknown biome {biome!r} (known: {', '.join(BIOMES)})")
    x0, z0 = center[0] - _GRID // 2 * _STEP, center[1] - _GRID // 2 * _STEP
    grid = biome_map(seed, x0, z0, _GRID, _STEP) == BIOMES.index(biome)  # bool [GRID, GRID]
    deep = grid.copy()
    for dx in range(-margin, margin + 1):  # erode: keep samples whose neighbourhood is all `biome`
        for dz in range(-margin, margin + 1):
            deep &= np.roll(np.roll(grid, dx, axis=0), dz, axis=1)
    candidates = np.argwhere(deep)
    if candidates.size == 0:
        return None
    d2 = ((candidates - _GRID // 2) ** 2).sum(axis=1)
    for i, j in candidates[np.argsort(d2, kind="stable")]:
        x, z = int(x0 + i * _STEP), int(z0 + j * _STEP)
        if biome == BIOMES[OCEAN] or column(seed, x, z)[0] > SEA_LEVEL + 2:
            return x, z
    return None


def vantage_point(seed: int, x: int, z: int, radius: int = 24) -> tuple[int, int]:
    """The highest column of the same biome within `radius` blocks of (x, z): a view over the area."""
    biome = column(seed, x, z)[1]
    best, best_h = (x, z), column(seed, x, z)[0]
    for dx in range(-radius, radius + 1, 3):
        for dz in range(-radius, radius + 1, 3):
            h, b = column(seed, x + dx, z + dz)
            if b == biome and h > best_h:
                best, best_h = (x + dx, z + dz), h
    return best
