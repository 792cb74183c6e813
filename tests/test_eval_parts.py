"""The evaluation's parts on the real engine with known answers: an engine oracle must score
perfectly everywhere, copy-last must score exactly as copy-last, and collapse must be flagged."""

import numpy as np
import pytest

from simulator.eval.control import controllability
from simulator.eval.episodes import engine_episodes, make_world, play_policy
from simulator.eval.fidelity import action_kind, by_action_kind, rollout_fidelity, teacher_forced_fidelity
from simulator.eval.idm import IDM_PRESETS, InverseDynamics
from simulator.eval.metrics import frechet_distance
from simulator.eval.plot import LineChart, Series
from simulator.eval.predictors import CopyLast
from simulator.eval.probes import PROBES, run_probe
from simulator.eval.rollouts import Rollouts, autoregressive, teacher_forced
from simulator.eval.stability import StabilityConfig, stability

RES = (64, 64)
WARMUP, CONTEXT = 20, 4


class EngineOracle:
    """A 'world model' that is the engine itself: replays the seed's policy context, then steps the engine."""

    def __init__(self, seed: int):
        self.seed, self.resolution, self.world = seed, RES, None

    def start(self, slot, frames, actions):
        self.world = make_world(self.seed, RES)
        played, _ = play_policy(self.world, self.seed, WARMUP + CONTEXT)
        assert np.array_equal(played[-1], frames[-1]), "oracle context differs from the probe's"

    def step(self, actions):
        return {slot: self.world.step(a) for slot, a in actions.items()}

    def release(self, slot):
        self.world = None


