"""The inverse-dynamics model learns to read actions from engine frames (or its accuracy means nothing),
and its checkpoint round-trips."""

import dataclasses

import numpy as np
import pytest
import torch

from simulator.actions import CAMERA_BINS, NOOP, Action
from simulator.eval.idm import IDM_BUTTONS, InverseDynamics, accuracy, action_targets, predict
from simulator.eval.idm_data import IdmActionSampler, IdmSamplerConfig
from simulator.eval.idm_train import IDM_TRAIN_PRESETS, compare, train

# a small run: turning and walking only, so that a few hundred steps on 2 CPU cores suffice
SAMPLER = IdmSamplerConfig(pitch_move_prob=0.0, jump_prob=0.0, attack_prob=0.0, use_prob=0.0, sneak_prob=0.0,
                           sprint_prob=0.0, hotbar_prob=0.0, move_choices=((False, False, False, False),
                                                                           (True, False, False, False)),
                           move_weights=(0.5, 0.5))


CONFIG = dataclasses.replace(IDM_TRAIN_PRESETS["tiny"], train_episodes=16, heldout_episodes=4, episode_frames=40,
                             steps=400, batch_size=32, lr=3e-3, sampler=SAMPLER)


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return train(CONFIG, progress=False)


def test_idm_reads_turning_and_walking_on_unseen_worlds(trained):
    _, summary = trained
    acc = summary["heldout_accuracy"]
    # chance: a moving tick's bin is one of 20, so within one bin by luck ~3/20; forward is balanced (0.5)
    assert acc["yaw_moving_within1"] > 0.5, acc  # measured 0.73
    assert acc["forward"] > 0.55, acc  # measured 0.61: walking is the hard part (docs/evaluation.md)
    assert np.isnan(acc["jump"])  # never pressed in this run: reported as n/a, not as a score


def test_idm_checkpoint_round_trip(trained, tmp_path):
    model, summary = trained
    model.save(tmp_path / "idm", heldout_accuracy=summary["heldout_accuracy"])
    loaded = InverseDynamics.load(tmp_path / "idm")
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    a, b = predict(model, frames), predict(loaded, frames)
    assert a["features"].shape == (4, model.config.feature_dim)
    np.testing.assert_allclose(a["features"], b["features"], atol=0.05)  # bf16 weights on disk
    # --evaluate scores a saved checkpoint on the same held-out worlds that training reported
    table = compare(CONFIG, [str(tmp_path / "idm")])
    row = next(line for line in table.splitlines() if line.startswith("| yaw_moving_within1 |"))
    assert float(row.split("|")[2]) == pytest.approx(summary["heldout_accuracy"]["yaw_moving_within1"], abs=0.03)


def test_accuracy_is_balanced_and_counts_bins():
    target = action_targets([NOOP, Action(forward=True, yaw=20.0), Action(yaw=-4.6332), NOOP])
    pred = {"yaw": target["yaw"].copy(), "pitch": target["pitch"].copy(),
            "buttons": np.zeros_like(target["buttons"], dtype=bool)}
    pred["yaw"][1] -= 1  # one bin off
    acc = accuracy(pred, target)
    assert acc["yaw_exact"] == 0.75 and acc["yaw_within1"] == 1.0 and acc["yaw_moving_within1"] == 1.0
    still = {**pred, "yaw": np.full_like(pred["yaw"], CAMERA_BINS // 2)}  # never turning: half marks, not 0.5 exact
    assert accuracy(still, target)["yaw_balanced"] == 0.5 and accuracy(still, target)["yaw_exact"] == 0.5
    assert acc["forward"] == 0.5  # never saying "pressed" is chance, however rare the button
    assert all(np.isnan(acc[b]) for b in IDM_BUTTONS if b != "forward")
    assert target["yaw"][0] == CAMERA_BINS // 2


def test_sampler_keeps_labels_readable():
    class FakeWorld:  # a player in mid-air, looking at the sky at the pitch limit
        class player:
            pitch, on_ground = 59.0, False

        @staticmethod
        def target():
            return None

    sampler = IdmActionSampler(np.random.default_rng(0))
    actions = [sampler(FakeWorld) for _ in range(300)]
    assert not any(a.jump or a.attack or a.use for a in actions)
    assert all(59.0 + a.pitch <= 60.0 + 1e-6 for a in actions)  # never pushes into the clamp
    assert sum(a.yaw != 0 for a in actions) > 100


def test_residual_flow_reads_sub_pixel_motion():
    from simulator.eval.idm import residual_flow

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(1, 1, 12, 12)).astype(np.float32))
    big = torch.nn.functional.interpolate(x, size=(96, 96), mode="bicubic", align_corners=False)  # smooth texture
    prev = big[..., 16:80, 16:80]
    half_right = (big[..., 16:80, 16:80] + big[..., 16:80, 15:79]) / 2  # content moved right by half a pixel
    far_right = big[..., 16:80, 9:73]  # 7 px: undone by the global shift, leaving no residual flow
    flow = residual_flow(torch.cat([prev] * 3), torch.cat([half_right, far_right, prev]), 20, 4, 3e-4, 4.0)
    inner = flow[:, :, 1:3, 1:3]  # [3, 2, 2, 2], away from the replicated border
    assert 0.3 < inner[0, 0].mean() < 0.7 and inner[0, 1].abs().max() < 0.15, inner[0]
    assert inner[1].abs().max() < 0.15 and inner[2].abs().max() < 1e-6, inner[1:]
    # a zoom in (walking forward): the left regions flow left, the right ones right
    zoom = torch.nn.functional.interpolate(prev, scale_factor=1.04, mode="bilinear", align_corners=False)
    off = (zoom.shape[-1] - 64) // 2
    u = residual_flow(prev, zoom[..., off:off + 64, off:off + 64], 20, 4, 3e-4, 4.0)[0, 0]  # [4, 4]
    assert u[:, 0].mean() < -0.2 and u[:, 3].mean() > 0.2, u
