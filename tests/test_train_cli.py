"""`patchworld train` end to end on a few synthetic shards: encode, train, evaluate, export, resume."""

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from simulator.actions import NOOP, Action
from simulator.data.shards import Episode, write_shard
from simulator.models.tokenizer import Tokenizer, preset
from simulator.rollout.generator import Generator
from simulator.train.world_model import SHIPPED_SHIFT
from simulator.train.world_trainer import SHIPPED_PREV_NOISE
from simulator.cli import main as cli_main


def _shards(root, seeds, T=24, size=16):
    rng = np.random.default_rng(seeds[0])
    episodes = []
    for seed in seeds:
        base = rng.integers(0, 256, (size, 2 * size, 3), dtype=np.uint8)
        frames = np.stack([np.roll(base, t, axis=1)[:, :size] for t in range(T)])  # a panning view
        actions = [NOOP] + [Action(yaw=2.0)] * (T - 1)
        episodes.append(Episode(frames, actions, seed, "plains", "test", "a test world"))
    write_shard(root / "shard_00000.npz", episodes)


def test_train_command_end_to_end_and_resume(tmp_path, capsys):
    _shards(tmp_path / "train", [1, 2, 3])
    _shards(tmp_path / "heldout", [100, 101])
    torch.manual_seed(0)
    Tokenizer(preset("tiny")).save(tmp_path / "tokenizer")
    out, export = tmp_path / "run", tmp_path / "world"
    command = [sys.executable, "-m", "simulator.cli", "train", "--data", str(tmp_path / "train"),
               "--heldout", str(tmp_path / "heldout"), "--tokenizer", str(tmp_path / "tokenizer"),
               "--preset", "tiny", "--out", str(out), "--export", str(export), "--device", "cpu",
               "--threads", "1", "--eval-clips", "2", "--eval-every", "6"]
    subprocess.run(command + ["--steps", "6", "--adv-weight", "0.1"], check=True, capture_output=True)
    assert json.loads((out / "last" / "config.json").read_text())["step"] == 6
    assert (out / "last" / "disc.safetensors").exists()  # the discriminator resumes with the run
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert evals[-1]["step"] == 6 and "teacher_forced_copy_last_psnr" in evals[-1]
    assert 0 < evals[-1]["still_psnr_t100"] < 100  # the stand-still probe, from held-out worlds
    # pooled as `patchworld eval` pools: never above the mean of per-frame PSNRs (Jensen)
    assert evals[-1]["teacher_forced_psnr_pooled"] <= evals[-1]["teacher_forced_psnr"] + 1e-9
    assert evals[-1]["tokenizer_psnr_pooled"] <= evals[-1]["tokenizer_psnr"] + 1e-9
    assert (out / "samples" / "step0000006.mp4").stat().st_size > 0
    shipped = json.loads((export / "config.json").read_text())
    assert shipped["kind"] == "world_model" and shipped["world_seeds"] == [1, 2, 3] and shipped["steps"] == 6
    assert shipped["generator"]["shift"] == SHIPPED_SHIFT  # exports sample as the shipped checkpoint does
    assert shipped["generator"]["prev_noise"] == SHIPPED_PREV_NOISE
    assert shipped["tokenizer"] == "tokenizer" and (export / "tokenizer" / "model.safetensors").exists()

    subprocess.run(command + ["--steps", "9"], check=True, capture_output=True)  # resumes at 6
    resumed = json.loads((out / "last" / "config.json").read_text())
    assert resumed["step"] == 9 and resumed["train"]["adv_weight"] == 0.1  # the saved recipe, GAN term included
    assert len(list((out / "latents").glob("*.safetensors"))) == 1  # encoded once
    (export / "config.json").write_text(json.dumps({**shipped, "steps": 0}))  # as if the last export were older
    subprocess.run(command + ["--steps", "9", "--export-last"], check=True, capture_output=True)  # trains no further
    assert json.loads((export / "config.json").read_text())["steps"] == 9  # exported whatever it scored
    assert json.loads((out / "last" / "config.json").read_text())["step"] == 9

    gen = Generator.from_checkpoint(export)
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    gen.start(0, frames, [NOOP, NOOP])
    assert gen.step({0: Action(forward=True)})[0].shape == (16, 16, 3)

    assert cli_main(["eval-sweep", "--checkpoint", str(export), "--heldout", str(tmp_path / "heldout"),
                     "--clips", "1", "--steps", "1,2", "--no-record"]) == 0
    assert "steps 1" in capsys.readouterr().out


