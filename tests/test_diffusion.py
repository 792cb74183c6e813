"""Noise schedule endpoints, diffusion-forcing levels, and the sampler."""

import pytest
import torch

from simulator.diffusion import DiffusionConfig, add_noise, loss_weight, sample, sample_levels, timesteps


def test_add_noise_endpoints():
    x0, noise = torch.randn(2, 3, 4, 5, 5), torch.randn(2, 3, 4, 5, 5)
    assert torch.equal(add_noise(x0, torch.zeros(2, 3), noise), x0)
    assert torch.equal(add_noise(x0, torch.ones(2, 3), noise), noise)
    mid = add_noise(x0, torch.full((2, 3), 0.25), noise)
    torch.testing.assert_close(mid, 0.75 * x0 + 0.25 * noise)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_timesteps_run_from_noise_to_clean(shift):
    t = timesteps(5, shift)
    assert t.shape == (6,) and t[0] == 1.0 and t[-1] == 0.0
    assert (t[1:] < t[:-1]).all()
    with pytest.raises(ValueError, match="at least 1"):
        timesteps(0)


def test_levels_are_per_frame_and_in_range():
    cfg = DiffusionConfig()
    levels = sample_levels((512, 8), cfg, torch.Generator().manual_seed(0))
    assert levels.shape == (512, 8) and (levels >= 0).all() and (levels <= 1).all()
    assert levels.std(dim=1).mean() > 0.1  # independent per frame, not one level per clip
    context = (levels <= cfg.context_max).float().mean()
    assert 0.4 < context < 0.7  # about context_prob of frames at context levels (plus a few low targets)


def test_loss_weight_favours_low_noise():
    cfg = DiffusionConfig()
    w = loss_weight(torch.tensor([0.01, 0.5, 0.99]), cfg)
    assert w[0] == cfg.snr_max_weight and w[2] == cfg.snr_min_weight and w[1] >= w[2]


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("steps", [1, 4])
def test_sampler_with_oracle_returns_target(steps, eta):
    target = torch.randn(3, 1, 4, 8, 8)
    seen = []

    def oracle(x, t):
        seen.append(t)
        return target

    out = sample(oracle, torch.randn_like(target), steps, eta=eta)
    torch.testing.assert_close(out, target)
    assert seen[0] == 1.0 and len(seen) == steps


def test_sampler_stays_on_the_noise_path():
    """Between steps x must be (1 - t) x0 + t * (unit noise): check the variance at the last level."""
    target = torch.zeros(20000)
    levels = []

    def oracle(x, t):
        levels.append((t, x.std().item()))
        return target

    sample(oracle, torch.randn(20000), 4, eta=1.0)
    for t, std in levels:
        assert abs(std - t) < 0.03, (t, std)
