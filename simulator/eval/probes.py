"""Consistency probes: scripted action lists that the engine answers exactly.

Each probe starts from the same engine state for the engine and the model (a policy episode's
first `context` frames), plays a script and compares the *return* frame (the script's last)
with the engine's return frame and with an *anchor* frame of the same stream: the frame the
return should look like again if the world is consistent.

- full_circle: turn 360 degrees (18 x 20 degrees); anchor = the start frame.
- forward_back: walk forward, then back the same number of ticks; anchor = the start frame.
- break_look_back: look down, hold attack (break the block in the crosshair), turn 180 degrees
  away and back; anchor = the frame right after the break, so the broken block must be remembered.
- stand_still: no action for STILL_TICKS (five seconds); anchor = the start frame. The engine's
  picture does not change at all: a model must hold it, neither fading it nor sharpening it into noise.

Every script opens with a few idle ticks so that the player's motion from the policy (a jump,
a fall) dies out; forward_back first turns to a heading with flat free ground, so that the
engine itself retraces its path and the return frame is a fair target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from simulator.actions import NOOP, Action
from simulator.eval.episodes import played_world
from simulator.eval.metrics import psnr, sharpness, ssim
from simulator.eval.predictors import Predictor

SETTLE_TICKS = 6  # idle ticks opening every script
TURN_DEG = 20.0  # a camera bin center: 18 turns of it make exactly 360 degrees
STILL_TICKS = 100  # five seconds at 20 ticks a second


@dataclass(frozen=True)
class Probe:
    name: str
    actions: tuple[Action, ...]  # the script, played after the opening (turn to a clear path, settle)
    anchor: int  # index into `actions` of the frame the return should match; -1 = the frame before the script
    clear_path: float = 0.0  # if > 0: first turn to a heading with this many blocks of flat free ground


def _probes() -> dict[str, Probe]:
    turn_right, turn_left = Action(yaw=TURN_DEG), Action(yaw=-TURN_DEG)
    walk = 16  # ticks: 3.5 blocks at walking speed
    look_down = (Action(pitch=-TURN_DEG),) * 2 + (Action(attack=True),) + (NOOP,) * 3
    away_back = (turn_right,) * 9 + (NOOP,) * 2 + (turn_left,) * 9 + (NOOP,) * 2
    return {
        "full_circle": Probe("full_circle", (turn_right,) * 18 + (NOOP,) * 2, anchor=-1),
        "forward_back": Probe("forward_back", (Action(forward=True),) * walk + (NOOP,) * 4 + (Action(back=True),) * walk
                              + (NOOP,) * 6, anchor=-1, clear_path=4.5),
        "break_look_back": Probe("break_look_back", look_down + away_back, anchor=len(look_down) - 1),
        "stand_still": Probe("stand_still", (NOOP,) * STILL_TICKS, anchor=-1),
    }


PROBES: dict[str, Probe] = _probes()

# candidate headings for a clear path: (ticks of TURN_DEG to the right) -> 0, 80, 180 and 260 degrees
_HEADING_TURNS: tuple[int, ...] = (0, 4, 9, 13)


def _path_is_clear(world, yaw_deg: float, distance: float) -> bool:
    """Free feet and head cells and solid ground at the feet's level along `distance` blocks at `yaw_deg`,
    with the player's half-width on either side: walking there and back retraces the same path."""
    x, y, z = (float(v) for v in world.player.position)
    dx, dz = math.sin(math.radians(yaw_deg)), -math.cos(math.radians(yaw_deg))  # the engine's facing convention
    feet = math.floor(y + 0.01)
    for step in np.arange(0.0, distance + 1e-6, 0.25):
        for side in (-0.35, 0.0, 0.35):
            px, pz = x + dx * step - dz * side, z + dz * step + dx * side
            bx, bz = math.floor(px), math.floor(pz)
            if world.is_solid(bx, feet, bz) or world.is_solid(bx, feet + 1, bz) or not world.is_solid(bx, feet - 1, bz):
                return False
    return True


