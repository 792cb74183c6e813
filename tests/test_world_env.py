"""Gymnasium env and the headless renderer of `patchworld world` (simulator/world)."""

import argparse

import numpy as np
import pytest

from simulator.actions import CAMERA_BIN_CENTERS, save_actions, Action
from simulator.world.engine import WORLD_PRESETS

gym = pytest.importorskip("gymnasium")


def make_env(**kw):
    from simulator.world.env import WorldEnv

    return WorldEnv(WORLD_PRESETS["tiny"], **kw)


def test_spaces_and_reset():
    env = make_env(seed=3)
    obs, info = env.reset()
    cfg = WORLD_PRESETS["tiny"]
    assert env.observation_space.shape == (cfg.height, cfg.width, 3)
    assert env.observation_space.contains(obs)
    assert set(env.action_space.spaces) == {"forward", "back", "left", "right", "jump", "sneak", "sprint",
                                            "attack", "use", "hotbar", "camera"}
    assert info["seed"] == 3 and info["tick"] == 0 and info["biome"] and "daytime" in info["caption"]


def test_step_with_sampled_actions():
    env = make_env(max_steps=5)
    env.reset(seed=1)
    env.action_space.seed(0)
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and reward == 0.0 and not terminated
        assert truncated == (t == 4) and info["tick"] == t + 1


def test_reset_seed_selects_the_world_and_repeats():
    env = make_env()
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=6)
    c, _ = env.reset(seed=5)
    assert np.array_equal(a, c) and not np.array_equal(a, b)


def test_dict_action_maps_to_quantized_action():
    from simulator.world.env import to_action

    sample = {"forward": 1, "back": 0, "left": 0, "right": 0, "jump": 1, "sneak": 0, "sprint": 0,
              "attack": 0, "use": 1, "hotbar": 3, "camera": np.array([7.7, -1.1], np.float32)}
    action = to_action(sample)
    assert action.forward and action.jump and action.use and action.hotbar == 2
    assert action.yaw in CAMERA_BIN_CENTERS and action.pitch in CAMERA_BIN_CENTERS
    with pytest.raises(ValueError, match="missing"):
        to_action({"forward": 1})
    with pytest.raises(ValueError, match="hotbar 12"):
        to_action({**sample, "hotbar": 12})


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        make_env().step(Action())


def test_headless_video(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    from simulator.world import play

    actions = tmp_path / "a.jsonl"
    save_actions(actions, [Action(), Action(forward=True), Action(yaw=8.0), Action(hotbar=1, use=True)])
    out = tmp_path / "v.mp4"
    args = argparse.Namespace(seed=2, resolution=(17, 33), fov=70.0, parallel=False, frames=None, out=out,
                              actions=actions)
    assert play.main(args) == 0
    reader = imageio.get_reader(str(out), format="ffmpeg")
    assert reader.count_frames() == 4
    assert reader.get_data(0).shape == (18, 34, 3)  # padded to even sides for H.264
    with pytest.raises(SystemExit, match="holds only 4"):
        play.main(argparse.Namespace(**{**vars(args), "frames": 9}))


def test_resolution_parsing():
    from simulator.cli import parse_resolution

    assert parse_resolution("33x65") == (33, 65)  # height x width, as frames are [H, W, 3]
    with pytest.raises(argparse.ArgumentTypeError, match="HEIGHTxWIDTH"):
        parse_resolution("big")
