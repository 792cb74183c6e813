"""Evaluation episodes, made on the fly from the engine: no dataset on disk is needed.

Each episode is the world of one seed played by the data team's exploration policy
(`simulator.data.policy.ExplorerPolicy`), whose generator is seeded from the world seed, so an
evaluation seed always means the same frames and actions. The first `warmup` ticks are played
and dropped: a player standing still at spawn would flatter every copy-last figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from simulator.actions import NOOP, Action

POLICY_SEED_OFFSET = 77_000_000  # policy generator seed = world seed + this (not the world's own stream)
WARMUP = 40  # policy ticks played and dropped before each evaluation episode (2 s: the player gets going)


@dataclass
class EvalEpisode:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    actions: list[Action]  # T actions; actions[t] produced frames[t] from the frame before it
    seed: int  # world seed


def make_world(seed: int, resolution: tuple[int, int]):
    """A fresh engine World for `seed` at (H, W); imported lazily so that eval imports stay light."""
    from simulator.world.engine import World, WorldConfig

    return World(seed, WorldConfig(height=resolution[0], width=resolution[1]))


def play_policy(world, seed: int, ticks: int, policy_preset: str = "human") -> tuple[np.ndarray, list[Action]]:
    """Reset `world` and play `ticks` frames with the exploration policy -> (uint8 [ticks, H, W, 3], actions).
    The world is left in its final state, so scripted actions can continue from it (probes.py)."""
    from simulator.data.policy import POLICY_PRESETS, ExplorerPolicy

    if policy_preset not in POLICY_PRESETS:
        raise ValueError(f"unknown policy preset {policy_preset!r} (known: {', '.join(sorted(POLICY_PRESETS))})")
    policy = ExplorerPolicy(seed + POLICY_SEED_OFFSET, POLICY_PRESETS[policy_preset])
    first = world.reset()
    frames = np.empty((ticks, *first.shape), np.uint8)
    frames[0] = first
    actions = [NOOP]
    for t in range(1, ticks):
        action = policy.act(world)
        frames[t] = world.step(action)
        actions.append(action)
    return frames, actions


def played_world(seed: int, resolution: tuple[int, int], ticks: int, policy_preset: str = "human",
                 warmup: int = 0) -> tuple[object, np.ndarray, list[Action]]:
    """A fresh world of `seed` played by the policy for `warmup` + `ticks` ticks -> (the world, left where the
    play left it, the last `ticks` frames uint8 [ticks, H, W, 3] and their actions; the warmup's are dropped)."""
    world = make_world(seed, resolution)
    frames, actions = play_policy(world, seed, warmup + ticks, policy_preset)
    return world, frames[warmup:], actions[warmup:]


def still_episodes(seeds: list[int], context: int, still: int, resolution: tuple[int, int],
                   policy_preset: str = "human", warmup: int = 0, progress: bool = True,
                   desc: str = "still episodes") -> list[EvalEpisode]:
    """Per seed: `context` policy frames (after `warmup` ticks of play that are dropped), then `still` ticks of
    no action, as one episode of context + still frames: what the engine shows a player who stops (the
    picture settles, a fall or a jump ends, and then it does not change), the probes' stand_still made data."""
    out = []
    for seed in tqdm(seeds, desc=desc, disable=not progress):
        world, frames, actions = played_world(seed, resolution, context, policy_preset, warmup)
        rest = np.stack([world.step(NOOP) for _ in range(still)])
        out.append(EvalEpisode(np.concatenate([frames, rest]), actions + [NOOP] * still, seed))
    return out


def engine_episodes(seeds: list[int], frames: int, resolution: tuple[int, int], policy_preset: str = "human",
                    warmup: int = 0, progress: bool = True, desc: str = "engine episodes") -> list[EvalEpisode]:
    """One policy episode of `frames` frames per seed, after `warmup` ticks of play that are dropped."""
    return [EvalEpisode(*played_world(seed, resolution, frames, policy_preset, warmup)[1:], seed)
            for seed in tqdm(seeds, desc=desc, disable=not progress)]