def test_best_is_teacher_forced_psnr_less_a_blur_penalty():
    from simulator.train.world_model import score

    sharp = {"teacher_forced_psnr": 27.0, "sharpness_rollout": 30.0, "sharpness_true": 38.0}  # ratio 0.79
    blurry = {**sharp, "teacher_forced_psnr": 27.5, "sharpness_rollout": 19.0}  # ratio 0.5
    assert score(sharp) == 27.0  # sharp enough: no penalty
    assert score(blurry) == pytest.approx(27.5 - 10 * 0.2)  # 0.2 short of 0.7
    assert score(sharp) > score(blurry)


def test_resume_keeps_the_saved_recipe_unless_overridden(tmp_path):
    from simulator.train import world_model

    parser = argparse.ArgumentParser()
    world_model.add_arguments(parser)
    base = ["--data", "d", "--heldout", "h", "--tokenizer", "t", "--preset", "cpu", "--out", str(tmp_path)]
    first = world_model._train_config(parser.parse_args(base + ["--lr", "1e-4", "--self-context", "0.5",
                                                              "--energy-score", "0.5", "--warp-padding", "zeros",
                                                              "--rollout-context", "0.25", "--clean-base"]))
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "trainer.json").write_text("{}")
    (tmp_path / "last" / "config.json").write_text(json.dumps({"train": {**vars(first), "retired_field": 1}}))
    saved = world_model._last_config(tmp_path)["train"]
    resumed = world_model._train_config(parser.parse_args(base), saved)  # the flags not given again
    assert (resumed.lr, resumed.self_context, resumed.energy_score, resumed.warp_padding, resumed.rollout_context,
            resumed.clean_base) == (1e-4, 0.5, 0.5, "zeros", 0.25, True)
    assert not world_model._train_config(parser.parse_args(base)).clean_base  # off unless asked
    with pytest.raises(SystemExit, match="--energy-score"):
        world_model._train_config(parser.parse_args(base + ["--energy-score", "1.5"]))
    assert resumed.adv_previous  # the default: no discriminator in this run anyway
    older = {k: v for k, v in {**saved, "adv_weight": 0.05}.items() if k != "adv_previous"}
    assert not world_model._train_config(parser.parse_args(base), older).adv_previous  # as it was trained
    assert world_model._train_config(parser.parse_args(base + ["--lr", "2e-4"]), saved).lr == 2e-4
    with pytest.raises(SystemExit, match="--preset cpu"):  # another model than the one in OUT/last
        world_model._train_config(parser.parse_args(base[:-4] + ["--preset", "tiny"] + base[-2:]), saved)


def test_init_continues_a_grown_checkpoint_at_its_size(tmp_path):
    from simulator.train import world_model

    parser = argparse.ArgumentParser()
    world_model.add_arguments(parser)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model": {"depth": 10, "mlp_ratio": 6.0}}))
    base = ["--data", "d", "--heldout", "h", "--tokenizer", "t", "--preset", "cpu", "--out", str(tmp_path / "run")]
    assert world_model._train_config(parser.parse_args(base)).depth == 0  # the preset's
    assert world_model._train_config(parser.parse_args(base + ["--init", str(tmp_path / "ckpt")])).depth == 10
    grown = parser.parse_args(base + ["--init", str(tmp_path / "ckpt"), "--depth", "12"])
    assert world_model._train_config(grown).depth == 12
    resumed = parser.parse_args(base + ["--init", str(tmp_path / "ckpt")])
    assert world_model._train_config(resumed, {"model": "cpu", "depth": 11}).depth == 11  # the run's own recipe
    assert world_model._train_config(parser.parse_args(base)).mlp_ratio == 0  # the preset's
    assert world_model._train_config(parser.parse_args(base + ["--init", str(tmp_path / "ckpt")])).mlp_ratio == 6
    wider = parser.parse_args(base + ["--init", str(tmp_path / "ckpt"), "--mlp-ratio", "8"])
    assert world_model._train_config(wider).mlp_ratio == 8
    assert world_model._train_config(resumed, {"model": "cpu", "mlp_ratio": 7.0}).mlp_ratio == 7


