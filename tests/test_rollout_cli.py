"""Headless rollouts: the `patchworld rollout` command, replay determinism, continuing a recording,
and the dream backend over a tiny untrained world model (batched slots, start conditions, serving)."""

import json

import numpy as np
import pytest
import torch

from client.net import Client
from simulator.actions import NOOP, Action, save_actions
from simulator.checkpoint import save_checkpoint
from simulator.cli import main as cli
from simulator.models.dit import build_dit
from simulator.models.tokenizer import Tokenizer, preset
from simulator.rollout.backend import DreamBackend, DreamConfig, EngineBackend, StartCondition
from simulator.rollout.recorder import read_recording
from simulator.serve import protocol as P
from simulator.serve.server import ServerConfig, ServerThread
from simulator.world.engine import WORLD_PRESETS

ACTIONS = [NOOP] + [Action(forward=True, yaw=(4.0, -4.0, 0.0)[t % 3], jump=t % 7 == 0) for t in range(1, 24)]


def _engine_frames(seed: int, actions: list[Action]) -> np.ndarray:
    backend = EngineBackend(resolution=(24, 32), world_config=WORLD_PRESETS["tiny"])
    slot = backend.open(StartCondition(seed=seed))
    frames = [backend.frame(slot)] + [backend.step({slot: a})[slot] for a in actions[1:]]
    return np.stack(frames)


def test_replay_is_deterministic():
    a, b = _engine_frames(11, ACTIONS), _engine_frames(11, ACTIONS)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, _engine_frames(12, ACTIONS))  # the seed matters
    assert not np.array_equal(a[-1], a[0])  # and the actions did something


def test_rollout_command_writes_a_recording_that_replays_and_continues(tmp_path, capsys):
    save_actions(tmp_path / "actions.jsonl", ACTIONS)
    out = tmp_path / "rec"
    assert cli(["rollout", "--engine", "--resolution", "24x32", "--seed", "11", "--actions",
                str(tmp_path / "actions.jsonl"), "--frames", "30", "--out", str(out)]) == 0
    assert "24 actions for 30 frames" in capsys.readouterr().out
    rec = read_recording(out)
    assert len(rec.frames) == 30 and rec.actions[:24] == ACTIONS
    assert rec.actions[24:] == [NOOP] * 6 and rec.metadata["seed"] == 11 and rec.metadata["start"] == {"seed": 11}
    # the recording's own JSONL replays it: same frames as a second rollout from its actions
    again = tmp_path / "again"
    assert cli(["rollout", "--engine", "--resolution", "24x32", "--seed", "11", "--actions",
                str(out / "recording.jsonl"), "--frames", "30", "--out", str(again)]) == 0
    assert np.array_equal(read_recording(again).frames, rec.frames)  # same frames in, same encoder: same mp4
    # continuing the recording on the engine starts exactly where it ended
    backend = EngineBackend(resolution=(24, 32))
    slot = backend.open(StartCondition(recording=out))
    reference = EngineBackend(resolution=(24, 32))
    ref = reference.open(StartCondition(seed=11))
    for action in rec.actions[1:]:
        reference.step({ref: action})
    assert np.array_equal(backend.frame(slot), reference.frame(ref))
    with pytest.raises(ValueError, match="not an image"):
        backend.open(StartCondition(image=np.zeros((8, 8, 3), np.uint8)))


def test_missing_checkpoint_says_what_to_do(tmp_path, capsys):
    assert cli(["rollout", "--checkpoint", str(tmp_path / "none"), "--frames", "3", "--out", str(tmp_path / "o")]) == 1
    assert "no world-model checkpoint" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = build_dit("tiny")
    with torch.no_grad():  # random, not copy-last, so the actions and noise matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    tokenizer = Tokenizer(preset("tiny"))
    tokenizer.save(root / "tokenizer")
    save_checkpoint(root / "world", model.state_dict(),
                    {"kind": "world_model", "model": model.config_dict(), "tokenizer": "../tokenizer",
                     "resolution": [16, 16], "generator": {"window_frames": 4, "steps": 2}})
    return root / "world"


def _dream(checkpoint, sessions: int = 2) -> DreamBackend:
    return DreamBackend.from_checkpoint(checkpoint, DreamConfig(context_frames=2, max_sessions=sessions,
                                                                world_preset="tiny"))


def test_dream_backend_batches_slots_and_is_deterministic(tiny_checkpoint):
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)

    def run(backend: DreamBackend) -> list[dict[int, np.ndarray]]:
        a = backend.open(StartCondition(seed=3))
        b = backend.open(StartCondition(image=image))  # image to world: fitted to 16x16
        return [backend.step({a: act, b: act}) for act in ACTIONS[1:4]]

    first, second = run(_dream(tiny_checkpoint)), run(_dream(tiny_checkpoint))
    assert first[0][0].shape == (16, 16, 3) and first[0][0].dtype == np.uint8
    for x, y in zip(first, second):
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
    backend = _dream(tiny_checkpoint)
    slot = backend.open(StartCondition(seed=3))
    backend.step({slot: Action(yaw=20.0)})
    backend.reset(slot, StartCondition(seed=3))
    assert np.array_equal(backend.step({slot: ACTIONS[1]})[slot], first[0][0])  # reset = fresh start
    single = _dream(tiny_checkpoint, sessions=1)
    single.open(StartCondition(image=image))
    with pytest.raises(RuntimeError, match="all 1 session slots"):
        single.open(StartCondition(image=image))


