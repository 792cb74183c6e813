"""A contact sheet of the five biomes: `python -m simulator.world.contact_sheet [--out docs/biomes.png]`.

For each biome, finds a spot deep inside it (programmatically, per seed), stands the player
there and renders a few views (turning around), one row per biome.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from simulator.world.engine import BIOMES, World, WorldConfig
from simulator.world.survey import find_biome, vantage_point

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "biomes.png"


def biome_views(seed: int, biome: str, config: WorldConfig, views: int = 4) -> tuple[list[np.ndarray], str]:
    """`views` frames [H, W, 3] looking around a spot deep inside `biome`, and the first caption."""
    spot = find_biome(seed, biome)
    if spot is None:
        raise RuntimeError(f"seed {seed}: no {biome} found near the origin; try another seed")
    spot = vantage_point(seed, *spot)
    world = World(seed, config)
    world.reset()
    world.teleport(spot[0] + 0.5, spot[1] + 0.5, yaw=0.0, pitch=-12.0)
    frames, caption = [], world.caption()
    for k in range(views):
        world.teleport(spot[0] + 0.5, spot[1] + 0.5, yaw=360.0 * k / views, pitch=-12.0)
        frames.append(world.render())
    return frames, caption


def contact_sheet(seed: int = 0, size: int = 192, views: int = 4) -> np.ndarray:
    """uint8 [len(BIOMES) * size, views * size, 3]: one row of views per biome."""
    config = WorldConfig(width=size, height=size)
    rows = []
    for biome in BIOMES:
        frames, caption = biome_views(seed, biome, config, views)
        print(f"{biome}: {caption}")
        rows.append(np.concatenate(frames, axis=1))  # [size, views * size, 3]
    return np.concatenate(rows, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=192, help="pixels per view (square)")
    parser.add_argument("--views", type=int, default=4, help="views per biome")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    from PIL import Image

    sheet = contact_sheet(args.seed, args.size, args.views)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