def test_init_keeps_the_checkpoints_weightless_switches(tmp_path):
    """clean_base, warp_padding and walk_zoom hold no weights, so loading cannot refuse a mismatch:
    a fresh --init run builds the network as its checkpoint was built unless a flag says otherwise."""
    from simulator.train import world_model

    parser = argparse.ArgumentParser()
    world_model.add_arguments(parser)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(
        {"model": {"depth": 12, "clean_base": True, "warp_padding": "zeros", "walk_zoom": 0.015}}))
    base = ["--data", "d", "--heldout", "h", "--tokenizer", "t", "--preset", "cpu", "--out", str(tmp_path / "run")]
    plain = world_model._train_config(parser.parse_args(base))
    assert (plain.clean_base, plain.warp_padding, plain.walk_zoom) == (False, "border", 0.0)  # the preset's
    init = world_model._train_config(parser.parse_args(base + ["--init", str(tmp_path / "ckpt")]))
    assert (init.clean_base, init.warp_padding, init.walk_zoom) == (True, "zeros", 0.015)
    told = world_model._train_config(parser.parse_args(base + ["--init", str(tmp_path / "ckpt"),
                                                               "--warp-padding", "border", "--walk-zoom", "0"]))
    assert (told.clean_base, told.warp_padding, told.walk_zoom) == (True, "border", 0.0)
    dropped = world_model._train_config(parser.parse_args(base + ["--init", str(tmp_path / "ckpt"), "--no-clean-base"]))
    assert (dropped.clean_base, dropped.warp_padding) == (False, "zeros")
    resumed = world_model._train_config(parser.parse_args(base + ["--init", str(tmp_path / "ckpt")]),
                                        {"model": "cpu", "clean_base": False})
    assert not resumed.clean_base  # a resumed run keeps its own recipe


def test_context_noise_options_reach_the_objective_and_the_exported_generator():
    """--context-max widens the context levels training draws (frames and previous latents);
    --context-noise is the level the exported generator gives finished frames, and must be one
    training saw."""
    from simulator.diffusion import sample_context_levels
    from simulator.models.dit import build_dit
    from simulator.train import world_model
    from simulator.train.world_trainer import WorldTrainer
    from simulator.train.ddp import DistInfo

    parser = argparse.ArgumentParser()
    world_model.add_arguments(parser)
    base = ["--data", "d", "--heldout", "h", "--tokenizer", "t", "--preset", "tiny"]
    default = world_model._train_config(parser.parse_args(base))
    assert (default.context_max, default.context_noise) == (0.15, 0.05)  # what the shipped model trained with
    cfg = world_model._train_config(parser.parse_args(base + ["--context-max", "0.3", "--context-noise", "0.2"]))
    trainer = WorldTrainer(cfg, build_dit("tiny"), DistInfo(0, 1, torch.device("cpu")))
    assert (trainer.diffusion.context_max, trainer.diffusion.context_noise) == (0.3, 0.2)
    levels = sample_context_levels((20000,), trainer.diffusion, torch.Generator().manual_seed(0))
    assert 0.25 < float(levels.max()) <= 0.3
    config = world_model._checkpoint_config(cfg, {}, Tokenizer(preset("tiny")), "t", (16, 16), [1])
    assert config["generator"]["context_noise"] == 0.2 and config["diffusion"]["context_max"] == 0.3
    with pytest.raises(SystemExit, match="context noise"):
        world_model._train_config(parser.parse_args(base + ["--context-noise", "0.2"]))  # above the trained 0.15


def test_clean_base_reaches_the_training_pass():
    """With clean_base the trainer hands the network the previous latents before their noise: a fresh
    model (zero correction) then predicts every frame as exactly its clean previous latent, whatever
    noise level its input drew; without it, as the noised input."""
    from simulator.actions import BUTTON_DIM
    from simulator.models.dit import build_dit
    from simulator.train import world_model
    from simulator.train.world_trainer import WorldTrainer
    from simulator.train.ddp import DistInfo

    parser = argparse.ArgumentParser()
    world_model.add_arguments(parser)
    base = ["--data", "d", "--heldout", "h", "--tokenizer", "t", "--preset", "tiny"]
    g = torch.Generator().manual_seed(0)
    batch = {"latents": torch.randn(2, 4, 4, 8, 8, generator=g), "buttons": torch.zeros(2, 4, BUTTON_DIM),
             "camera": torch.full((2, 4, 2), 5, dtype=torch.long)}
    for flag in ([], ["--clean-base"]):
        cfg = world_model._train_config(parser.parse_args(base + flag))
        model = build_dit("tiny", clean_base=cfg.clean_base)
        trainer = WorldTrainer(cfg, model, DistInfo(0, 1, torch.device("cpu")), compile=False)
        pred, _, _ = trainer.predict(batch)
        gap = (pred.float() - batch["latents"][:, :-1]).abs().max()
        assert (gap < 1e-2) if flag else (gap > 1e-2)