def test_dream_backend_serves_and_rolls_out(tiny_checkpoint, tmp_path):
    with ServerThread(_dream(tiny_checkpoint), ServerConfig(port=0)) as server:
        with Client(server.url, start=P.Start(seed=5)) as player:
            assert player.welcome["backend"] == "dream" and player.welcome["width"] == 16
            seq = player.send_action(Action(forward=True))
            got = player.wait_frame()
            while got is not None and got.frame.seq < seq:
                got = player.wait_frame()
            assert got is not None and got.frame.action.forward and got.image.shape == (16, 16, 3)
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(a) for a in ({}, {"forward": True}, {"yaw": 3})))
    out = tmp_path / "dream"
    assert cli(["rollout", "--checkpoint", str(tiny_checkpoint), "--seed", "2", "--actions", str(tmp_path / "a.jsonl"),
                "--frames", "5", "--out", str(out)]) == 0
    rec = read_recording(out)
    assert len(rec.frames) == 5 and rec.metadata["backend"] == "dream"
    assert rec.metadata["checkpoint"] == str(tiny_checkpoint)
    # continuing a dream recording primes the model with its last frames
    backend = _dream(tiny_checkpoint)
    slot = backend.open(StartCondition(recording=out))
    assert backend.step({slot: NOOP})[slot].shape == (16, 16, 3)


def test_long_dream_session_keeps_its_cache_flat(tiny_checkpoint):
    backend = _dream(tiny_checkpoint, sessions=1)
    slot = backend.open(StartCondition(seed=1))
    cache = backend.generator.cache
    before = backend.generator.describe()["cache_bytes"]
    for tick in range(3 * backend.generator.config.window_frames):
        backend.step({slot: ACTIONS[1 + tick % 20]})
        assert int(cache.length[slot]) <= cache.size  # tokens of the last window_frames frames at most
    assert int(cache.length[slot]) == cache.size  # full: the oldest frames were dropped, not kept
    assert backend.generator.describe()["cache_bytes"] == before  # preallocated: nothing grows with time


def test_dream_backend_passes_its_context_mode_to_the_generator(tiny_checkpoint):
    assert _dream(tiny_checkpoint).generator.config.context == "reuse"  # live play: one pass less per tick
    trained = DreamBackend.from_checkpoint(tiny_checkpoint, DreamConfig(context_frames=2, world_preset="tiny",
                                                                        context="pass"))
    assert trained.generator.config.context == "pass"
    slot = trained.open(StartCondition(seed=1))
    frames_in_cache = int(trained.generator.frame_index[slot])
    trained.step({slot: NOOP})
    assert int(trained.generator.frame_index[slot]) == frames_in_cache  # its cache pass waits ...
    trained.idle()  # ... for the time between ticks
    assert int(trained.generator.frame_index[slot]) == frames_in_cache + 1


def test_backend_options_reach_the_generator(tiny_checkpoint, monkeypatch):
    """What `play`, `serve` and `rollout` take on the command line ends up in the generator."""
    import argparse

    from simulator.serve.cli import add_backend_arguments, make_backend

    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    threads = torch.get_num_threads()
    try:
        backend = make_backend(parser.parse_args(["--checkpoint", str(tiny_checkpoint), "--guidance", "1.5",
                                                  "--steps", "3", "--sample-seed", "4", "--threads", "1",
                                                  "--prev-noise", "0.1", "--no-compile"]))
    finally:
        torch.set_num_threads(threads)
    config = backend.generator.config
    assert (config.guidance, config.steps, config.seed, config.context, config.compile) == (1.5, 3, 4, "reuse", False)
    assert config.prev_noise == 0.1
    with pytest.raises(SystemExit, match="prev_noise is a noise level"):  # out of range: said, not a traceback
        make_backend(parser.parse_args(["--checkpoint", str(tiny_checkpoint), "--prev-noise", "2", "--no-compile",
                                        "--threads", str(threads)]))
    with pytest.raises(SystemExit, match="does not hold a world-model checkpoint"):  # a tokenizer's folder
        make_backend(parser.parse_args(["--checkpoint", str(tiny_checkpoint.parent / "tokenizer"), "--no-compile",
                                        "--threads", str(threads)]))

    def broken(*args, **kwargs):
        raise ValueError("a bug while loading")

    with monkeypatch.context() as patch, pytest.raises(ValueError, match="a bug while loading"):
        patch.setattr(DreamBackend, "from_checkpoint", broken)  # only the options' errors become a message
        make_backend(parser.parse_args(["--checkpoint", str(tiny_checkpoint), "--no-compile", "--threads", str(threads)]))
    plain = make_backend(parser.parse_args(["--checkpoint", str(tiny_checkpoint), "--threads", str(threads)]))
    assert plain.generator.config.guidance == 0.0  # the checkpoint's (none saved: off)
    assert plain.generator.config.compile  # live play on CPU compiles (and warms up: the stream is free again)
    assert plain.generator.active == [False] * plain.max_sessions


def test_dream_backend_abandons_a_step_without_a_trace(tiny_checkpoint):
    """DreamBackend.step(abort=...) hands the generator's abort through: an abandoned step returns
    None and keeps the slot's frame; the stream then goes on as if it had not been asked for."""
    plain, interrupted = _dream(tiny_checkpoint, sessions=1), _dream(tiny_checkpoint, sessions=1)
    a, b = plain.open(StartCondition(seed=3)), interrupted.open(StartCondition(seed=3))
    before = interrupted.frame(b).copy()
    assert interrupted.step({b: Action(jump=True)}, abort=lambda: True) is None
    assert np.array_equal(interrupted.frame(b), before)
    for act in ACTIONS[1:4]:
        assert np.array_equal(plain.step({a: act})[a], interrupted.step({b: act}, abort=lambda: False)[b])