class Sharpening(EngineOracle):
    """The engine's frames with a contrast-adding display on top, every tick a little more (what an edge-trained
    refiner did standing still)."""

    def start(self, slot, frames, actions):
        super().start(slot, frames, actions)
        self.gain = 0.0

    def step(self, actions):
        self.gain += 0.05
        out = {}
        for slot, frame in super().step(actions).items():
            x = frame.astype(np.float32)
            blur = (np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 4
            out[slot] = np.clip(x + self.gain * (x - blur), 0, 255).astype(np.uint8)
        return out


def test_stand_still_probe_reads_over_sharpening():
    """PSNR falls both for a faded and for an over-sharpened picture; the sharpness ratio says which."""
    sharp = run_probe(Sharpening(45), PROBES["stand_still"], 45, RES, CONTEXT, warmup=WARMUP)
    assert sharp["return_sharpness_ratio"] > 1.5 and sharp["return_vs_engine_psnr"] < 40


@pytest.fixture(scope="module")
def episodes():
    return engine_episodes([41, 42, 43], CONTEXT + 24, RES, warmup=WARMUP, progress=False)


@pytest.fixture(scope="module")
def idm():
    import torch

    torch.manual_seed(0)
    return InverseDynamics(IDM_PRESETS["tiny"]).eval()


def test_frechet_distance_known_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # N(0, I) vs N(m, 4I): |m|^2 + 3 * (1 + 4 - 2 * 2)
    b = rng.normal(size=(4000, 3)) * 2 + np.array([1.0, 0.0, 2.0])
    assert frechet_distance(a, b) == pytest.approx(5 + 3, rel=0.08)
    with pytest.raises(ValueError, match="equal D"):
        frechet_distance(a, b[:, :2])


def test_engine_episodes_are_deterministic_and_move(episodes):
    again = engine_episodes([42], CONTEXT + 24, RES, warmup=WARMUP, progress=False)[0]
    assert np.array_equal(again.frames, episodes[1].frames) and again.actions == episodes[1].actions
    assert episodes[0].frames.shape == (CONTEXT + 24, 64, 64, 3)
    assert np.abs(np.diff(episodes[0].frames.astype(int), axis=0)).mean() > 0.5  # the player is not standing still


def test_copy_last_fidelity_and_oracle(episodes, idm):
    rolls = autoregressive(CopyLast(RES, 2), episodes, CONTEXT, 16, slots=2, progress=False)
    assert np.array_equal(rolls.generated[:, 5], rolls.true[:, 0])  # copy-last holds the last context frame
    fid = rollout_fidelity(rolls, None, idm)
    model, copy = fid["methods"]["model"], fid["methods"]["copy-last"]
    assert model["psnr_mean"] == pytest.approx(copy["psnr_mean"])  # the copy-last predictor is the baseline
    assert model["psnr_mean"][0] > model["psnr_mean"][-1]  # and falls behind as the engine moves on
    perfect = Rollouts(rolls.true, rolls.true.copy(), rolls.actions, rolls.seeds)
    fid = rollout_fidelity(perfect, None, idm)
    assert min(fid["methods"]["model"]["psnr_mean"]) == pytest.approx(100.0)
    assert all(band["model"] == pytest.approx(0.0, abs=1e-6) for band in fid["fd_bands"])
    ctrl = controllability(idm, perfect, (8,))["first_8"]
    assert ctrl["ratio"]["action"] == pytest.approx(1.0)

    prev, true, pred = teacher_forced(CopyLast(RES, 2), episodes, CONTEXT, 6, slots=2, progress=False)
    tf = teacher_forced_fidelity(prev, true, pred, None, idm)
    assert tf["model"]["psnr"] == pytest.approx(tf["copy-last"]["psnr"]) and tf["model"]["beats_copy_last"] == 0.0


def test_stability_flags_collapse(episodes, idm):
    long = engine_episodes([44], CONTEXT + 48, RES, warmup=WARMUP, progress=False)
    rolls = autoregressive(CopyLast(RES, 1), long, CONTEXT, 48, slots=1, progress=False)
    cfg = StabilityConfig(window=16, stride=8, frozen_engine_motion=0.5)
    frozen = stability(rolls, idm, cfg)
    assert frozen["collapse_onset"]["frozen"] is not None and frozen["collapse_onset"]["blur"] is None

    true = rolls.true
    grey = np.broadcast_to(true.mean(axis=(2, 3), keepdims=True), true.shape).astype(np.uint8)  # flat colour = blur
    dark = true.copy()
    dark[..., 0] = np.clip(true[..., 0].astype(int) + 60, 0, 255)  # the same frames, redder: colour drift only
    blurred = stability(Rollouts(true, grey, rolls.actions, rolls.seeds), idm, cfg)
    drifted = stability(Rollouts(true, dark, rolls.actions, rolls.seeds), idm, cfg)
    same = stability(Rollouts(true, true.copy(), rolls.actions, rolls.seeds), idm, cfg)
    assert blurred["collapse_onset"]["blur"] == 1 and blurred["collapse_onset"]["flat"] == 1  # one colour per frame
    assert drifted["collapse_onset"]["colour_drift"] == 1 and drifted["collapse_onset"]["blur"] is None
    assert drifted["collapse_onset"]["flat"] is None and frozen["collapse_onset"]["flat"] is None
    assert same["collapse_onset"] == {"blur": None, "frozen": None, "colour_drift": None, "flat": None}
    assert all(w["fd"] == pytest.approx(0.0, abs=1e-6) for w in same["windows"])
    assert all(w["fd"] > 0 for w in blurred["windows"])


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probes_engine_oracle_is_perfect(name):
    res = run_probe(EngineOracle(45), PROBES[name], 45, RES, CONTEXT, warmup=WARMUP)
    assert res["return_vs_engine_psnr"] == pytest.approx(100.0)
    if name == "full_circle":
        assert res["engine_return_vs_anchor_psnr"] == pytest.approx(100.0)  # 18 x 20 degrees is exactly 360
    assert res["path_vs_engine_psnr"] == pytest.approx(100.0)
    assert res["psnr_by_tick"] == pytest.approx([100.0] * len(PROBES[name].actions))
    assert res["return_sharpness_ratio"] == pytest.approx(1.0)
    copy = run_probe(CopyLast(RES), PROBES[name], 45, RES, CONTEXT, warmup=WARMUP)
    assert copy["return_vs_own_anchor_psnr"] == pytest.approx(100.0)
    if name == "stand_still":  # the engine holds its picture, and so does copy-last, to the last tick
        assert res["engine_return_vs_anchor_psnr"] == pytest.approx(100.0)
        assert copy["return_vs_engine_psnr"] == pytest.approx(100.0)
        assert copy["psnr_by_tick"] == pytest.approx([100.0] * len(PROBES[name].actions))
    else:
        assert min(copy["psnr_by_tick"]) < 40
        assert copy["path_vs_engine_psnr"] < 40


def test_chart_needs_data():
    with pytest.raises(ValueError, match="no series"):
        LineChart("empty", "x", "y").render()
    img = LineChart("one", "x", "y").add(Series("s", np.arange(3), np.array([1.0, 2.0, np.nan]))).render()
    assert img.size == (720, 420)


def test_teacher_forced_error_by_action_kind():
    """Frames are split by what the player did, and each kind's PSNR is that of its own pooled error."""
    from simulator.actions import Action

    assert [action_kind(a) for a in (Action(), Action(yaw=2.0), Action(forward=True), Action(left=True, pitch=-1.0),
                                     Action(jump=True), Action(hotbar=3))] == \
        ["still", "camera", "walk", "walk+camera", "other", "other"]
    true = np.full((4, 8, 8, 3), 100, np.uint8)
    pred = true.copy()
    pred[1] += 10  # error only in the camera frame...
    pred[2] += 1  # ...and a little in one of the walking ones
    out = by_action_kind(["still", "camera", "walk", "walk"], true, {"model": pred, "copy-last": true})
    assert set(out) == {"still", "camera", "walk"} and out["walk"]["frames"] == 2
    assert out["camera"]["model"] == pytest.approx(10 * np.log10(255**2 / 100))
    assert out["walk"]["model"] == pytest.approx(10 * np.log10(255**2 / 0.5))  # the mean of 1 and 0
    assert out["camera"]["model_error_share"] == pytest.approx(100 / 101)
    assert out["still"]["model"] == pytest.approx(100.0)  # identical frames: the cap
