"""Decoder pairs: the world model's latents beside the true frames, and decoder fine-tuning on them."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pytest
import torch

from simulator.actions import NOOP, Action
from simulator.eval.episodes import EvalEpisode
from simulator.models.dit import build_dit
from simulator.models.tokenizer import Tokenizer, preset
from simulator.models.tokenizer_trainer import TRAIN_PRESETS, build_trainer
from simulator.rollout.generator import Generator, GeneratorConfig
from simulator.train import decoder_pairs


def _generator(slots: int) -> Generator:
    torch.manual_seed(0)
    model = build_dit("tiny")
    with torch.no_grad():  # a random (not copy-last) model, so every latent differs from its context
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return Generator(model, Tokenizer(preset("tiny")).eval(),
                     GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2, precision="fp32"), batch_size=slots)


def _episodes(n: int, frames: int = 12) -> list[EvalEpisode]:
    rng = np.random.default_rng(0)
    return [EvalEpisode(rng.integers(0, 256, (frames, 16, 16, 3), dtype=np.uint8),
                        [NOOP] + [Action(forward=True, yaw=3.0 * (t % 3 - 1)) for t in range(frames - 1)], seed)
            for seed in range(n)]


def test_pairs_hold_the_latent_of_the_frame_the_generator_showed_and_the_true_frame():
    episodes = decoder_pairs.cut_episodes(_episodes(3), context=4, horizon=2, starts=2)
    assert len(episodes) == 6 and all(len(ep.frames) == 6 for ep in episodes)
    gen = _generator(slots=4)
    shown: list[dict[int, np.ndarray]] = []
    step = gen.step
    gen.step = lambda actions: shown.append(step(actions)) or shown[-1]  # what a player would have seen
    pairs = decoder_pairs.make_pairs(gen, episodes, context=4, horizon=2, slots=4, progress=False)
    assert pairs["latents"].shape == (12, 4, 4, 4) and pairs["frames"].shape == (12, 16, 16, 3)
    assert pairs["horizons"].tolist() == [1] * 4 + [2] * 4 + [1] * 2 + [2] * 2  # batches of 4 rollouts, then 2
    # first batch, horizon 1, rollout 2: the true frame 5 of that cut, and the latent of the frame shown
    assert np.array_equal(pairs["frames"][2].numpy(), episodes[2].frames[4])
    decoded = gen.tokenizer.decode_frames(pairs["latents"][:4].float()).numpy()
    for slot in range(4):
        assert np.abs(decoded[slot].astype(int) - shown[0][slot].astype(int)).max() <= 2  # bf16 storage


def test_pairs_file_round_trip_and_bad_files(tmp_path):
    pairs = {"latents": torch.zeros(3, 4, 4, 4, dtype=torch.bfloat16), "frames": torch.zeros(3, 16, 16, 3, dtype=torch.uint8),
             "horizons": torch.ones(3, dtype=torch.int32)}
    from safetensors.torch import save_file

    save_file(pairs, str(tmp_path / "ok.safetensors"))
    assert decoder_pairs.load_pairs(tmp_path / "ok.safetensors")["frames"].shape == (3, 16, 16, 3)
    save_file({"latents": pairs["latents"]}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        decoder_pairs.load_pairs(tmp_path / "bad.safetensors")


def test_decoder_learns_generated_latents_only_with_a_frozen_encoder():
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8)
    latents = torch.randn(8, 4, 4, 4)
    targets = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8)
    free = build_trainer(preset("tiny"), TRAIN_PRESETS["tiny"], torch.device("cpu"))
    with pytest.raises(ValueError, match="freeze_encoder"):
        free.train_step(frames, (latents, targets))
    trainer = build_trainer(preset("tiny"), replace(TRAIN_PRESETS["tiny"], freeze_encoder=True), torch.device("cpu"))
    encoder = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}

    def generated_l1() -> float:
        with torch.no_grad():
            out = trainer.model.decode(latents)
        return float((out - (targets.permute(0, 3, 1, 2).float() / 127.5 - 1)).abs().mean())

    before = generated_l1()
    for _ in range(60):
        trainer.train_step(frames, (latents, targets))
    assert generated_l1() < 0.9 * before
    assert all(torch.equal(v, trainer.model.encoder.state_dict()[k]) for k, v in encoder.items())
