"""Engine data for the inverse-dynamics model: an action sampler built for readable labels.

Our recipe differs from the world model's exploration policy on purpose: the IDM must learn
every head, so the sampler presses each camera bin about equally often (uniform over the
non-zero bins on a fixed share of ticks), holds movement keys in runs as players do (so that
a run reads as one motion), presses jump only on the ground, attack and use only on a block
in reach and never on two ticks running (the engine's repeat delay would swallow the second
press), and keeps the pitch away from its limits: a jump in mid-air, an attack at the sky or a
pitch move into the clamp changes nothing, so its label could not be read from the frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from simulator.actions import CAMERA_BIN_CENTERS, NOOP, Action


@dataclass
class IdmSamplerConfig:
    yaw_move_prob: float = 0.4  # share of ticks with a yaw move (bin uniform among non-zero bins)
    pitch_move_prob: float = 0.3  # share of ticks with a pitch move
    pitch_limit_deg: float = 60.0  # refuse pitch moves that would leave +-this
    move_run_ticks: float = 8.0  # mean length of a held movement run (geometric)
    # movement runs: (forward, back, left, right) combinations and their weights
    move_choices: tuple[tuple[bool, bool, bool, bool], ...] = (
        (False, False, False, False), (True, False, False, False), (False, True, False, False),
        (False, False, True, False), (False, False, False, True), (True, False, True, False), (True, False, False, True))
    move_weights: tuple[float, ...] = (0.25, 0.3, 0.11, 0.11, 0.11, 0.06, 0.06)
    jump_prob: float = 0.15  # per tick, only while on the ground
    attack_prob: float = 0.3  # per tick with a block in reach (and no press on the previous tick)
    use_prob: float = 0.25  # the same, when not attacking
    sneak_prob: float = 0.03
    sprint_prob: float = 0.05
    hotbar_prob: float = 0.03


class IdmActionSampler:
    """Draws one action per tick given the world's state (player pitch, on_ground, block in reach)."""

    def __init__(self, rng: np.random.Generator, config: IdmSamplerConfig = IdmSamplerConfig()):
        self.rng, self.config = rng, config
        self._move = config.move_choices[0]
        self._moves_left = 0
        self._nonzero_bins = CAMERA_BIN_CENTERS[CAMERA_BIN_CENTERS != 0]
        self._acted = False  # attack or use pressed on the previous tick

    def _camera(self, prob: float) -> float:
        return float(self.rng.choice(self._nonzero_bins)) if self.rng.random() < prob else 0.0

    def __call__(self, world) -> Action:
        c, rng = self.config, self.rng
        pitch, on_ground = float(world.player.pitch), bool(world.player.on_ground)
        attack = use = False
        if not self._acted and world.target() is not None:
            attack = bool(rng.random() < c.attack_prob)
            use = bool(not attack and rng.random() < c.use_prob)
        self._acted = attack or use
        if self._moves_left <= 0:
            self._move = c.move_choices[rng.choice(len(c.move_choices), p=np.array(c.move_weights) / sum(c.move_weights))]
            self._moves_left = int(rng.geometric(1.0 / c.move_run_ticks))
        self._moves_left -= 1
        forward, back, left, right = self._move
        d_pitch = self._camera(c.pitch_move_prob)
        if abs(pitch + d_pitch) > c.pitch_limit_deg:
            d_pitch = -d_pitch  # turn back towards the horizon instead of into the clamp
        return Action(forward=forward, back=back, left=left, right=right,
                      jump=bool(on_ground and rng.random() < c.jump_prob),
                      sneak=bool(rng.random() < c.sneak_prob), sprint=bool(forward and rng.random() < c.sprint_prob),
                      attack=attack, use=use,
                      hotbar=int(rng.integers(9)) if rng.random() < c.hotbar_prob else None,
                      yaw=self._camera(c.yaw_move_prob), pitch=d_pitch).quantized()


def sample_episode(seed: int, frames: int, resolution: tuple[int, int], rng: np.random.Generator,
                   sampler_config: IdmSamplerConfig = IdmSamplerConfig()) -> tuple[np.ndarray, list[Action]]:
    """Play `frames` ticks of world `seed` with the IDM sampler -> (uint8 [T, H, W, 3], T actions)."""
    from simulator.world.engine import World, WorldConfig  # the engine is only needed when collecting

    world = World(seed, WorldConfig(height=resolution[0], width=resolution[1]))
    sampler = IdmActionSampler(rng, sampler_config)
    out = np.empty((frames, *resolution, 3), np.uint8)
    out[0] = world.reset()
    actions = [NOOP]
    for t in range(1, frames):
        action = sampler(world)
        out[t] = world.step(action)
        actions.append(action)
    return out, actions


def _episode_job(job: tuple) -> tuple[np.ndarray, list[Action]]:
    seed, frames, resolution, rng_seed, sampler_config = job
    return sample_episode(seed, frames, resolution, np.random.default_rng([rng_seed, seed]), sampler_config)


def collect(seeds: list[int], frames: int, resolution: tuple[int, int], rng_seed: int,
            sampler_config: IdmSamplerConfig = IdmSamplerConfig(), progress: bool = True, workers: int = 1,
            ) -> list[tuple[np.ndarray, list[Action]]]:
    """One IDM episode per world seed, in `workers` processes. Each episode's sampler is seeded from
    (rng_seed, world seed), so the result does not depend on the number of workers."""
    jobs = [(s, frames, resolution, rng_seed, sampler_config) for s in seeds]
    if workers <= 1:
        return [_episode_job(j) for j in tqdm(jobs, desc="IDM episodes", disable=not progress)]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(_episode_job, jobs), total=len(jobs), desc="IDM episodes", disable=not progress))
