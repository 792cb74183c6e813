"""Long-rollout stability: does the dreamed world keep its look over 1,200 frames, or collapse?

Per frame (mean over episodes): colour statistics, sharpness and motion (mean absolute change
from the previous frame), for the model and for the engine driven by the same actions. Over
sliding windows: a Frechet distance between the model's and the engine's frame distributions
(IDM features of consecutive-frame pairs, pooled over episodes and the window) and three
collapse flags, each against the engine over the same window:
- blur: the model's sharpness falls below `blur_ratio` of the engine's;
- frozen: the model barely changes between frames while the engine clearly does;
- colour drift: a channel's mean moves more than `drift_levels` away from the engine's;
- flat: the picture loses its contrast (the spatial standard deviation of its colours falls below
  `flat_ratio` of the engine's): the fog of one colour that an autoregressive model can settle into,
  which moves just enough not to count as frozen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from simulator.eval.fidelity import pair_features, transitions
from simulator.eval.idm import InverseDynamics
from simulator.eval.metrics import frechet_distance, sharpness
from simulator.eval.rollouts import Rollouts

FLAGS: tuple[str, ...] = ("blur", "frozen", "colour_drift", "flat")


@dataclass
class StabilityConfig:
    window: int = 100  # frames per sliding window
    stride: int = 50  # frames between window starts
    blur_ratio: float = 0.5  # blur: model sharpness < this x engine sharpness over the window
    frozen_motion: float = 0.5  # frozen: model's mean |frame change| (0..255) below this...
    frozen_engine_motion: float = 2.0  # ...while the engine's is above this
    drift_levels: float = 25.0  # colour drift: |model channel mean - engine channel mean| above this (0..255)
    flat_ratio: float = 0.25  # flat: model colour std (mean over channels) < this x the engine's over the window


STABILITY_PRESETS: dict[str, StabilityConfig] = {
    "quick": StabilityConfig(window=16, stride=8),  # tests and --quick
    "full": StabilityConfig(),  # 1,200-frame rollouts
}


def _per_frame(frames: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 [E, T, H, W, 3] -> per-frame means over episodes: colour mean/std [T, 3], sharpness [T], motion [T]."""
    x = frames.astype(np.float32)
    motion = np.zeros(frames.shape[:2], np.float32)  # [E, T]; frame 0 has no predecessor
    motion[:, 1:] = np.abs(x[:, 1:] - x[:, :-1]).mean(axis=(2, 3, 4))
    return {"colour_mean": x.mean(axis=(2, 3)).mean(0), "colour_std": x.std(axis=(2, 3)).mean(0),
            "sharpness": sharpness(frames).mean(0), "motion": motion.mean(0)}


def stability(rollouts: Rollouts, idm: InverseDynamics | None, config: StabilityConfig = StabilityConfig()) -> dict:
    """Per-frame series (index = horizon, 0 = last context frame), per-window distances and flags, and
    the first horizon at which each flag is raised (None when it never is)."""
    true, gen = rollouts.true, rollouts.generated  # [E, T, H, W, 3]
    E, T = true.shape[:2]
    if T - 1 < config.window:
        raise ValueError(f"stability: rollouts of horizon {T - 1} are shorter than one window of {config.window} frames")
    per = {"model": _per_frame(gen), "engine": _per_frame(true)}
    windows = []
    for start in range(1, T - config.window + 1, config.stride):
        end = start + config.window  # horizons [start, end)
        w: dict = {"start": start, "end": end - 1}
        sharp_m, sharp_e = (float(per[k]["sharpness"][start:end].mean()) for k in ("model", "engine"))
        motion_m, motion_e = (float(per[k]["motion"][start:end].mean()) for k in ("model", "engine"))
        drift = np.abs(per["model"]["colour_mean"][start:end].mean(0) - per["engine"]["colour_mean"][start:end].mean(0))
        contrast_m, contrast_e = (float(per[k]["colour_std"][start:end].mean()) for k in ("model", "engine"))
        w.update(sharpness_model=sharp_m, sharpness_engine=sharp_e, motion_model=motion_m, motion_engine=motion_e,
                 colour_drift=float(drift.max()), contrast_model=contrast_m, contrast_engine=contrast_e)
        w["blur"] = sharp_m < config.blur_ratio * sharp_e
        w["frozen"] = motion_m < config.frozen_motion and motion_e > config.frozen_engine_motion
        w["colour_drift_flag"] = bool(drift.max() > config.drift_levels)
        w["flat"] = contrast_m < config.flat_ratio * contrast_e
        if idm is not None:
            w["fd"] = frechet_distance(pair_features(idm, *transitions(gen, start, end - 1)),
                                       pair_features(idm, *transitions(true, start, end - 1)))
        windows.append(w)
    onset = {}
    for flag in FLAGS:
        key = "colour_drift_flag" if flag == "colour_drift" else flag
        onset[flag] = next((w["start"] for w in windows if w[key]), None)
    series = {k: {name: v.tolist() for name, v in d.items()} for k, d in per.items()}
    return {"config": asdict(config), "episodes": E, "horizon": T - 1, "series": series, "windows": windows,
            "collapse_onset": onset}
