"""`patchworld collect`: play the engine with the exploration policy and write episodes to shards.

Seeding (docs/data.md): episode i of a run plays world `world_seeds[i % len(world_seeds)]`
(by default `seed, seed + 1, ..., seed + worlds - 1`) with its own generator
`SeedSequence([seed, i])` for the start point and the policy. A share of episodes starts at
the world's spawn point, the rest at a random land point up to `start_radius` blocks away,
with a random yaw and pitch; the start pose is recorded (`place_player` reproduces it). So an episode depends only on
the run's settings and its index: shards can be made in any order, by any number of
workers, and a resumed run writes exactly what an uninterrupted one would have.

Shard j holds episodes `j * E .. j * E + E - 1` (E = `--episodes-per-shard`) and is named
`shard_{j:05d}.npz`. A run writes `collect.json` (its settings) first; resuming with other
settings is refused. On resume, complete shards are kept and the rest are made again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from simulator.actions import NOOP
from simulator.cli import parse_resolution
from simulator.data.policy import POLICY_PRESETS, ExplorerPolicy
from simulator.data.shards import Episode, ShardError, ShardReader, write_shard
from simulator.world.engine import ENGINE_VERSION, World, WorldConfig
from simulator.world.terrain import WORLD_HEIGHT

MANIFEST = "collect.json"
_START_TRIES = 20  # random start points tried before settling for one of those
_NOT_GROUND = ("leaves", "log", "water")  # tree tops and open water (mostly sky and sea): not a place to start


@dataclass(frozen=True)
class CollectConfig:
    episodes: int
    steps: int  # frames per episode (the reset frame included)
    resolution: tuple[int, int] = (64, 64)  # (H, W)
    seed: int = 0  # base of the world seeds and of every episode's generator
    world_seeds: tuple[int, ...] = ()  # the worlds, cycled over episodes; empty = (seed,)
    episodes_per_shard: int = 16
    policy: str = "human"  # a key of POLICY_PRESETS
    spawn_share: float = 0.25  # share of episodes that start at the spawn point...
    start_radius: float = 300.0  # ...the rest at a random land point this far (at most) from it
    engine_version: str = field(default="", compare=False)  # filled in from the engine

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.steps < 1:
            raise ValueError(f"need at least one episode of one frame, got episodes={self.episodes} steps={self.steps}")
        if self.policy not in POLICY_PRESETS:
            raise ValueError(f"policy {self.policy!r} is not one of {sorted(POLICY_PRESETS)}")
        if self.episodes_per_shard < 1:
            raise ValueError(f"episodes_per_shard must be >= 1, got {self.episodes_per_shard}")

    @property
    def worlds(self) -> tuple[int, ...]:
        return self.world_seeds or (self.seed,)

    @property
    def num_shards(self) -> int:
        return -(-self.episodes // self.episodes_per_shard)

    def shard_episodes(self, shard: int) -> range:
        return range(shard * self.episodes_per_shard, min(self.episodes, (shard + 1) * self.episodes_per_shard))

    def to_json(self) -> dict:
        return {**asdict(self), "resolution": list(self.resolution), "world_seeds": list(self.worlds)}


# World seeds from here up are held out: nothing trains on them.
HELDOUT_WORLD_SEEDS_FROM = 100_000

# The team's datasets (docs/data.md): `patchworld collect --preset NAME --out data/NAME`.
DATASET_PRESETS: dict[str, CollectConfig] = {
    "train": CollectConfig(episodes=600, steps=64, seed=0, world_seeds=tuple(range(60)), episodes_per_shard=8),
    "heldout": CollectConfig(episodes=48, steps=64, seed=HELDOUT_WORLD_SEEDS_FROM, episodes_per_shard=8,
                             world_seeds=tuple(range(HELDOUT_WORLD_SEEDS_FROM, HELDOUT_WORLD_SEEDS_FROM + 8))),
    # ten times the worlds of "train" (0 ... 599, four episodes each, 153,600 frames): the unseen evaluation
    # worlds lag the ones selected on, and 60 worlds are few (docs/data.md, "More worlds")
    "train_wide": CollectConfig(episodes=2400, steps=64, seed=1, world_seeds=tuple(range(600)), episodes_per_shard=8),
    # held-out worlds for choosing a run's best weights that neither evaluation set uses (100000-100015)
    "heldout_select": CollectConfig(episodes=48, steps=64, seed=HELDOUT_WORLD_SEEDS_FROM + 100, episodes_per_shard=8,
                                    world_seeds=tuple(range(HELDOUT_WORLD_SEEDS_FROM + 100,
                                                            HELDOUT_WORLD_SEEDS_FROM + 108))),
    # the first four held-out worlds again, with other start points and actions (another base seed)
    "heldout_long": CollectConfig(episodes=4, steps=1200, seed=HELDOUT_WORLD_SEEDS_FROM + 500, episodes_per_shard=1,
                                  world_seeds=tuple(range(HELDOUT_WORLD_SEEDS_FROM, HELDOUT_WORLD_SEEDS_FROM + 4))),
}


def shard_path(out: Path, shard: int) -> Path:
    return out / f"shard_{shard:05d}.npz"


def random_start(world: World, rng: np.random.Generator, radius: float) -> dict:
    """A random standing pose on land within `radius` blocks of the spawn point (not on a tree)."""
    sx, _, sz = world.spawn
    for _ in range(_START_TRIES):
        r, angle = float(rng.uniform(8.0, radius)), float(rng.uniform(0.0, 2 * np.pi))
        x, z = int(np.floor(sx + r * np.cos(angle))), int(np.floor(sz + r * np.sin(angle)))
        top = next(y for y in range(WORLD_HEIGHT - 1, -2, -1) if y < 0 or world.block(x, y, z) != "air")
        if world.block(x, top, z) not in _NOT_GROUND:
            break
    return {"position": [x + 0.5, float(top + 1), z + 0.5], "yaw": float(rng.uniform(0.0, 360.0)),
            "pitch": float(rng.uniform(-25.0, 15.0))}


def place_player(world: World, pose: dict) -> np.ndarray:
    """Put the player at a recorded start pose (after `reset()`); returns the frame there.

    Replaying an episode: `World(seed, config)`, `reset()`, `place_player(world, meta["start_pose"])`
    gives frames[0]; then `step(actions[t])` gives frames[t].
    """
    world.player.position = np.array(pose["position"], np.float64)
    world.player.yaw, world.player.pitch = float(pose["yaw"]), float(pose["pitch"])
    return world.render()


def play_episode(config: CollectConfig, index: int) -> Episode:
    """Episode `index` of the run: deterministic given the config and the index."""
    world_seed = config.worlds[index % len(config.worlds)]
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, index]))
    H, W = config.resolution
    world = World(world_seed, WorldConfig(width=W, height=H))
    world.reset()
    policy_seed = int(rng.integers(2**63))
    policy = ExplorerPolicy(policy_seed, POLICY_PRESETS[config.policy])
    at_spawn = rng.random() < config.spawn_share
    pose = {"position": [float(v) for v in world.spawn], "yaw": 0.0, "pitch": 0.0} if at_spawn \
        else random_start(world, rng, config.start_radius)
    frames = np.empty((config.steps, H, W, 3), np.uint8)
    frames[0] = place_player(world, pose)
    biome, caption = world.biome(), world.caption()
    actions = [NOOP]
    for t in range(1, config.steps):
        action = policy.act(world)
        frames[t] = world.step(action)
        actions.append(action)
    return Episode(frames, actions, seed=world_seed, biome=biome, engine_version=ENGINE_VERSION, caption=caption,
                   extra={"episode": index, "start": "spawn" if at_spawn else "random", "start_pose": pose,
                          "policy": config.policy, "policy_seed": policy_seed, "end_biome": world.biome(),
                          "end_caption": world.caption()})


def make_shard(config: CollectConfig, out: Path, shard: int) -> int:
    """Play and write one shard; returns its number of episodes."""
    episodes = [play_episode(config, i) for i in config.shard_episodes(shard)]
    write_shard(shard_path(out, shard), episodes)
    return len(episodes)


def shard_is_complete(config: CollectConfig, out: Path, shard: int) -> bool:
    """A finished shard: readable, with the expected episodes and frame counts."""
    path = shard_path(out, shard)
    if not path.exists():
        return False
    try:
        with ShardReader(path) as reader:
            return ([m.get("episode") for m in reader.episodes] == list(config.shard_episodes(shard))
                    and all(m["frames"] == config.steps for m in reader.episodes))
    except ShardError:
        return False


def _check_manifest(config: CollectConfig, out: Path) -> None:
    path = out / MANIFEST
    wanted = {k: v for k, v in config.to_json().items() if k != "engine_version"}
    if path.exists():
        found = json.loads(path.read_text())
        found_cmp = {k: v for k, v in found.items() if k != "engine_version"}
        if found_cmp != wanted:
            diff = {k: (found_cmp.get(k), v) for k, v in wanted.items() if found_cmp.get(k) != v}
            raise SystemExit(f"{out} holds a collection with other settings (setting: (found, asked)): {diff}; "
                             "use another --out or the same settings to resume")
        if found.get("engine_version") != config.engine_version:
            raise SystemExit(f"{out} was collected with engine {found.get('engine_version')!r}, "
                             f"this engine is {config.engine_version!r}; use another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config.to_json(), indent=1) + "\n")


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")


def _make_shard_job(job: tuple[CollectConfig, Path, int]) -> int:
    return make_shard(*job)


def collect(config: CollectConfig, out: str | Path, workers: int = 1, progress: bool = True) -> list[Path]:
    """Make every missing shard of the run under `out`; returns all shard paths."""
    out = Path(out)
    _check_manifest(config, out)
    todo = [s for s in range(config.num_shards) if not shard_is_complete(config, out, s)]
    for stale in out.glob(".shard_*.tmp*"):  # temp files of an interrupted run
        stale.unlink(missing_ok=True)
    done = config.episodes - sum(len(config.shard_episodes(s)) for s in todo)
    bar = tqdm(total=config.episodes, initial=done, unit="ep", desc=f"collect {out}", disable=not progress)
    jobs = [(config, out, s) for s in todo]
    if workers <= 1:
        for job in jobs:
            bar.update(_make_shard_job(job))
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            for n in pool.imap_unordered(_make_shard_job, jobs):
                bar.update(n)
    bar.close()
    return [shard_path(out, s) for s in range(config.num_shards)]


# --- command line --------------------------------------------------------------------------

def parse_seeds(text: str) -> tuple[int, ...]:
    """'1,5,9' or a half-open range '100000:100008'."""
    try:
        if ":" in text:
            lo, hi = (int(v) for v in text.split(":"))
            seeds = tuple(range(lo, hi))
        else:
            seeds = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"world seeds {text!r}: expected '1,5,9' or 'LO:HI'") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"world seeds {text!r} is empty")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="shard directory (created; resumed if it exists)")
    parser.add_argument("--preset", choices=sorted(DATASET_PRESETS),
                        help="one of the team's datasets (docs/data.md); the settings below must then be left out")
    parser.add_argument("--episodes", type=int, default=None, help="required without --preset")
    parser.add_argument("--steps", type=int, default=64, help="frames per episode (default 64)")
    parser.add_argument("--resolution", type=parse_resolution, default=(64, 64), help="HxW (default 64x64)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    worlds = parser.add_mutually_exclusive_group()
    worlds.add_argument("--worlds", type=int, default=1, help="world seeds seed..seed+K-1, cycled over episodes")
    worlds.add_argument("--world-seeds", type=parse_seeds, help="explicit world seeds: '1,5,9' or 'LO:HI'")
    parser.add_argument("--episodes-per-shard", type=int, default=16)
    parser.add_argument("--policy", choices=sorted(POLICY_PRESETS), default="human")
    parser.add_argument("--spawn-share", type=float, default=0.25, help="share of episodes starting at spawn")
    parser.add_argument("--start-radius", type=float, default=300.0,
                        help="other episodes start at a random land point up to this many blocks from spawn")


_SETTINGS = ("episodes", "steps", "resolution", "seed", "worlds", "world_seeds", "episodes_per_shard", "policy",
             "spawn_share", "start_radius")


def config_from_args(args: argparse.Namespace) -> CollectConfig:
    if args.preset:
        defaults = argparse.ArgumentParser()
        add_arguments(defaults)
        given = [name for name in _SETTINGS if getattr(args, name) != defaults.get_default(name)]
        if given:
            raise SystemExit(f"--preset {args.preset} fixes every setting; leave out --{given[0].replace('_', '-')}")
        return dataclasses.replace(DATASET_PRESETS[args.preset], engine_version=ENGINE_VERSION)
    if args.episodes is None:
        raise SystemExit("collect: give --episodes N (or --preset NAME)")
    worlds = args.world_seeds or tuple(range(args.seed, args.seed + args.worlds))
    return CollectConfig(episodes=args.episodes, steps=args.steps, resolution=args.resolution, seed=args.seed,
                         world_seeds=worlds, episodes_per_shard=args.episodes_per_shard, policy=args.policy,
                         spawn_share=args.spawn_share, start_radius=args.start_radius,
                         engine_version=ENGINE_VERSION)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    paths = collect(config, args.out, workers=args.workers)
    frames = config.episodes * config.steps
    print(f"{args.out}: {len(paths)} shards, {config.episodes} episodes, {frames} frames "
          f"from {len(config.worlds)} world seeds")
    return 0
