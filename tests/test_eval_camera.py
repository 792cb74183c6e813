"""The IDM-free camera check: the image-shift estimator finds known shifts, and the slope of a stream's
shift on the engine's reads 1 for the engine's own frames (also blurred), -1 mirrored, 0 frozen."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simulator.eval.camera import camera_following, image_shift
from simulator.eval.episodes import engine_episodes
from simulator.eval.metrics import down_up
from simulator.eval.rollouts import Rollouts

CONTEXT, HORIZON = 1, 40


@pytest.fixture(scope="module")
def rollouts():
    eps = engine_episodes([41, 42, 43, 44], CONTEXT + HORIZON, (64, 64), warmup=20, progress=False)
    true = np.stack([ep.frames[CONTEXT - 1:] for ep in eps])  # [E, horizon + 1, H, W, 3]
    return Rollouts(true, true.copy(), [ep.actions[CONTEXT:] for ep in eps], [ep.seed for ep in eps])


def _textured(rng, size=96) -> np.ndarray:
    """A smooth random RGB image uint8 [size, size, 3] (blocks of colour, blurred a little)."""
    x = torch.from_numpy(rng.integers(0, 256, (1, 3, size // 8, size // 8)).astype(np.float32))
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def test_image_shift_finds_known_shifts():
    rng = np.random.default_rng(0)
    big = _textured(rng)
    prev = big[16:80, 16:80]
    cases = [(3, -2), (-7, 0), (0, 5), (12, 9)]
    # cur(x, y) = prev(x - dx, y - dy): the content moved by (dx, dy)
    cur = np.stack([big[16 - dy:80 - dy, 16 - dx:80 - dx] for dx, dy in cases])
    est = image_shift(np.repeat(prev[None], len(cases), 0), cur)
    np.testing.assert_allclose(est, np.array(cases, float), rtol=0.08, atol=0.2)  # large shifts read ~5% short
    assert np.all(image_shift(prev[None], prev[None]) == 0)  # the same frame: exactly no shift
    # half a pixel, by averaging two neighbouring crops: sub-pixel, not rounded to 0 or 1
    half = ((big[16:80, 16:80].astype(int) + big[16:80, 15:79]) / 2).round().astype(np.uint8)
    assert 0.25 < image_shift(prev[None], half[None])[0, 0] < 0.75


def test_engine_against_itself_follows(rollouts):
    cam = camera_following(rollouts)
    yaw, pitch = cam["methods"]["model"]["all"]["yaw"], cam["methods"]["model"]["all"]["pitch"]
    assert yaw["slope"] == pytest.approx(1.0) and yaw["corr"] == pytest.approx(1.0) and yaw["sign_agreement"] == 1.0
    assert yaw["turning_ticks"] > 10, yaw  # the policy turns: the figure is measured on something
    # the estimator reads the commanded turns: +yaw (turn right) moves the image left, ~0.8 px per degree
    assert -1.1 < yaw["engine_px_per_degree"] < -0.4, yaw
    frozen = cam["methods"]["copy-last"]["all"]["yaw"]
    assert frozen["slope"] == 0.0 and frozen["sign_agreement"] == 0.0


def test_blurred_mirrored_and_frozen_streams(rollouts):
    true = rollouts.true
    blurred = down_up(true, 4)  # sharpness ~2 of the engine's ~30: as blurry as the shipped model's rollouts
    frozen = np.broadcast_to(true[:, :1], true.shape)
    mirrored = true[:, :, :, ::-1]
    figures = {}
    for name, gen in (("blurred", blurred), ("mirrored", mirrored), ("frozen", frozen)):
        cam = camera_following(Rollouts(true, np.ascontiguousarray(gen), rollouts.actions, rollouts.seeds))
        figures[name] = cam["methods"]["model"]["all"]
    assert figures["blurred"]["yaw"]["slope"] > 0.7 and figures["blurred"]["yaw"]["corr"] > 0.7, figures["blurred"]
    assert figures["blurred"]["yaw"]["sign_agreement"] > 0.8, figures["blurred"]
    assert figures["mirrored"]["yaw"]["slope"] < -0.7, figures["mirrored"]  # turns the wrong way
    assert figures["mirrored"]["yaw"]["sign_agreement"] < 0.2, figures["mirrored"]
    assert figures["frozen"]["yaw"]["sign_agreement"] == 0.0, figures["frozen"]
    assert figures["mirrored"]["pitch"]["slope"] > 0.7, figures["mirrored"]  # a mirror keeps up and down
    assert figures["frozen"]["yaw"]["slope"] == pytest.approx(0.0, abs=1e-9), figures["frozen"]
    assert figures["frozen"]["pitch"]["slope"] == pytest.approx(0.0, abs=1e-9), figures["frozen"]


def test_down_up_blurs_and_keeps_shape():
    flat = np.full((2, 3, 16, 16, 3), 77, np.uint8)
    assert np.array_equal(down_up(flat, 4), flat)  # nothing to blur
    checker = ((np.indices((16, 16)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1)  # [16, 16, 3]
    out = down_up(checker, 4)
    assert out.shape == checker.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - 127).max() <= 1  # single-pixel detail averages out to mid-grey


def test_copy_warped_last_turns_with_the_engine():
    """The warp the world model applies to its previous frame (simulator.models.camera_warp), run as a
    baseline: on the engine's own episodes it follows the camera (slope near 1, the right sign) and,
    one tick ahead, predicts turning frames better than copy-last."""
    from simulator.eval.metrics import psnr
    from simulator.eval.predictors import CopyLast, CopyWarpedLast
    from simulator.eval.rollouts import teacher_forced

    eps = engine_episodes([41, 42, 43, 44], 4 + 24, (64, 64), warmup=20, progress=False)
    prev, true, warped = teacher_forced(CopyWarpedLast((64, 64), 2), eps, 4, 1, slots=2, progress=False)
    _, _, copied = teacher_forced(CopyLast((64, 64), 2), eps, 4, 1, slots=2, progress=False)
    engine, moved = image_shift(prev, true)[:, 0], image_shift(prev, warped)[:, 0]  # yaw: horizontal shift, px
    turning = np.abs(engine) > 1.0
    assert turning.sum() > 10
    slope = (engine[turning] * moved[turning]).sum() / (engine[turning] ** 2).sum()
    assert 0.6 < slope < 1.4, slope
    assert psnr(warped, true)[turning].mean() > psnr(copied, true)[turning].mean() + 1.0


def test_copy_walked_last_grows_the_picture_as_the_player_walks_ahead():
    """Walking forward enlarges the picture: on straight walks through engine worlds, the last frame
    enlarged by walk_scale (copy-walked-last) predicts the next better than the frame turned alone."""
    from simulator.actions import Action
    from simulator.eval.metrics import psnr
    from simulator.eval.predictors import COPY_WALKED_LAST, COPY_WARPED_LAST, load_predictor
    from simulator.world.engine import World

    walk = Action(forward=True)
    scores = {COPY_WARPED_LAST: [], COPY_WALKED_LAST: []}
    for seed in (51, 52, 53):
        world = World(seed)
        frames = [world.reset()] + [world.step(walk) for _ in range(24)]
        for name in scores:
            predictor, _ = load_predictor(name, frames[0].shape[:2])
            for t in range(1, len(frames) - 1):
                predictor.start(0, np.stack(frames[t - 1:t + 1]), [walk, walk])
                scores[name].append(psnr(predictor.step({0: walk})[0][None], frames[t + 1][None])[0])
    walked, warped = np.mean(scores[COPY_WALKED_LAST]), np.mean(scores[COPY_WARPED_LAST])
    assert walked > warped + 0.3, (walked, warped)
