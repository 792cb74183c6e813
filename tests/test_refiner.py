"""The pixel refiner: its compositing, its checkpoints, its training, and that play shows what training trained."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from simulator.actions import BUTTON_DIM, BUTTONS, CAMERA_BINS, NOOP, Action, camera_bin, encode_many
from simulator.checkpoint import save_checkpoint
from simulator.data.shards import Episode, write_shard
from simulator.eval.episodes import EvalEpisode, engine_episodes, still_episodes
from simulator.models.dit import build_dit
from simulator.models.refiner import Refiner, RefinerConfig
from simulator.models.tokenizer import Tokenizer, preset
from simulator.rollout.generator import Generator, GeneratorConfig, generator_config
from simulator.train import refiner as train_refiner
from simulator.cli import main as cli_main


def _gated(picture: int) -> Refiner:
    """A refiner that shows one of its three pictures everywhere (0: decoded, 1: the moved last frame, 2: the
    decoded one plus the moved detail), without correction."""
    refiner = Refiner(RefinerConfig(width=4, blocks=1, walk_zoom=0.0))
    with torch.no_grad():
        refiner.out.bias.copy_(torch.tensor([30.0 if i == picture else -30.0 for i in range(3)] + [0.0] * 3))
    return refiner


def _still(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    hot, cam = encode_many([NOOP] * n)
    return torch.from_numpy(cam), torch.from_numpy(hot)


def test_the_three_pictures_the_refiner_mixes():
    torch.manual_seed(0)
    decoded, shown, last = (torch.rand(2, 3, 16, 16) * 0.6 - 0.3 for _ in range(3))  # no clamping
    camera, buttons = _still(2)
    assert torch.allclose(_gated(0)(decoded, shown, last, camera, buttons), decoded, atol=1e-6)
    assert torch.allclose(_gated(1)(decoded, shown, last, camera, buttons), shown, atol=1e-5)
    assert torch.allclose(_gated(2)(decoded, shown, last, camera, buttons), decoded + shown - last, atol=1e-5)


def test_pixels_the_turn_brought_into_view_come_from_the_decoder():
    torch.manual_seed(0)
    decoded, shown = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    hot, cam = encode_many([Action(yaw=20.0)])  # turning right: the picture moves left, ~4 new pixels on the right
    out = _gated(1)(decoded, shown, decoded, torch.from_numpy(cam), torch.from_numpy(hot))
    moved = _gated(1).move(shown, torch.from_numpy(cam), torch.from_numpy(hot), padding="zeros")
    assert torch.allclose(out[..., -3:], decoded[..., -3:], atol=1e-6)  # came into view
    assert torch.allclose(out[..., :8], moved[..., :8], atol=1e-5)  # the rest is the moved last frame


def test_the_refiner_reads_the_action():
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(width=4, blocks=1))
    torch.nn.init.normal_(refiner.out.weight, std=0.1)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    camera, buttons = _still(1)
    jumping = buttons.clone()
    jumping[0, BUTTONS.index("jump")] = 1.0
    assert not torch.allclose(refiner(x, x, x, camera, buttons), refiner(x, x, x, camera, jumping))


def test_checkpoint_round_trip_and_a_folder_of_another_kind(tmp_path):
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(width=4, blocks=1, walk_zoom=0.02))
    torch.nn.init.normal_(refiner.out.weight, std=0.1)
    refiner.save(tmp_path / "r", dtype=None, extra={"steps": 3})
    loaded = Refiner.load(tmp_path / "r")
    assert loaded.config == refiner.config
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    camera, buttons = torch.tensor([[3, 12], [10, 10]]), torch.zeros(2, BUTTON_DIM)
    assert torch.equal(loaded(x, x.flip(0), x, camera, buttons), refiner.eval()(x, x.flip(0), x, camera, buttons))
    Tokenizer(preset("tiny")).save(tmp_path / "tok")
    with pytest.raises(ValueError, match="not hold a refiner"):
        Refiner.load(tmp_path / "tok")


def _generator(refiner: Refiner | None, slots: int = 3) -> Generator:
    torch.manual_seed(0)
    model = build_dit("tiny")
    with torch.no_grad():  # random, not copy-last, so that frames change
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    torch.manual_seed(1)
    return Generator(model, Tokenizer(preset("tiny")).eval(),
                     GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2, precision="fp32"),
                     batch_size=slots, refiner=refiner)


def _episodes(n: int, frames: int = 10) -> list[EvalEpisode]:
    rng = np.random.default_rng(0)
    moves = [Action(yaw=4.0), Action(forward=True), Action(pitch=-3.0, jump=True), NOOP]
    return [EvalEpisode(rng.integers(0, 256, (frames, 16, 16, 3), dtype=np.uint8),
                        [NOOP] + [moves[(t + e) % 4] for t in range(frames - 1)], e) for e in range(n)]


def _trained_refiner() -> Refiner:
    torch.manual_seed(2)
    refiner = Refiner(RefinerConfig(width=4, blocks=1))
    for p in refiner.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return refiner.eval()


def test_play_shows_the_frames_training_chains():
    """The generator's frames with a refiner are the ones `train-refiner`'s chain makes of the same rollout."""
    episodes = _episodes(3)
    data = train_refiner.collect(_generator(None), episodes, context=4, horizon=5, slots=3, progress=False)
    assert data["decoded"].shape == (3, 5, 3, 16, 16) and data["true"].shape == (3, 6, 16, 16, 3)
    refiner = _trained_refiner()
    with torch.no_grad():
        trained = train_refiner.unit_to_uint8(train_refiner.chain(refiner, data))  # [3, 5, 16, 16, 3]
    gen = _generator(refiner)
    for e, ep in enumerate(episodes):
        gen.start(e, ep.frames[:4], ep.actions[:4])
    for h in range(5):
        frames = gen.step({e: ep.actions[4 + h] for e, ep in enumerate(episodes)})
        for e in range(3):
            # the decoded pictures are stored in float16: a level at most
            assert np.abs(frames[e].astype(int) - trained[e, h].astype(int)).max() <= 1
    plain = _generator(None)
    plain.start(0, episodes[0].frames[:4], episodes[0].actions[:4])
    assert not np.array_equal(plain.step({0: episodes[0].actions[4]})[0], trained[0, 0])  # the refiner did something


def _fit(refiner: Refiner, data: dict[str, torch.Tensor], steps: int) -> None:
    """`steps` Adam steps (lr 1e-2) of the chain's squared error to the engine's frames."""
    opt = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    target = train_refiner.to_unit(data["true"][:, 1:])
    for _ in range(steps):
        loss = (train_refiner.chain(refiner, data) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_training_beats_the_decoder_where_the_last_frame_holds():
    """A still world whose decoder loses detail: the refiner learns to keep showing the last frame."""
    torch.manual_seed(0)
    R, H = 6, 4
    true = torch.randint(0, 256, (R, 1, 16, 16, 3), dtype=torch.uint8).expand(R, H + 1, 16, 16, 3).contiguous()
    unit = train_refiner.to_unit(true)
    blurred = torch.nn.functional.avg_pool2d(unit[:, 1:].flatten(0, 1), 3, 1, 1).unflatten(0, (R, H))
    camera, buttons = _still(R * H)
    data = {"decoded": blurred.half(), "first_decoded": blurred[:, 0].half(), "true": true,
            "shown": true, "buttons": buttons.reshape(R, H, -1), "camera": camera.reshape(R, H, 2)}
    refiner = Refiner(RefinerConfig(width=4, blocks=1))
    before = train_refiner.evaluate(refiner, data)
    _fit(refiner, data, 40)
    after = train_refiner.evaluate(refiner, data)
    assert after["refiner_h1-4"] > before["refiner_h1-4"] + 3.0
    assert after["refiner_h1-4"] > after["decoded_h1-4"] + 3.0


def _interrupted_run_resumes(args, whole, out, capsys, objectives_per_step: int = 1):
    """A run stopped after its first checkpoint, given the same command again, ends with the weights of the
    run that was never stopped (the optimizer, the schedule and the rollouts' draw resume with it).
    `objectives_per_step`: the training objectives a step computes (2 with still rollouts)."""
    shutil.rmtree(out / "last"), shutil.rmtree(out / "best"), (out / "eval.jsonl").unlink()
    real, calls = train_refiner.objective, []

    def stops_at_step_3(*a, **k):
        calls.append(torch.is_grad_enabled())  # evaluation runs it too, without gradients
        if sum(calls) == 2 * objectives_per_step + 1:  # in step 3
            raise KeyboardInterrupt
        return real(*a, **k)

    train_refiner.objective = stops_at_step_3
    try:
        with pytest.raises(KeyboardInterrupt):
            cli_main(args + ["--out", str(out)])
    finally:
        train_refiner.objective = real
    assert json.loads((out / "last" / "config.json").read_text())["steps"] == 2
    capsys.readouterr()
    assert cli_main(args + ["--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "reusing" in said and "resumed" in said and "at step 2" in said
    for name in ("last", "best"):
        mine, theirs = (Refiner.load(d / name).state_dict() for d in (out, whole))
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), name
    assert [json.loads(line)["step"] for line in (out / "eval.jsonl").read_text().splitlines()] == [2, 4]
    with pytest.raises(SystemExit, match="nothing to train"):
        cli_main(args + ["--out", str(out)])
    saved = json.loads((out / "last" / "config.json").read_text())
    (out / "last" / "config.json").write_text(json.dumps({**saved, "steps": 2}))  # as if stopped while saving
    with pytest.raises(SystemExit, match="stopped while saving"):
        cli_main(args + ["--out", str(out), "--steps", "6"])
    (out / "last" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match="use a new --out"):
        cli_main(args + ["--out", str(out), "--steps", "6", "--width", "8"])


def _tiny_world(tmp_path) -> tuple[object, dict, list[str]]:
    """A tiny untrained world checkpoint at 16x16 with train/heldout shards -> (its DiT, its config, the
    train-refiner arguments that use them, --out aside)."""
    torch.manual_seed(0)
    model = build_dit("tiny")
    Tokenizer(preset("tiny")).save(tmp_path / "tokenizer")
    config = {"kind": "world_model", "model": model.config_dict(), "tokenizer": "../tokenizer",
              "resolution": [16, 16], "generator": {"window_frames": 4, "steps": 2}}
    save_checkpoint(tmp_path / "world", model.state_dict(), config)
    rng = np.random.default_rng(0)
    for name, seeds in (("train", [1, 2]), ("heldout", [100])):
        write_shard(tmp_path / name / "shard_00000.npz",
                    [Episode(rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8), [NOOP] + [Action(yaw=2.0)] * 11,
                             s, "plains", "test", "a test world") for s in seeds])
    return model, config, ["train-refiner", "--checkpoint", str(tmp_path / "world"), "--data", str(tmp_path / "train"),
                           "--heldout", str(tmp_path / "heldout"), "--context", "4", "--horizon", "4",
                           "--starts", "2", "--steps", "4", "--batch-size", "2", "--eval-every", "2", "--width", "4",
                           "--blocks", "1", "--edge-weight", "0.5", "--threads", "1"]


def test_train_refiner_command_and_the_checkpoint_that_names_its_refiner(tmp_path, capsys):
    model, config, args = _tiny_world(tmp_path)
    out = tmp_path / "run"
    args = args + ["--out", str(out)]
    assert cli_main(args) == 0
    figures = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [f["step"] for f in figures] == [2, 4]
    assert Refiner.load(out / "best").config.width == 4
    kept = json.loads((out / "best" / "config.json").read_text())["figures"]
    assert kept["objective"] == min(f["objective"] for f in figures)  # best = the lowest held-out objective
    assert 0 < kept["refiner_sharpness_ratio_h1-16"] and 0 < kept["shown_sharpness_ratio_h1-16"]
    assert cli_main(args + ["--out", str(tmp_path / "again")]) == 0  # the rollouts are kept and reused
    assert "reusing" not in capsys.readouterr().out
    _interrupted_run_resumes(args, out, tmp_path / "again", capsys)
    # rollouts made with other generator options (as eval's --generator): kept with them, not reused
    assert cli_main(args + ["--out", str(tmp_path / "one-step"), "--steps", "2", "--generator", "steps=1"]) == 0
    assert json.loads((tmp_path / "one-step" / "best" / "config.json").read_text())["train"]["world_generator"]["steps"] == 1
    for bad, said in (("bogus=1", "unknown generator option"), ("refiner=x", "without a refiner")):
        with pytest.raises(SystemExit, match=said):
            cli_main(args + ["--out", str(tmp_path / "bad"), "--generator", bad])
    # a checkpoint names its refiner next to its config; a command line names one as typed, or none
    config["generator"]["refiner"] = "refiner"
    save_checkpoint(tmp_path / "world", model.state_dict(), config)
    Refiner.load(out / "best").save(tmp_path / "world" / "refiner")
    assert Generator.from_checkpoint(tmp_path / "world").refiner is not None
    assert Generator.from_checkpoint(tmp_path / "world", refiner="none").refiner is None
    assert Generator.from_checkpoint(tmp_path / "world", refiner=str(out / "last")).refiner is not None
    with pytest.raises(ValueError, match="refiner: .* is not a folder"):
        generator_config(config, tmp_path / "world", refiner=str(tmp_path / "missing"))


def test_still_episodes_are_the_policys_play_then_a_player_standing_still():
    seeds, context, still = [3, 4], 4, 30
    episodes = still_episodes(seeds, context, still, (16, 16), warmup=5, progress=False)
    played = engine_episodes(seeds, context, (16, 16), warmup=5, progress=False)
    for ep, ref in zip(episodes, played):
        assert ep.frames.shape == (context + still, 16, 16, 3) and len(ep.actions) == context + still
        assert np.array_equal(ep.frames[:context], ref.frames) and ep.actions[:context] == ref.actions
        assert all(a == NOOP for a in ep.actions[context:])
        assert np.array_equal(ep.frames[-1], ep.frames[-2])  # settled: the engine's picture no longer changes


def test_still_rollouts_train_beside_the_others_and_choose_best(tmp_path, capsys):
    _, _, args = _tiny_world(tmp_path)
    out = tmp_path / "still"
    still = ["--still-seeds", "3-4", "--still-heldout-seeds", "5", "--still-horizon", "6", "--still-batch", "2"]
    assert cli_main(args + ["--out", str(out)] + still) == 0
    assert cli_main(args + ["--out", str(tmp_path / "again")] + still) == 0
    _interrupted_run_resumes(args + still, out, tmp_path / "again", capsys, objectives_per_step=2)
    assert (out / "rollouts-still-train.safetensors").is_file() and (out / "rollouts-still-heldout.safetensors").is_file()
    figures = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    for f in figures:
        assert f["still_objective"] > 0 and f["objective"] > f["still_objective"]  # both parts, weight 1
        assert 0 < f["still_refiner_sharpness_ratio_last"] and f["still_shown_last_psnr"] > 0
    settings = json.loads((out / "best" / "config.json").read_text())["train"]
    assert settings["still_train_rollouts"] == 2 and settings["still_heldout_rollouts"] == 1
    # best/ is chosen on the held-out objective with the still rollouts' objective added at its weight
    refiner = Refiner.load(out / "best")
    heldout, still_heldout = (load_file(str(out / f"rollouts-{n}.safetensors")) for n in ("heldout", "still-heldout"))
    by_weight = [train_refiner.evaluate(refiner, heldout, edge_weight=0.5, still=still_heldout, still_weight=w)
                 for w in (0.0, 1.0, 2.0)]
    assert by_weight[0]["objective"] == pytest.approx(train_refiner.evaluate(refiner, heldout, edge_weight=0.5)["objective"])
    for w, f in enumerate(by_weight):
        assert f["objective"] == pytest.approx(by_weight[0]["objective"] + w * f["still_objective"], abs=2e-5)
    assert by_weight[1]["objective"] == json.loads((out / "best" / "config.json").read_text())["figures"]["objective"]
    # --init starts from a refiner's weights (with a zero learning rate they are what the run ends with)
    assert cli_main(args + ["--out", str(tmp_path / "init"), "--init", str(out / "best"), "--lr", "0"]) == 0
    mine, theirs = (Refiner.load(d).state_dict() for d in (tmp_path / "init" / "last", out / "best"))
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    with pytest.raises(SystemExit, match="--still-batch 3 needs"):
        cli_main(args + ["--out", str(tmp_path / "few")] + still + ["--still-batch", "3"])
    with pytest.raises(SystemExit, match="must be >= 1"):
        cli_main(args + ["--out", str(tmp_path / "none")] + still + ["--still-batch", "0"])
    with pytest.raises(SystemExit, match="neither an integer"):
        cli_main(args + ["--out", str(tmp_path / "bad")] + ["--still-seeds", "x"])
    with pytest.raises(SystemExit, match="not the"):
        cli_main(args + ["--out", str(tmp_path / "init8"), "--init", str(out / "best"), "--width", "8"])


def test_the_adversarial_term_trains_a_discriminator_that_resumes_with_the_run(tmp_path, capsys):
    _, _, args = _tiny_world(tmp_path)
    plain = tmp_path / "plain"
    assert cli_main(args + ["--out", str(plain), "--residual-max", "0.25"]) == 0
    args = args + ["--residual-max", "0.25", "--adv-weight", "0.5", "--disc-lr", "1e-3"]
    out = tmp_path / "adv"
    assert cli_main(args + ["--out", str(out)]) == 0
    assert (out / "last" / "disc.safetensors").is_file() and (out / "last" / "disc_optim.safetensors").is_file()
    mine, theirs = (Refiner.load(d / "last").state_dict() for d in (out, plain))
    assert any(not torch.equal(mine[k], theirs[k]) for k in theirs)  # the term moved the refiner
    # stopped and resumed, the run ends where the one never stopped does: the discriminator resumes too
    assert cli_main(args + ["--out", str(tmp_path / "again")]) == 0
    _interrupted_run_resumes(args, out, tmp_path / "again", capsys)
    with pytest.raises(SystemExit, match="--adv-weight must be >= 0"):
        cli_main(args + ["--out", str(tmp_path / "bad"), "--adv-weight", "-1"])
    # --init takes another --residual-max: the correction is a gain, not a shape
    assert cli_main(args + ["--out", str(tmp_path / "init"), "--init", str(plain / "best"), "--residual-max", "0.1"]) == 0


def test_shift_pixels_samples_each_pixel_at_its_shifted_place():
    from simulator.models.refiner import shift_pixels

    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    shift = torch.zeros(2, 2, 8, 8)
    assert torch.allclose(shift_pixels(shift, (images, "zeros"))[0], images)
    shift[:, 0] = 1.0  # one pixel right of each pixel: the picture moves one pixel left
    out, ones = shift_pixels(shift, (images, "zeros"), (torch.ones_like(images[:, :1]), "border"))
    assert torch.allclose(out[..., :-1], images[..., 1:]) and (out[..., -1] == 0).all() and (ones == 1).all()
    shift[:, 0], shift[:, 1] = 0.0, -0.5  # half a pixel up: the mean of the two rows
    assert torch.allclose(shift_pixels(shift, (images, "border"))[0][:, :, 1:], (images[:, :, 1:] + images[:, :, :-1]) / 2)


def test_a_refiner_learns_the_shift_the_move_does_not_make():
    """A texture that slides one pixel a tick as the player steps sideways (the move knows only turns and
    walking forward), its decoder blurred: only a refiner with the shift field carries the last frame's detail along."""
    torch.manual_seed(0)
    R, H, S = 6, 4, 16
    texture = torch.randint(0, 256, (R, S, S + H + 1, 3), dtype=torch.uint8)
    true = torch.stack([texture[:, :, t:t + S] for t in range(H + 1)], dim=1)  # [R, H + 1, S, S, 3]
    unit = train_refiner.to_unit(true)
    blurred = torch.nn.functional.avg_pool2d(unit[:, 1:].flatten(0, 1), 5, 1, 2).unflatten(0, (R, H))
    hot, cam = encode_many([Action(left=True)] * (R * H))
    camera, buttons = torch.from_numpy(cam), torch.from_numpy(hot)
    data = {"decoded": blurred.half(), "first_decoded": torch.nn.functional.avg_pool2d(unit[:, 0], 5, 1, 2).half(),
            "true": true, "shown": true, "buttons": buttons.reshape(R, H, -1), "camera": camera.reshape(R, H, 2)}
    scores = {}
    for flow in (0.0, 2.0):
        torch.manual_seed(0)
        refiner = Refiner(RefinerConfig(width=4, blocks=1, residual_max=0.0, flow_max=flow))
        _fit(refiner, data, 60)
        scores[flow] = train_refiner.evaluate(refiner, data)["refiner_h1-4"]
    assert scores[2.0] > scores[0.0] + 3.0, scores
    # its weights are the same refiner's plus the field's: one without it starts one with it, shifting nothing
    plain = Refiner(RefinerConfig(width=4, blocks=1))
    flowing = Refiner(RefinerConfig(width=4, blocks=1, flow_max=2.0))
    assert flowing.load_state_dict(plain.state_dict(), strict=False).missing_keys == ["flow.weight", "flow.bias"]
    cam, hot = _still(R)
    args = (data["decoded"][:, 0].float(), unit[:, 0], data["first_decoded"].float(), cam, hot)
    assert torch.allclose(flowing(*args), plain(*args), atol=1e-6)
    assert torch.allclose(flowing(*args[:3], data["camera"][:, 0], data["buttons"][:, 0]),
                          plain(*args[:3], data["camera"][:, 0], data["buttons"][:, 0]), atol=1e-6)
    # the field works where the player moves: standing still, even a field that shifts shifts nothing
    with torch.no_grad():
        flowing.flow.bias.fill_(1.0)
    assert torch.allclose(flowing(*args), plain(*args), atol=1e-6)
    walk, turn = (encode_many([a] * R) for a in (Action(forward=True), Action(yaw=5.0)))
    for hot, cam in (walk, turn):
        moved_args = (*args[:3], torch.from_numpy(cam), torch.from_numpy(hot))
        assert not torch.allclose(flowing(*moved_args), plain(*moved_args), atol=1e-3)