def _opening(world, probe: Probe) -> tuple[Action, ...]:
    """Turn to the first clear heading (if the probe asks for one), then idle so that motion dies out."""
    turns = 0
    if probe.clear_path > 0:
        yaw = float(world.player.yaw)
        turns = next((k for k in _HEADING_TURNS if _path_is_clear(world, yaw + k * TURN_DEG, probe.clear_path)), 0)
    return (Action(yaw=TURN_DEG),) * turns + (NOOP,) * SETTLE_TICKS


def run_probe(predictor: Predictor, probe: Probe, seed: int, resolution: tuple[int, int], context: int,
              policy_preset: str = "human", warmup: int = 0) -> dict:
    """One probe from one seed's engine state. Returns the figures and the frames (engine, model: uint8 [S, H, W, 3])."""
    world, frames, actions = played_world(seed, resolution, context, policy_preset, warmup)  # the context
    for _ in range(SETTLE_TICKS):  # stop first, so that the clear-path check sees where the player stands
        world.step(NOOP)
    opening = _opening(world, probe)
    script = opening + probe.actions
    world = played_world(seed, resolution, context, policy_preset, warmup)[0]  # replay: the engine and the model see the same ticks
    engine = np.stack([world.step(a) for a in script])  # [S, H, W, 3]
    predictor.start(0, frames, actions)
    model = np.stack([predictor.step({0: a})[0] for a in script])
    predictor.release(0)
    anchor = len(opening) + probe.anchor  # index into the script's frames
    return {
        "seed": seed,
        "opening_ticks": len(opening),
        # the whole script after the opening, not only its end (copy-last returns "perfectly" from a full
        # circle): one PSNR of the mean squared error over those frames, [S', H, W, 3] -> [S' * H, W, 3]
        "path_vs_engine_psnr": float(psnr(model[len(opening):].reshape(-1, *model.shape[2:]),
                                          engine[len(opening):].reshape(-1, *engine.shape[2:]))),
        "return_vs_engine_psnr": float(psnr(model[-1], engine[-1])),
        # tick by tick after the opening: how fast a picture drifts (standing still: 25, 50, 100 ticks)
        "psnr_by_tick": [float(psnr(m, e)) for m, e in zip(model[len(opening):], engine[len(opening):])],
        "return_vs_engine_ssim": float(ssim(model[-1], engine[-1])),
        "return_vs_own_anchor_psnr": float(psnr(model[-1], model[anchor])),
        "engine_return_vs_anchor_psnr": float(psnr(engine[-1], engine[anchor])),
        # the last frame's sharpness against the engine's: below 1 the picture faded, above 1 it was sharpened
        # into noise (a display that adds contrast every tick passes every PSNR-at-a-horizon figure longer)
        "return_sharpness_ratio": float(sharpness(model[-1:])[0] / max(float(sharpness(engine[-1:])[0]), 1e-6)),
        "frames": {"engine": engine, "model": model},
    }


def run_probes(predictor: Predictor, seeds: list[int], resolution: tuple[int, int], context: int,
               policy_preset: str = "human", warmup: int = 0, progress: bool = True) -> dict[str, dict]:
    """Every probe from every seed -> probe name -> {"per_seed": [...], "mean": {figure: value}}.
    Frames of the first seed are kept under "example" for the report's picture."""
    out: dict[str, dict] = {}
    jobs = [(p, s) for p in PROBES.values() for s in seeds]
    for probe, seed in tqdm(jobs, desc="probes", disable=not progress):
        res = run_probe(predictor, probe, seed, resolution, context, policy_preset, warmup)
        entry = out.setdefault(probe.name, {"per_seed": [], "script_ticks": len(probe.actions), "anchor": probe.anchor})
        entry.setdefault("example", res.pop("frames"))
        res.pop("frames", None)
        entry["per_seed"].append(res)
    for entry in out.values():
        keys = [k for k in entry["per_seed"][0] if k != "seed"]
        # figures, and per-tick lists element by element
        entry["mean"] = {k: np.mean([r[k] for r in entry["per_seed"]], axis=0).tolist() for k in keys}
    return out
