"""Drive a predictor from engine context with the engine's own actions, several streams at once.

Every part of the evaluation reads model frames through these two functions: autoregressive
rollouts (start from engine frames, then feed only actions) and teacher-forced next frames
(start from the true past, predict one frame). Step times are kept for the speed figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from simulator.actions import Action
from simulator.eval.episodes import EvalEpisode
from simulator.eval.predictors import Predictor


@dataclass
class Rollouts:
    """E rollouts of `horizon` generated frames, aligned with the engine's frames.

    Index 0 of `true` and `generated` is the last context frame (identical in both), so that
    index h is horizon h and `[:, h-1], [:, h]` is the transition that `actions[:, h-1]` drove."""

    true: np.ndarray  # uint8 [E, horizon + 1, H, W, 3]
    generated: np.ndarray  # uint8 [E, horizon + 1, H, W, 3]
    actions: list[list[Action]]  # E lists of `horizon` actions
    seeds: list[int]
    step_seconds: list[float] = field(default_factory=list)  # wall time of each predictor.step call
    streams_per_step: list[int] = field(default_factory=list)  # how many slots that step advanced

    @property
    def horizon(self) -> int:
        return self.true.shape[1] - 1


def slot_batches(n: int, size: int) -> list[range]:
    """Indices 0..n-1 in runs of at most `size`: the streams one predictor call steps together, in order."""
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def autoregressive(predictor: Predictor, episodes: list[EvalEpisode], context: int, horizon: int,
                   slots: int, desc: str = "rollouts", progress: bool = True) -> Rollouts:
    """Prime with each episode's first `context` frames, then step `horizon` ticks on its actions."""
    for ep in episodes:
        if len(ep.frames) < context + horizon:
            raise ValueError(f"episode of seed {ep.seed} has {len(ep.frames)} frames; context {context} + horizon "
                             f"{horizon} needs {context + horizon}")
    E = len(episodes)
    H, W = episodes[0].frames.shape[1:3]
    true = np.stack([ep.frames[context - 1:context + horizon] for ep in episodes])  # [E, horizon + 1, H, W, 3]
    generated = np.empty_like(true)
    generated[:, 0] = true[:, 0]
    out = Rollouts(true, generated, [ep.actions[context:context + horizon] for ep in episodes], [ep.seed for ep in episodes])
    bar = tqdm(total=E * horizon, desc=desc, disable=not progress, unit="frame")
    for batch in slot_batches(E, slots):
        for slot, e in enumerate(batch):
            predictor.start(slot, episodes[e].frames[:context], episodes[e].actions[:context])
        for h in range(1, horizon + 1):
            started = time.perf_counter()
            frames = predictor.step({slot: out.actions[e][h - 1] for slot, e in enumerate(batch)})
            out.step_seconds.append(time.perf_counter() - started)
            out.streams_per_step.append(len(batch))
            for slot, e in enumerate(batch):
                generated[e, h] = frames[slot]
            bar.update(len(batch))
        for slot in range(len(batch)):
            predictor.release(slot)
    bar.close()
    return out


def teacher_forced_positions(episodes: list[EvalEpisode], context: int, every: int) -> list[tuple[int, int]]:
    """(episode, frame) of each teacher-forced prediction, in the order `teacher_forced` returns them; the
    action that made the frame is `episodes[e].actions[t]`."""
    return [(e, t) for e, ep in enumerate(episodes) for t in range(context, len(ep.frames), every)]


def teacher_forced(predictor: Predictor, episodes: list[EvalEpisode], context: int, every: int,
                   slots: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Next-frame predictions from the true past at t = context, context + every, ... of each episode.

    Returns (previous true frames, true frames, predicted frames), each uint8 [N, H, W, 3]."""
    jobs = teacher_forced_positions(episodes, context, every)
    if not jobs:
        raise ValueError(f"no teacher-forced positions: episodes of {[len(ep.frames) for ep in episodes]} frames, "
                         f"context {context}")
    prev = np.stack([episodes[e].frames[t - 1] for e, t in jobs])
    true = np.stack([episodes[e].frames[t] for e, t in jobs])
    pred = np.empty_like(true)
    for batch in tqdm(slot_batches(len(jobs), slots), desc="teacher-forced", disable=not progress):
        for slot, j in enumerate(batch):
            e, t = jobs[j]
            predictor.start(slot, episodes[e].frames[t - context:t], episodes[e].actions[t - context:t])
        frames = predictor.step({slot: episodes[jobs[j][0]].actions[jobs[j][1]] for slot, j in enumerate(batch)})
        for slot, j in enumerate(batch):
            pred[j] = frames[slot]
            predictor.release(slot)
    return prev, true, pred
