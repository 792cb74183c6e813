"""Action following: the IDM's accuracy on engine transitions and on generated transitions driven by
the same actions. Their ratio is the controllability: 1.0 means the model obeys actions as
readably as the engine does; the copy-last baseline, which ignores actions, scores far below.
"""

from __future__ import annotations

import numpy as np

from simulator.eval.idm import InverseDynamics, accuracy, action_targets, predict
from simulator.eval.rollouts import Rollouts

HEADLINE = "action"  # the figure of accuracy() that the ratio is reported for first


def _clip_accuracy(idm: InverseDynamics, clips: np.ndarray, actions: list[list], horizon: int) -> dict[str, float]:
    preds = [predict(idm, clip[:horizon + 1]) for clip in clips]  # transitions 1..horizon
    targets = [action_targets(a[:horizon]) for a in actions]
    keys = ("yaw", "pitch", "buttons")
    return accuracy({k: np.concatenate([p[k] for p in preds]) for k in keys},
                    {k: np.concatenate([t[k] for t in targets]) for k in keys})


def controllability(idm: InverseDynamics, rollouts: Rollouts, horizons: tuple[int, ...] = (8, 64)) -> dict:
    """Per horizon cap H (transitions 1..H of every rollout): engine and generated accuracy and their ratio."""
    out = {}
    for cap in horizons:
        cap = min(cap, rollouts.horizon)
        engine = _clip_accuracy(idm, rollouts.true, rollouts.actions, cap)
        generated = _clip_accuracy(idm, rollouts.generated, rollouts.actions, cap)
        ratio = {k: (generated[k] / engine[k] if np.isfinite(engine[k]) and engine[k] > 0 else float("nan"))
                 for k in engine}
        out[f"first_{cap}"] = {"engine": engine, "generated": generated, "ratio": ratio}
    return out
