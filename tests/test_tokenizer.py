"""Tokenizer: shape contracts, size errors, checkpoint round trips, latent normalisation,
a tiny training run that learns, exact resume, and the train-tokenizer command end to end."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from simulator.actions import NOOP
from simulator.data.shards import Episode, write_shard
from simulator.models.tokenizer import Tokenizer, TokenizerConfig, preset
from simulator.models.tokenizer_eval import comparison_grid, evaluate
from simulator.models.tokenizer_trainer import (TRAIN_PRESETS, TokenizerTrainer, build_trainer, frames_to_unit,
                                               widened_decoder)
from simulator.train import tokenizer as train_cli


def blocky_frames(n: int, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """Synthetic frames like the engine's: a sky gradient over 4x4-pixel textured blocks."""
    rng = np.random.default_rng(seed)
    frames = np.empty((n, h, w, 3), np.uint8)
    palette = rng.integers(30, 230, (6, 3))
    for i in range(n):
        horizon = int(rng.integers(h // 4, 3 * h // 4))
        sky = np.linspace(200, 120, horizon)[:, None, None] * np.array([0.6, 0.8, 1.0])
        frames[i, :horizon] = sky.astype(np.uint8)
        blocks = palette[rng.integers(0, 6, (-(-(h - horizon) // 4), -(-w // 4)))]
        ground = blocks.repeat(4, 0).repeat(4, 1)[: h - horizon, :w]
        frames[i, horizon:] = np.clip(ground + rng.integers(-20, 20, ground.shape), 0, 255)
    return frames


@pytest.fixture
def tiny() -> Tokenizer:
    torch.manual_seed(0)
    model = Tokenizer(preset("tiny")).eval()
    # give the zero-initialised residual branches weights, so round trips are not trivially equal
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("h,w", [(32, 32), (16, 48), (40, 24), (64, 64)])
def test_shapes_at_several_sizes(tiny: Tokenizer, h: int, w: int):
    frames = torch.from_numpy(blocky_frames(2, h, w))
    f, C = tiny.stride, tiny.latent_channels
    with torch.inference_mode():
        z = tiny.encode(frames)
        x = tiny.decode(z)
        out = tiny.decode_frames(z)
    assert z.shape == (2, C, h // f, w // f) and z.dtype == torch.float32
    assert x.shape == (2, 3, h, w) and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert out.shape == (2, h, w, 3) and out.dtype == torch.uint8


def test_sizes_not_a_multiple_of_the_stride_fail_with_the_size_and_stride(tiny: Tokenizer):
    with pytest.raises(ValueError, match=r"30x32.*stride 4"):
        tiny.encode(torch.zeros(1, 30, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"32x18.*stride 4"):
        tiny.encode(torch.zeros(1, 32, 18, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        tiny.encode(torch.zeros(1, 32, 32, 3))
    with pytest.raises(ValueError, match=r"latents \[B, 4, h, w\]"):
        tiny.decode(torch.zeros(1, 3, 8, 8))


def test_config_checks_levels_and_stride():
    assert preset("cpu").stride == 4 and TokenizerConfig(encoder_channels=(8, 8, 8, 8), encoder_blocks=(0,) * 4,
                                                         decoder_channels=(8,) * 4, decoder_blocks=(0,) * 4).stride == 8
    with pytest.raises(ValueError, match="one entry per level"):
        TokenizerConfig(encoder_channels=(8, 16), encoder_blocks=(0, 1, 1))
    with pytest.raises(ValueError, match="unknown tokenizer preset"):
        preset("huge")


def test_save_load_round_trip_gives_identical_outputs(tiny: Tokenizer, tmp_path):
    frames = torch.from_numpy(blocky_frames(3, 32, 48))
    tiny.set_latent_stats(torch.linspace(-0.5, 0.5, 4), torch.linspace(0.5, 2.0, 4))
    tiny.save(tmp_path / "fp32", dtype=None, step=7)
    loaded = Tokenizer.load(tmp_path / "fp32")
    assert json.loads((tmp_path / "fp32" / "config.json").read_text())["step"] == 7
    with torch.inference_mode():
        z, z2 = tiny.encode(frames), loaded.encode(frames)
        assert torch.equal(z, z2)
        assert torch.equal(tiny.decode_frames(z), loaded.decode_frames(z2))
    # the shipped form (bf16): reloading it and saving again changes nothing
    loaded.save(tmp_path / "a")
    a = Tokenizer.load(tmp_path / "a")
    a.save(tmp_path / "b")
    b = Tokenizer.load(tmp_path / "b")
    with torch.inference_mode():
        assert torch.equal(a.decode(a.encode(frames)), b.decode(b.encode(frames)))
    assert b.config.latent_scale == pytest.approx(torch.linspace(0.5, 2.0, 4).tolist())


def test_load_refuses_other_checkpoints(tmp_path):
    from simulator.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, {"w": torch.zeros(2)}, {"kind": "dit"})
    with pytest.raises(ValueError, match="does not hold a tokenizer"):
        Tokenizer.load(tmp_path)


def test_latent_normalisation_gives_unit_variance(tiny: Tokenizer):
    frames = torch.from_numpy(blocky_frames(64, 32, 32, seed=1))
    trainer = TokenizerTrainer(tiny, TRAIN_PRESETS["tiny"], torch.device("cpu"))
    with torch.inference_mode():
        raw_std = tiny.encode(frames).std(dim=(0, 2, 3))
    trainer.measure_latent_stats(frames)
    with torch.inference_mode():
        z = tiny.encode(frames)  # [N, C, h, w]
    assert not torch.allclose(raw_std, torch.ones_like(raw_std), atol=0.2)  # the test is not vacuous
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=0.05)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(4), atol=0.05)


def test_tiny_training_run_lowers_the_loss():
    torch.manual_seed(0)
    frames = torch.from_numpy(blocky_frames(64, 32, 32, seed=2))
    trainer = build_trainer(preset("tiny"), TRAIN_PRESETS["tiny"], torch.device("cpu"))
    before = evaluate(trainer.model, frames.numpy())
    losses = [trainer.train_step(frames[torch.randint(64, (8,))])["l1"] for _ in range(150)]
    after = evaluate(trainer.model, frames.numpy())
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    assert after["psnr"] > before["psnr"] + 3, (before, after)


def test_resume_continues_exactly(tmp_path):
    cfg = TRAIN_PRESETS["tiny"]
    frames = torch.from_numpy(blocky_frames(16, 32, 32, seed=3))
    torch.manual_seed(0)
    a = build_trainer(preset("tiny"), cfg, torch.device("cpu"), total_steps=20)
    for _ in range(3):
        a.train_step(frames[:8])
    a.save_state(tmp_path / "last")
    b = TokenizerTrainer.resume(tmp_path / "last", torch.device("cpu"), total_steps=20)
    assert b.step == 3 and b.opt.state_dict()["state"][0]["exp_avg"].abs().sum() > 0
    for t in (a, b):
        torch.manual_seed(1)
        t.train_step(frames[8:])
    for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(pa, pb), f"{name} differs after resume: max {(pa - pb).abs().max()}"


def test_discriminator_path_trains_and_resumes(tmp_path):
    from dataclasses import replace

    cfg = replace(TRAIN_PRESETS["tiny"], adv_weight=0.1, adv_start=1, disc_channels=4)
    trainer = build_trainer(preset("tiny"), cfg, torch.device("cpu"))
    frames = torch.from_numpy(blocky_frames(8, 32, 32))
    logs = [trainer.train_step(frames) for _ in range(2)]
    assert "g_adv" not in logs[0] and "d" in logs[1] and np.isfinite(logs[1]["d"])
    trainer.save_state(tmp_path)
    resumed = TokenizerTrainer.resume(tmp_path, torch.device("cpu"))
    for pa, pb in zip(trainer.disc.parameters(), resumed.disc.parameters()):
        assert torch.equal(pa, pb)


def test_feature_matching_reads_the_discriminators_layers():
    from dataclasses import replace

    from simulator.models.tokenizer_losses import PatchDiscriminator, feature_matching_loss

    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=4).eval()  # eval: spectral norm does not step its power iteration
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    feats, logits = disc.features(x)
    assert len(feats) == 3 and torch.equal(logits, disc(x))  # the same network as the verdict
    assert feature_matching_loss(feats, feats) == 0
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    fake_feats, _ = disc.features(blurred.requires_grad_())
    fm = feature_matching_loss(fake_feats, feats)
    fm.backward()
    assert fm > 0 and blurred.grad.abs().sum() > 0  # the reconstruction is pushed towards the true features

    with pytest.raises(ValueError, match="adv_weight"):
        build_trainer(preset("tiny"), replace(TRAIN_PRESETS["tiny"], fm_weight=1.0), torch.device("cpu"))
    with pytest.raises(ValueError, match="energy_window"):
        build_trainer(preset("tiny"), replace(TRAIN_PRESETS["tiny"], energy_weight=0.1, energy_window=0),
                      torch.device("cpu"))
    cfg = replace(TRAIN_PRESETS["tiny"], adv_weight=0.1, fm_weight=1.0, adv_start=1, disc_channels=4)
    trainer = build_trainer(preset("tiny"), cfg, torch.device("cpu"))
    frames = torch.from_numpy(blocky_frames(8, 32, 32))
    logs = [trainer.train_step(frames) for _ in range(2)]
    assert "fm" not in logs[0] and logs[1]["fm"] > 0


def test_edge_energy_asks_for_contrast_not_position():
    from simulator.eval.metrics import sharpness
    from simulator.models.tokenizer_losses import edge_energy_l1

    x = torch.from_numpy(blocky_frames(4, 32, 32)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    moved = x.roll(1, dims=-1)  # the same contrast one pixel over: L1 pays, edge energy barely
    assert edge_energy_l1(x, x) == 0
    assert edge_energy_l1(moved, x) < 0.2 * edge_energy_l1(blurred, x)
    assert (moved - x).abs().mean() > (blurred - x).abs().mean()
    # one window over the whole frame is the evaluation's sharpness gap (0..255 units there)
    frames = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    blurred_frames = ((blurred + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    gap = np.abs(sharpness(frames) - sharpness(blurred_frames)).mean() / 127.5
    whole = edge_energy_l1(blurred, x, window=32).item()
    assert whole == pytest.approx(gap, rel=0.05)

    from dataclasses import replace
    trainer = build_trainer(preset("tiny"), replace(TRAIN_PRESETS["tiny"], energy_weight=0.5), torch.device("cpu"))
    logs = trainer.train_step(torch.from_numpy(blocky_frames(8, 32, 32)))
    assert logs["energy"] > 0 and logs["loss"] > logs["l1"]  # the term reaches the objective


def test_comparison_grid_puts_reconstructions_under_originals():
    a, b = blocky_frames(3, 8, 8), blocky_frames(3, 8, 8, seed=9)
    grid = comparison_grid(a, b, columns=2, scale=1)
    assert grid.shape == (2 * 2 * 10, 2 * 10, 3)
    assert np.array_equal(grid[:8, 10:18], a[1]) and np.array_equal(grid[10:18, 10:18], b[1])


def _write_dataset(root, seeds: list[int]) -> None:
    for s, seed in enumerate(seeds):
        frames = blocky_frames(8, 32, 32, seed=seed)
        write_shard(root / f"shard_{s:05d}.npz", [Episode(frames, [NOOP] * 8, seed, "plains", "test", "synthetic")])


def test_train_tokenizer_command_evaluates_exports_and_resumes(tmp_path):
    _write_dataset(tmp_path / "train", [0, 1])
    _write_dataset(tmp_path / "heldout", [100000])
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    argv = ["--data", str(tmp_path / "train"), "--heldout", str(tmp_path / "heldout"), "--out", str(tmp_path / "run"),
            "--preset", "tiny", "--export", str(tmp_path / "ship"), "--device", "cpu", "--eval-every", "2",
            "--eval-frames", "8"]
    assert train_cli.main(parser.parse_args(argv + ["--steps", "4"])) == 0
    last = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert last["step"] == 4 and [h["step"] for h in last["history"]] == [2, 4]
    shipped = json.loads((tmp_path / "ship" / "config.json").read_text())
    assert set(shipped["heldout_figures"]) >= {"psnr", "ssim", "sharpness_ratio"}
    assert len(shipped["tokenizer"]["latent_scale"]) == 4
    Tokenizer.load(tmp_path / "ship")
    assert train_cli.main(parser.parse_args(argv + ["--steps", "6"])) == 0  # resumes at step 4
    last = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert last["step"] == 6 and [h["step"] for h in last["history"]] == [2, 4, 6]


def test_bench_command_times_and_measures_quality_without_recording(tmp_path, capsys):
    from simulator.models import tokenizer_bench

    _write_dataset(tmp_path / "heldout", [100000])
    Tokenizer(preset("tiny")).save(tmp_path / "tok")
    parser = argparse.ArgumentParser()
    tokenizer_bench.add_arguments(parser)
    args = parser.parse_args(["--checkpoint", str(tmp_path / "tok"), "--resolution", "32x48", "--threads", "1",
                              "--precision", "fp32,bf16", "--batch-size", "4", "--repeats", "3", "--heldout", str(tmp_path / "heldout"),
                              "--png", str(tmp_path / "recon.png"), "--no-record"])
    assert tokenizer_bench.main(args) == 0
    out = capsys.readouterr().out
    assert "decode 1 frame ms" in out and "MFLOP a frame" in out and "sharpness ratio" in out and "| 8 |" in out  # 8 held-out frames
    assert "| fp32 | 1 |" in out and "| bf16 | 1 |" in out  # one row per precision
    assert (tmp_path / "recon.png").stat().st_size > 0


def _trained_tokenizer_and_cli(tmp_path, name: str) -> tuple[Tokenizer, argparse.ArgumentParser]:
    """Train/held-out shards, a tiny tokenizer with known latent statistics saved as tmp_path/name
    (a stand-in for a trained one), and the train-tokenizer argument parser."""
    _write_dataset(tmp_path / "train", [0, 1])
    _write_dataset(tmp_path / "heldout", [100000])
    torch.manual_seed(0)
    model = Tokenizer(preset("tiny"))
    model.set_latent_stats(torch.full((4,), 0.5), torch.full((4,), 2.0))
    model.save(tmp_path / name, dtype=None)
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    return model, parser


def test_decoder_only_training_keeps_the_latent_space(tmp_path):
    """--init + --freeze-encoder: the decoder learns, the encoder and latent statistics (what a
    world model was trained on) stay bit for bit; without --init the option is refused."""
    base, parser = _trained_tokenizer_and_cli(tmp_path, "base")
    argv = ["--data", str(tmp_path / "train"), "--heldout", str(tmp_path / "heldout"), "--preset", "tiny",
            "--device", "cpu", "--eval-every", "100", "--eval-frames", "8", "--steps", "200", "--freeze-encoder"]
    with pytest.raises(SystemExit, match="--init"):
        train_cli.main(parser.parse_args(argv + ["--out", str(tmp_path / "bad")]))
    with pytest.raises(ValueError, match="multiple of the tokenizer stride"):
        train_cli.main(parser.parse_args(argv + ["--out", str(tmp_path / "odd"), "--init", str(tmp_path / "base"),
                                                 "--crop", "13"]))
    assert train_cli.main(parser.parse_args(argv + ["--out", str(tmp_path / "run"), "--init", str(tmp_path / "base"),
                                                    "--crop", "16", "--best", "psnr",
                                                    "--export", str(tmp_path / "ship")])) == 0
    last = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert last["train"]["crop"] == 16 and last["best_by"] == "psnr"
    psnrs = {h["step"]: h["psnr"] for h in last["history"]}
    assert last["best_step"] == max(psnrs, key=psnrs.get) and last["best_score"] == max(psnrs.values())
    with pytest.raises(SystemExit, match="keeps its best by 'psnr'"):  # a resumed run cannot change what best means
        train_cli.main(parser.parse_args(argv + ["--out", str(tmp_path / "run"), "--best", "target"]))
    tuned = Tokenizer.load(tmp_path / "run" / "last")
    for name, value in base.state_dict().items():
        same = torch.equal(value, tuned.state_dict()[name])
        assert same == name.startswith("encoder."), f"{name}: {'unchanged' if same else 'changed'}"
    assert tuned.config.latent_shift == base.config.latent_shift
    assert tuned.config.latent_scale == base.config.latent_scale
    frames = torch.from_numpy(blocky_frames(4, 32, 32, seed=7))
    assert torch.equal(tuned.encode(frames), base.encode(frames))
    heldout = blocky_frames(8, 32, 32, seed=100000)
    before, after = evaluate(base, heldout)["psnr"], evaluate(tuned, heldout)["psnr"]
    assert after > before + 0.2, (before, after)  # a random encoder: little to decode, but the decoder learns
    assert json.loads((tmp_path / "ship" / "config.json").read_text())["frozen_encoder"] is True


def test_a_widened_decoder_starts_as_the_trained_one_and_then_learns(tiny: Tokenizer, tmp_path):
    """widened_decoder: more channels per decoder level, the same picture at the start (the new
    channels are read through zeros), and those zeros train; --init --arch decoder_channels=...
    grows a checkpoint's decoder on its frozen latent space and refuses anything else."""
    tiny.set_latent_stats(torch.full((4,), 0.5), torch.full((4,), 2.0))
    wide = widened_decoder(tiny, (12, 20, 24)).eval()
    assert wide.config.decoder_channels == (12, 20, 24)
    assert sum(p.numel() for p in wide.decoder.parameters()) > sum(p.numel() for p in tiny.decoder.parameters())
    frames = torch.from_numpy(blocky_frames(4, 32, 32, seed=3))
    with torch.no_grad():
        latents = tiny.encode(frames)
        assert torch.equal(wide.encode(frames), latents)
        torch.testing.assert_close(wide.decode(latents), tiny.decode(latents), rtol=0, atol=1e-6)
    wide.train()
    loss = (wide.decoder(torch.randn(2, 4, 8, 8)) - 0.3).pow(2).mean()
    loss.backward()
    zeros = wide.decoder.conv_out.weight.grad[:, tiny.config.decoder_channels[0]:]
    assert zeros.abs().sum() > 0  # the weights that start at zero do learn
    with pytest.raises(ValueError, match="at least as wide"):
        widened_decoder(tiny, (4, 20, 24))

    base, parser = _trained_tokenizer_and_cli(tmp_path, "base")
    argv = ["--data", str(tmp_path / "train"), "--heldout", str(tmp_path / "heldout"), "--preset", "tiny",
            "--device", "cpu", "--eval-every", "20", "--eval-frames", "8", "--steps", "20", "--freeze-encoder",
            "--init", str(tmp_path / "base")]
    for bad, message in [("encoder_channels=8,16,32", "decoder_channels only"), ("decoder_channels=4,16,16", "at least as wide")]:
        with pytest.raises(SystemExit, match=message):
            train_cli.main(parser.parse_args(argv + ["--out", str(tmp_path / "bad"), "--arch", bad]))
    assert train_cli.main(parser.parse_args(argv + ["--out", str(tmp_path / "run"), "--arch", "decoder_channels=12,20,24"])) == 0
    grown = Tokenizer.load(tmp_path / "run" / "last")
    assert grown.config.decoder_channels == (12, 20, 24)
    assert grown.config.latent_shift == base.config.latent_shift and grown.config.latent_scale == base.config.latent_scale
    for name, value in base.state_dict().items():
        if name.startswith("encoder."):
            assert torch.equal(value, grown.state_dict()[name]), name


def test_arch_changes_shape_a_fresh_run_and_bad_ones_are_refused(tmp_path):
    _write_dataset(tmp_path / "train", [0])
    _write_dataset(tmp_path / "heldout", [100000])
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    argv = ["--data", str(tmp_path / "train"), "--heldout", str(tmp_path / "heldout"), "--preset", "tiny",
            "--device", "cpu", "--eval-every", "2", "--eval-frames", "8", "--steps", "2"]
    assert train_cli.main(parser.parse_args(argv + ["--out", str(tmp_path / "run"), "--arch", "latent_channels=6",
                                                    "encoder_blocks=1,1,0"])) == 0
    grown = Tokenizer.load(tmp_path / "run" / "best")
    assert grown.latent_channels == 6 and grown.config.encoder_blocks == (1, 1, 0)
    assert grown.config.encoder_channels == preset("tiny").encoder_channels  # the rest is the preset's
    for bad, message in [("latent_channels=1,2", "one integer"), ("depth=3", "KEY one of"),
                         ("encoder_blocks=1,1", "one entry per level"), ("latent_channels=x", "integers")]:
        with pytest.raises(SystemExit, match=message):
            train_cli.main(parser.parse_args(argv + ["--out", str(tmp_path / "bad"), "--arch", bad]))


def test_encoder_flops_are_the_convolutions_multiply_adds():
    from simulator.models import tokenizer_bench

    model = Tokenizer(preset("tiny")).eval()
    expected = []

    def count(conv, _, out):  # 2 x (inputs per output value) x output values
        expected.append(2 * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1] * out.numel())

    hooks = [m.register_forward_hook(count) for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model.encode(torch.zeros(1, 32, 48, 3, dtype=torch.uint8))
    for h in hooks:
        h.remove()
    assert tokenizer_bench.encoder_flops(model, 32, 48) == sum(expected) > 0
    assert tokenizer_bench.encoder_flops(model, 64, 96) == 4 * sum(expected)  # fully convolutional


def test_distilled_encoder_learns_the_teachers_latent_space_and_resumes(tmp_path):
    """--teacher: a new encoder shaped by --arch learns a trained tokenizer's latents; the decoder
    and the latent shift/scale (what a world model was trained on) stay the teacher's, bit for bit."""
    teacher, parser = _trained_tokenizer_and_cli(tmp_path, "teacher")
    argv = ["--data", str(tmp_path / "train"), "--heldout", str(tmp_path / "heldout"), "--preset", "tiny",
            "--device", "cpu", "--eval-every", "60", "--eval-frames", "8", "--teacher", str(tmp_path / "teacher"),
            "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit, match="encoder_channels and encoder_blocks only"):
        train_cli.main(parser.parse_args(argv[:-1] + [str(tmp_path / "bad"), "--arch", "decoder_blocks=1,1,1"]))
    frames = torch.from_numpy(blocky_frames(8, 32, 32, seed=7))

    def latent_error(model: Tokenizer) -> float:
        with torch.no_grad():
            return float((model.encode(frames) - teacher.encode(frames)).pow(2).mean())

    untrained = Tokenizer(TokenizerConfig.from_dict({**teacher.config.to_dict(), "encoder_channels": [4, 8, 16]}))
    assert train_cli.main(parser.parse_args(argv + ["--arch", "encoder_channels=4,8,16", "--steps", "60"])) == 0
    student = Tokenizer.load(tmp_path / "run" / "last")
    assert student.config.encoder_channels == (4, 8, 16)
    for name, value in teacher.state_dict().items():
        if name.startswith("decoder."):
            assert torch.equal(value, student.state_dict()[name]), name
    assert student.config.latent_shift == teacher.config.latent_shift
    assert student.config.latent_scale == teacher.config.latent_scale
    assert latent_error(student) < 0.5 * latent_error(untrained)
    assert train_cli.main(parser.parse_args(argv + ["--steps", "90"])) == 0  # resumes with its teacher
    last = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert last["step"] == 90 and last["teacher"] == str(tmp_path / "teacher")


def test_a_student_continues_with_its_decoder_in_the_teachers_latent_space(tmp_path):
    """--teacher --init STUDENT --train-decoder: the student's encoder and decoder train together
    from where the student stopped, the latent MSE holding the teacher's latent space (its shift and
    scale unchanged); only a student of that teacher is accepted, and --train-decoder needs a teacher."""
    teacher, parser = _trained_tokenizer_and_cli(tmp_path, "teacher")
    base = ["--data", str(tmp_path / "train"), "--heldout", str(tmp_path / "heldout"), "--preset", "tiny",
            "--device", "cpu", "--eval-every", "40", "--eval-frames", "8"]
    distil = base + ["--teacher", str(tmp_path / "teacher")]
    assert train_cli.main(parser.parse_args(distil + ["--arch", "encoder_channels=4,8,16", "--steps", "40",
                                                      "--out", str(tmp_path / "student")])) == 0
    student = Tokenizer.load(tmp_path / "student" / "last")
    stranger = Tokenizer(preset("tiny"))  # same shapes, other latent statistics
    stranger.save(tmp_path / "stranger", dtype=None)
    with pytest.raises(SystemExit, match="not a student of"):
        train_cli.main(parser.parse_args(distil + ["--init", str(tmp_path / "stranger"), "--out", str(tmp_path / "x")]))
    with pytest.raises(SystemExit, match="goes with --teacher"):
        train_cli.main(parser.parse_args(base + ["--train-decoder", "--out", str(tmp_path / "y")]))
    assert train_cli.main(parser.parse_args(distil + ["--init", str(tmp_path / "student" / "last"), "--train-decoder",
                                                      "--steps", "40", "--out", str(tmp_path / "joint")])) == 0
    joint = Tokenizer.load(tmp_path / "joint" / "last")
    assert joint.config.encoder_channels == (4, 8, 16)
    for name, value in student.state_dict().items():
        assert not torch.equal(value, joint.state_dict()[name]) or not value.is_floating_point() or value.numel() < 2, name
    assert joint.config.latent_shift == teacher.config.latent_shift
    assert joint.config.latent_scale == teacher.config.latent_scale
    # a student whose decoder was widened since is still that teacher's student
    widened_decoder(student, (12, 16, 16)).save(tmp_path / "wide-student", dtype=None)
    assert train_cli.main(parser.parse_args(distil + ["--init", str(tmp_path / "wide-student"), "--train-decoder",
                                                      "--steps", "2", "--out", str(tmp_path / "wide-joint")])) == 0
    assert Tokenizer.load(tmp_path / "wide-joint" / "last").config.decoder_channels == (12, 16, 16)
    # the same continuation without a teacher (plain --init, all weights) moves the latents further
    assert train_cli.main(parser.parse_args(base + ["--init", str(tmp_path / "student" / "last"), "--steps", "40",
                                                    "--out", str(tmp_path / "free")])) == 0
    free = Tokenizer.load(tmp_path / "free" / "last")
    x = frames_to_unit(torch.from_numpy(blocky_frames(8, 32, 32, seed=7)))
    with torch.no_grad():
        target = teacher.posterior(x)[0]
        drift = {name: float((m.posterior(x)[0] - target).pow(2).mean() / target.pow(2).mean())
                 for name, m in [("student", student), ("joint", joint), ("free", free)]}
    assert drift["joint"] < 0.5 * drift["free"], drift
    run = json.loads((tmp_path / "joint" / "last" / "config.json").read_text())
    assert run["teacher"] == str(tmp_path / "teacher") and run["init"] == str(tmp_path / "student" / "last")
    assert run["train"]["freeze_decoder"] is False
