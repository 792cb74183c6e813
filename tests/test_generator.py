"""The streaming generator: determinism, flat cache memory, checkpoint loading, slot validation."""

import dataclasses
import re
import warnings

import numpy as np
import pytest
import torch

from simulator.actions import NOOP, Action, encode_many
from simulator.checkpoint import save_checkpoint
from simulator.models.dit import build_dit
from simulator.models.tokenizer import Tokenizer, preset
from simulator.rollout.generator import Generator, GeneratorConfig


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    model = build_dit("tiny")
    with torch.no_grad():  # a random (not copy-last) model, so every input matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model, Tokenizer(preset("tiny"))


def _context(T: int = 3, H: int = 16, W: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8), [NOOP] + [Action(forward=True)] * (T - 1)


def _rollout(gen: Generator, slots: list[int], ticks: int) -> list[dict[int, np.ndarray]]:
    frames, actions = _context()
    for s in slots:
        gen.start(s, frames, actions)
    return [gen.step({s: Action(yaw=5.0 * (t % 3 - 1), forward=True) for s in slots}) for t in range(ticks)]


def test_same_seed_same_frames_and_slots_independent():
    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2, seed=7)
    a = _rollout(Generator(model, tok, cfg, batch_size=2), [0, 1], 5)
    b = _rollout(Generator(model, tok, cfg, batch_size=2), [0, 1], 5)
    for fa, fb in zip(a, b):
        assert set(fa) == {0, 1}
        assert fa[0].shape == (16, 16, 3) and fa[0].dtype == np.uint8
        np.testing.assert_array_equal(fa[0], fb[0])
        np.testing.assert_array_equal(fa[1], fb[1])
    assert any(not np.array_equal(fa[0], fa[1]) for fa in a)  # slots draw their own noise
    other = _rollout(Generator(model, tok, GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2, seed=8)),
                     [0], 5)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, other))


def test_cache_memory_stays_flat():
    model, tok = _parts()
    gen = Generator(model, tok, GeneratorConfig(resolution=(16, 16), window_frames=3, steps=1), batch_size=2)
    before = gen.cache.nbytes()
    pointers = (gen.cache.k.data_ptr(), gen.cache.v.data_ptr())
    _rollout(gen, [1], 12)  # four times the window
    assert gen.cache.nbytes() == before
    assert (gen.cache.k.data_ptr(), gen.cache.v.data_ptr()) == pointers
    assert int(gen.cache.length[1]) == 3 * gen.cache.frame_tokens  # full window, no more
    assert int(gen.cache.length[0]) == 0  # the idle slot was untouched
    assert int(gen.frame_index[1]) == 2 + 11  # the last frame's cache pass waits for flush()
    gen.flush()
    assert int(gen.frame_index[1]) == 2 + 12
    assert (gen.cache.k.data_ptr(), gen.cache.v.data_ptr()) == pointers


def test_flushing_between_ticks_does_not_change_frames():
    """A server runs each tick's cache pass between ticks (flush); the frames must not depend on it."""
    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=3, steps=2, seed=1)
    lazy, eager = Generator(model, tok, cfg, batch_size=2), Generator(model, tok, cfg, batch_size=2)
    frames, actions = _context()
    for gen in (lazy, eager):
        gen.start(0, frames, actions)
        gen.start(1, frames[:2], actions[:2])
    for t in range(6):
        step = {0: Action(yaw=5.0 * (t % 3 - 1)), 1: Action(forward=True)} if t != 3 else {1: NOOP}
        a, b = lazy.step(step), eager.step(step)
        eager.flush()
        for slot in step:
            np.testing.assert_array_equal(a[slot], b[slot])


def test_kept_modulations_give_the_frames_of_computed_ones(monkeypatch):
    """A tick takes its adaLN modulations from the generator's cache when the action came before: the
    frames equal those of a generator that computes them every tick, and the cache keeps to its bytes."""
    import simulator.rollout.generator as generator_module

    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=3, steps=2, seed=1)
    frames, actions = _context()
    ticks = [{0: Action(forward=True)}, {0: Action(yaw=5.0)}, {0: Action(forward=True)}, {0: NOOP},
             {0: Action(forward=True)}, {0: Action(yaw=5.0)}]
    kept = Generator(model, tok, cfg)
    kept.start(0, frames, actions)
    with_cache = [kept.step(t)[0] for t in ticks]
    assert len(kept._modulation_cache) == 4  # the priming passes' one action, then the ticks' 3 distinct ones
    monkeypatch.setattr(generator_module, "MODULATION_CACHE_BYTES", 0)
    computed = Generator(model, tok, cfg)
    computed.start(0, frames, actions)
    for tick, frame in zip(ticks, with_cache):
        np.testing.assert_array_equal(computed.step(tick)[0], frame)
    assert not computed._modulation_cache
    size = next(iter(kept._modulation_cache.values()))[1]
    monkeypatch.setattr(generator_module, "MODULATION_CACHE_BYTES", 2 * size)  # room for two entries' worth
    small = Generator(model, tok, cfg)
    small.start(0, frames, actions)
    for tick in ticks:
        small.step(tick)
        assert small._modulation_bytes <= 2 * size


def test_reused_context_pass_is_deterministic_and_differs():
    model, tok = _parts()
    cfg = dict(resolution=(16, 16), window_frames=4, steps=2, seed=7)
    a = _rollout(Generator(model, tok, GeneratorConfig(**cfg, context="reuse")), [0], 4)
    b = _rollout(Generator(model, tok, GeneratorConfig(**cfg, context="reuse")), [0], 4)
    base = _rollout(Generator(model, tok, GeneratorConfig(**cfg)), [0], 4)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa[0], fb[0])
    np.testing.assert_array_equal(a[0][0], base[0][0])  # the first frame is made before any cache pass
    assert any(not np.array_equal(fa[0], fc[0]) for fa, fc in zip(a, base))
    with pytest.raises(ValueError, match="context 'both'"):
        GeneratorConfig(context="both")
    with pytest.raises(ValueError, match="pure noise"):
        GeneratorConfig(context="reuse", steps=1)


def test_from_checkpoint_and_validation(tmp_path):
    model, tok = _parts()
    tok.save(tmp_path / "tokenizer")
    save_checkpoint(tmp_path / "world", model.state_dict(),
                    {"kind": "world_model", "model": model.config_dict(), "tokenizer": "../tokenizer",
                     "resolution": [16, 16], "generator": {"window_frames": 4, "steps": 2}})
    gen = Generator.from_checkpoint(tmp_path / "world", batch_size=2, seed=3)
    assert gen.resolution == (16, 16) and gen.config.window_frames == 4 and gen.config.seed == 3
    frames, actions = _context()
    gen.start(0, frames, actions)
    assert gen.step({0: NOOP})[0].shape == (16, 16, 3)
    with pytest.raises(ValueError, match="slot 1 was not started"):
        gen.step({1: NOOP})
    with pytest.raises(ValueError, match="slot 5 is outside"):
        gen.start(5, frames, actions)
    with pytest.raises(ValueError, match="expected uint8"):
        gen.start(1, frames[:, :8], actions)
    with pytest.raises(ValueError, match="must match"):
        gen.start(1, frames, actions[:1])
    with pytest.raises(ValueError, match="unknown generator option"):
        Generator.from_checkpoint(tmp_path / "world", steeps=3)
    gen.release(0)
    with pytest.raises(ValueError, match="not started"):
        gen.step({0: NOOP})


@pytest.mark.parametrize("context,zoom", [("pass", 0.0), ("reuse", 0.0), ("pass", 0.05)])
def test_generator_warps_the_previous_latent_as_training_does(context, zoom):
    """A fresh camera-warp model is copy-warped-last (its correction starts at zero): with no context
    noise, one tick must turn the slot's previous latent into exactly that latent moved by the tick's
    action (the warp training applies: the turn, and with walk_zoom the walk), whatever noise the
    sampler draws."""
    torch.manual_seed(0)
    model = build_dit("tiny", camera_warp_fov=70.0, walk_zoom=zoom).eval()
    gen = Generator(model, Tokenizer(preset("tiny")), GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2,
                                                                      context_noise=0.0, context=context,
                                                                      detail_carry=1.0, detail_gate=0.2))
    frames, actions = _context()
    gen.start(0, frames, actions)
    prev = gen.prev[0].clone()
    turn = Action(forward=True, yaw=8.0, pitch=-3.0)
    gen.step({0: turn})
    gen.flush()
    hot, bins = encode_many([turn.quantized()])
    camera, buttons = torch.from_numpy(bins)[:, None], torch.from_numpy(hot)[:, None]  # [1, 1, 2], [1, 1, BUTTON_DIM]
    expected = model.warp_previous(prev[None, None], camera, buttons)[0, 0]
    torch.testing.assert_close(gen.prev[0], expected, rtol=0, atol=1e-5)
    assert (expected - prev).abs().max() > 1e-2  # the turn did move it
    if zoom:  # the walk is part of it: the turn alone gives another latent
        alone = build_dit("tiny", camera_warp_fov=70.0).warp_previous(prev[None, None], camera, buttons)[0, 0]
        assert (expected - alone).abs().max() > 100 * 1e-5  # far beyond the tolerance above


def test_prev_noise_sets_the_previous_latent_input_level_apart_from_the_cache(monkeypatch):
    """The network adds its correction to its previous-latent input: with prev_noise 0 a fresh
    (copy-warped-last) model hands on the last latent exactly while the finished frame still enters
    the cache at context_noise; without it the input is noised at context_noise, and so is what a
    fresh model hands on."""
    import simulator.rollout.generator as generator_module

    levels, original = [], generator_module.add_noise  # the levels the generator noises latents at, in order

    def spy(x, level, noise):
        levels.append(float(level.flatten()[0]))
        return original(x, level, noise)

    monkeypatch.setattr(generator_module, "add_noise", spy)
    torch.manual_seed(0)
    model = build_dit("tiny", camera_warp_fov=70.0).eval()
    frames, actions = _context()
    handed_on = {}
    for prev_noise in (None, 0.0, 0):
        gen = Generator(model, Tokenizer(preset("tiny")), GeneratorConfig(
            resolution=(16, 16), window_frames=4, steps=2, context_noise=0.05, prev_noise=prev_noise))
        gen.start(0, frames, actions)
        prev = gen.prev[0].clone()
        levels.clear()
        gen.step({0: NOOP})
        gen.flush()
        handed_on[prev_noise] = (gen.prev[0] - prev).abs().max()
        # one tick: the previous latent's noise, then the finished frame's for its cache pass
        assert levels == pytest.approx([0.05 if prev_noise is None else 0.0, 0.05])
    assert handed_on[0.0] < 1e-5 and handed_on[0] < 1e-5  # ints parse as levels too
    assert handed_on[None] > 1e-2  # the noise at 0.05 that a fresh model does not remove
    for bad in (-0.1, 1.0, True):
        with pytest.raises(ValueError, match="prev_noise"):
            GeneratorConfig(prev_noise=bad)


def test_clean_base_model_hands_on_its_last_latent_through_a_noised_input():
    """A clean_base model adds its correction to the clean previous latent: fresh (zero correction),
    it hands on the last latent exactly although its input is noised at prev_noise, with or without
    history guidance (whose two passes run in one batch)."""
    torch.manual_seed(0)
    model = build_dit("tiny", camera_warp_fov=70.0, clean_base=True).eval()
    frames, actions = _context()
    for guidance in (0.0, 1.0):
        gen = Generator(model, Tokenizer(preset("tiny")), GeneratorConfig(
            resolution=(16, 16), window_frames=4, steps=2, context_noise=0.05, prev_noise=0.05,
            guidance=guidance))
        gen.start(0, frames, actions)
        prev = gen.prev[0].clone()
        gen.step({0: NOOP})
        assert (gen.prev[0] - prev).abs().max() < 1e-5


def test_detail_carry_shows_the_true_frame_where_the_model_keeps_its_latent():
    """detail_carry keeps what the decoder misses of the last true frame: a stream whose next
    latent equals the last one (no camera motion) shows that frame itself, not its blurry
    reconstruction; the detail fades by the factor per tick; release forgets it."""
    model, tok = _parts()
    frames, actions = _context()
    gen = Generator(model, tok, GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2, precision="fp32",
                                                detail_carry=1.0))
    gen.start(0, frames, actions)
    rows = torch.tensor([0])
    last = tok.encode(torch.from_numpy(frames[-1:]))
    hot, bins = encode_many([NOOP])
    still, keys = torch.from_numpy(bins)[:, None], torch.from_numpy(hot)[:, None]  # no turn [1, 1, 2], no keys
    plain = tok.decode_frames(last)[0].numpy().astype(int)
    shown = gen._show(rows, last, still, keys)[0].numpy().astype(int)
    assert np.abs(shown - frames[-1].astype(int)).max() <= 1  # the true frame, to rounding
    assert np.abs(plain - frames[-1].astype(int)).mean() > 10  # which the decoder alone is far from
    gen.config.detail_carry = 0.5
    detail = gen.detail[0].clone()
    gen._show(rows, last, still, keys)
    assert torch.allclose(gen.detail[0], 0.5 * detail, atol=1e-5)
    gen.release(0)
    assert gen.detail[0].abs().max() == 0
    with pytest.raises(ValueError, match="detail_carry"):
        GeneratorConfig(detail_carry=1.5)
    with pytest.raises(ValueError, match="detail_gate"):
        GeneratorConfig(detail_gate=-0.1)


def test_detail_carry_stream_is_deterministic_and_differs_from_plain_decoding():
    model, tok = _parts()
    cfg = dict(resolution=(16, 16), window_frames=4, steps=2, precision="fp32")
    carry = [_rollout(Generator(model, tok, GeneratorConfig(**cfg, detail_carry=0.9)), [0], 4) for _ in range(2)]
    plain = _rollout(Generator(model, tok, GeneratorConfig(**cfg)), [0], 4)
    for a, b, c in zip(*carry, plain):
        assert np.array_equal(a[0], b[0])
        assert not np.array_equal(a[0], c[0])


def test_reencode_conditions_the_next_frame_on_the_encoded_shown_frame():
    model, tok = _parts()
    frames, actions = _context()
    cfg = dict(resolution=(16, 16), window_frames=4, steps=2, precision="fp32", detail_carry=0.9)
    prevs = {}
    for reencode in (0.0, 0.25, 1.0):
        gen = Generator(model, tok, GeneratorConfig(**cfg, reencode=reencode))
        gen.start(0, frames, actions)
        shown = gen.step({0: Action(forward=True)})[0]
        gen.flush()
        prevs[reencode] = gen.prev[0].clone()
    encoded = tok.encode(torch.from_numpy(shown[None]))[0]  # the same shown frame in all three
    assert torch.allclose(prevs[1.0], encoded, atol=1e-5) and not torch.allclose(prevs[0.0], encoded, atol=1e-3)
    torch.testing.assert_close(prevs[0.25], 0.75 * prevs[0.0] + 0.25 * encoded, atol=1e-5, rtol=0)
    a, b = (_rollout(Generator(model, tok, GeneratorConfig(**cfg, reencode=1.0)), [0], 4) for _ in range(2))
    plain = _rollout(Generator(model, tok, GeneratorConfig(**cfg)), [0], 4)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))  # deterministic
    assert np.array_equal(a[0][0], plain[0][0]) and not np.array_equal(a[-1][0], plain[-1][0])  # from the 2nd frame
    for bad in (1.5, -0.1, True):
        with pytest.raises(ValueError, match="reencode"):
            GeneratorConfig(reencode=bad)


def test_history_guidance_extrapolates_away_from_the_prediction_without_history():
    """One sampler step, so the frame's latent is the guided prediction itself: the latents at
    guidance 0, 1 and 2 lie on one line, x0 + w (x0 - x0_without_history), whose far end at
    w = -1 would be the pass that saw no cached frames."""
    model, tok = _parts()
    frames, actions = _context()
    cfg = dict(resolution=(16, 16), window_frames=4, steps=1, precision="fp32")
    latents = {}
    for weight in (0.0, 1.0, 2.0):
        gen = Generator(model, tok, GeneratorConfig(**cfg, guidance=weight))
        gen.start(0, frames, actions)
        gen.step({0: Action(yaw=5.0, forward=True)})
        gen.flush()
        latents[weight] = gen.prev[0].clone()
    step = latents[1.0] - latents[0.0]
    assert step.abs().mean() > 1e-3  # the history changes the prediction
    torch.testing.assert_close(latents[2.0] - latents[1.0], step, atol=1e-4, rtol=0)
    a, b = (_rollout(Generator(model, tok, GeneratorConfig(**cfg, guidance=1.5)), [0], 3) for _ in range(2))
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))  # deterministic
    reuse = dict(cfg, steps=2, context="reuse")  # the pass that fills the cache runs apart from its weak twin
    c, d = (_rollout(Generator(model, tok, GeneratorConfig(**reuse, guidance=g)), [0], 3) for g in (1.5, 0.0))
    assert not np.array_equal(c[-1][0], d[-1][0])
    for bad in (-0.5, 11.0, True):
        with pytest.raises(ValueError, match="guidance"):
            GeneratorConfig(guidance=bad)
    with pytest.raises(ValueError, match="guidance_above"):
        GeneratorConfig(guidance=1.0, guidance_above=1.0)


def test_guidance_interval_guides_only_the_passes_above_its_level():
    model, tok = _parts()
    frames, actions = _context()
    gen = Generator(model, tok, GeneratorConfig(resolution=(16, 16), window_frames=4, steps=4, precision="fp32",
                                                guidance=2.0, guidance_above=0.3))  # levels 1, 0.75, 0.5, 0.25
    calls = []
    forward = gen._model.forward_stream
    gen._model.forward_stream = lambda *a, **kw: calls.append(kw.get("history", "with")) or forward(*a, **kw)
    gen.start(0, frames, actions)
    calls.clear()
    gen.step({0: NOOP})
    assert calls == ["both", "both", "both", "with"]


def test_detail_gate_keeps_detail_where_the_picture_stays_and_drops_it_where_it_changes():
    model, tok = _parts()
    with torch.no_grad():  # a decoder whose output follows its latent (untrained residual branches start at zero)
        for p in tok.parameters():
            p.add_(0.1 * torch.randn_like(p))
    frames, actions = _context()
    gen = Generator(model, tok, GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2, precision="fp32",
                                                detail_carry=1.0, detail_gate=0.05))
    gen.start(0, frames, actions)
    hot, bins = encode_many([NOOP])
    rows, still, keys = torch.tensor([0]), torch.from_numpy(bins)[:, None], torch.from_numpy(hot)[:, None]
    last = tok.encode(torch.from_numpy(frames[-1:]))
    detail = gen.detail[0].clone()
    gen._show(rows, last, still, keys)  # the same picture again: nothing changed, the detail stays
    assert torch.allclose(gen.detail[0], detail, atol=1e-5)
    gen._show(rows, last + 3.0 * torch.randn_like(last), still, keys)  # a different picture: the detail goes
    assert gen.detail[0].abs().mean() < 0.2 * detail.abs().mean()


def test_bf16_generator_runs_bf16_weight_copies_with_identical_frames(monkeypatch):
    """Under bf16 the generator runs copies whose linear/conv weights are stored in bf16 (no cast
    per call): frames bit-identical to autocast casting the fp32 weights, and the caller's model
    (a trainer's, in world_eval; the eval's tokenizer figures) keeps its fp32 weights."""
    import simulator.rollout.generator as generator_module

    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2, precision="bf16")
    fast = Generator(model, tok, cfg)
    assert fast.model is model and fast._model.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert fast._model.blocks[0].attn.q_scale.dtype == torch.float32  # norms stay fp32
    assert all(p.dtype == torch.float32 for p in [*model.parameters(), *tok.parameters()])
    monkeypatch.setattr(generator_module, "bf16_weights", lambda module: module)
    cast_per_call = Generator(model, tok, cfg)
    assert cast_per_call._model is model
    for a, b in zip(_rollout(fast, [0], 4), _rollout(cast_per_call, [0], 4)):
        np.testing.assert_array_equal(a[0], b[0])


def test_an_abandoned_step_leaves_no_trace():
    """step(abort=...) that says yes returns None and changes nothing: the stream then gives the
    frames it would have given had the abandoned step never been asked for."""
    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=4, steps=4, seed=3, context="reuse")
    plain, interrupted = Generator(model, tok, cfg), Generator(model, tok, cfg)
    frames, actions = _context()
    for gen in (plain, interrupted):
        gen.start(0, frames, actions)
    asked = []

    def abort_at_second_question() -> bool:
        asked.append(True)
        return len(asked) == 2

    for t in range(4):
        action = {0: Action(yaw=5.0 * (t % 3 - 1), forward=True)}
        if t == 1:
            asked.clear()
            assert interrupted.step({0: Action(jump=True)}, abort=abort_at_second_question) is None
            assert len(asked) == 2  # asked before pass 0, then before pass 1, and abandoned there
        asked.clear()
        got = interrupted.step(action, abort=lambda: asked.append(True) and False)
        assert len(asked) == 2  # only before the first half of the 4 passes
        np.testing.assert_array_equal(got[0], plain.step(action)[0])


def test_latent_rollouts_equal_the_frame_rollouts_latents():
    """start_latents / step_latents (training on the model's own rollouts) run the same tick as start /
    step: same latents, in the order the slots were given."""
    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2, seed=3, precision="fp32")
    frames, actions = _context(T=3)
    ticks = [[Action(yaw=5.0 * (t % 3 - 1), forward=True), Action(pitch=-3.0, jump=t % 2 == 0)] for t in range(4)]
    pixels = Generator(model, tok, cfg, batch_size=2)
    for s in (0, 1):
        pixels.start(s, frames, actions)
    expected = []
    for acts in ticks:
        pixels.step({0: acts[0], 1: acts[1]})
        pixels.flush()  # the finished frames become `prev` in their cache pass
        expected.append(pixels.prev.clone())
    latent = Generator(model, tok, cfg, batch_size=2)
    with torch.inference_mode():
        context = tok.encode(torch.from_numpy(frames)).float()
    hot, bins = encode_many([a.quantized() for a in actions])
    for s in (0, 1):
        latent.start_latents(s, context, torch.from_numpy(hot), torch.from_numpy(bins))
    for acts, want in zip(ticks, expected):
        hot, bins = encode_many([a.quantized() for a in acts[::-1]])
        got = latent.step_latents([1, 0], torch.from_numpy(hot), torch.from_numpy(bins))  # slot 1 first
        torch.testing.assert_close(got, want[[1, 0]])
    with pytest.raises(ValueError, match="context latents"):
        latent.start_latents(0, context[:, :1], torch.from_numpy(hot[:1]), torch.from_numpy(bins[:1]))
    with pytest.raises(ValueError, match="reencode"):
        Generator(model, tok, GeneratorConfig(resolution=(16, 16), reencode=1.0)).step_latents(
            [0], torch.from_numpy(hot[:1]), torch.from_numpy(bins[:1]))


def test_warm_up_leaves_no_trace():
    """`warm_up` (run before play so that a compiled model compiles up front) ticks free slots and
    releases them: the streams started after it give the frames a fresh generator gives."""
    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=4, steps=2, seed=5, context="reuse", detail_carry=1.0)
    warmed = Generator(model, tok, cfg, batch_size=3)
    warmed.warm_up()
    assert warmed.active == [False] * 3 and int(warmed.cache.length.sum()) == 0
    for got, want in zip(_rollout(warmed, [0, 2], 4), _rollout(Generator(model, tok, cfg, batch_size=3), [0, 2], 4)):
        for slot in (0, 2):
            np.testing.assert_array_equal(got[slot], want[slot])


def test_compiled_streaming_pass_equals_the_eager_one(monkeypatch, tmp_path):
    """GeneratorConfig.compile runs the model's streaming pass through torch.compile: the same
    latents (fp32, to rounding) over ticks that fill the cache and run past it, for one stream and two;
    a stream's frames do not depend on whether another ticks beside it, nor on whether its generator
    holds one stream (whose cache the pass reads in place) or more; the caller's model stays
    uncompiled; a second stream needs no package of its own."""
    monkeypatch.setenv("PATCHWORLD_COMPILE_CACHE", str(tmp_path))
    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=2, steps=2, seed=3, precision="fp32", context="reuse")
    eager = Generator(model, tok, cfg, batch_size=2)
    compiled = Generator(model, tok, dataclasses.replace(cfg, compile=True), batch_size=2)
    alone = Generator(model, tok, dataclasses.replace(cfg, compile=True), batch_size=1)
    for name in ("stream_pass", "stream_modulations"):
        assert name not in vars(model) and name in vars(compiled._model)
    frames, actions = _context(T=3)
    for gen in (eager, compiled, alone):
        gen.start(0, frames, actions)
    for t in range(4):  # one stream; then two, each through the one-stream graphs
        if t == 2:
            for gen in (eager, compiled):
                gen.start(1, frames, actions)
        slots = [0, 1] if t >= 2 else [0]
        acts = {s: Action(yaw=5.0 * (t % 3 - 1), forward=s == 0) for s in slots}
        want, got, solo = eager.step(acts), compiled.step(acts), alone.step({0: acts[0]})
        torch.testing.assert_close(compiled.prev, eager.prev, atol=1e-4, rtol=1e-4)
        for s in slots:
            assert np.abs(got[s].astype(int) - want[s].astype(int)).max() <= 1
        np.testing.assert_array_equal(solo[0], got[0])  # (latents: to ~1e-6, batched matmuls round apart)
    packages = sorted(path.name.rsplit("-", 1)[0] for path in tmp_path.glob("*.pt2"))
    assert packages == ["the-modulations", "the-modulations", "the-streaming-pass"]  # priming's and ticks' shapes


def test_compiled_generators_of_two_models_each_run_their_own_weights():
    """The compiled pass freezes its model's weights into the graph, and dynamo keeps graphs per code
    object: a second model's generator must get its own graph, not the first one's constants (it would
    with dynamo's guards on modules skipped)."""
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=2, steps=2, seed=3, precision="fp32", context="reuse")
    frames, actions = _context(T=3)
    for seed in (0, 1):
        model, tok = _parts(seed)
        runs = []
        for compile in (False, True):
            gen = Generator(model, tok, dataclasses.replace(cfg, compile=compile))
            gen.start(0, frames, actions)
            runs.append(_rollout(gen, [0], 3))
        for eager, compiled in zip(*runs):
            assert np.abs(compiled[0].astype(int) - eager[0].astype(int)).max() <= 1


def test_a_compile_that_fails_falls_back_to_the_eager_pass(monkeypatch, tmp_path):
    """Where neither the ahead-of-time build nor torch.compile can work (no C++ compiler for inductor, say),
    the generator warns for each and runs the eager pass: the frames an eager generator makes."""
    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=2, steps=2, seed=3, precision="fp32")
    want = _rollout(Generator(model, tok, cfg), [0], 3)

    def broken(fn, **options):
        def fails(*args):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\n(long inductor trace)")
        return fails

    def no_compiler(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\n(long inductor trace)")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", no_compiler)
    monkeypatch.setenv("PATCHWORLD_COMPILE_CACHE", str(tmp_path))
    with pytest.warns(UserWarning) as warned:
        got = _rollout(Generator(model, tok, dataclasses.replace(cfg, compile=True)), [0], 3)
    messages = {str(w.message) for w in warned}
    assert any("ahead-of-time compile of the streaming pass failed (RuntimeError: InvalidCxxCompiler" in m
               for m in messages)
    assert any(re.search(r"InvalidCxxCompiler: no working C.. compiler found\); running it eagerly", m)
               for m in messages)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g[0], w[0])


def test_a_packaged_pass_is_loaded_by_the_next_generator_and_only_for_its_own_weights(monkeypatch, tmp_path):
    """The compiled pass is built ahead of time into a package on disk: a second generator of the same
    model (a later start) loads it, without exporting or compiling, and makes the same frames; a model
    with other weights never loads it (its export is what runs, here made to fail, so it warns)."""
    monkeypatch.setenv("PATCHWORLD_COMPILE_CACHE", str(tmp_path))
    model, tok = _parts()
    cfg = GeneratorConfig(resolution=(16, 16), window_frames=2, steps=2, seed=3, precision="fp32",
                          context="reuse", compile=True)
    first = _rollout(Generator(model, tok, cfg), [0], 3)
    assert len(list(tmp_path.glob("the-streaming-pass-*.pt2"))) == 1

    def no_export(*args, **kwargs):
        raise RuntimeError("exported again")

    monkeypatch.setattr(torch.export, "export", no_export)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        again = _rollout(Generator(model, tok, cfg), [0], 3)
    assert not [w for w in warned if "compile" in str(w.message)]  # no fallback
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
    other, _ = _parts(seed=1)
    with pytest.warns(UserWarning, match="ahead-of-time compile of the .* failed \\(RuntimeError: exported again"):
        Generator(other, tok, cfg).warm_up()


def test_packages_unused_for_two_weeks_and_stale_partial_builds_are_pruned(tmp_path):
    """The package folder does not grow without bound: a build drops packages nobody loaded or built for
    PACKAGE_KEEP_DAYS and interrupted builds a day old, and keeps the rest."""
    import os
    import time

    from simulator.models.compiled import PACKAGE_KEEP_DAYS, _prune

    day = 86400
    ages = {"fresh.pt2": 0, "week.pt2": 7 * day, "old.pt2": (PACKAGE_KEEP_DAYS + 1) * day,
            "a.123.partial.pt2": 3600, "b.456.partial.pt2": 2 * day, "notes.txt": 100 * day}
    for name, age in ages.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (time.time() - age, time.time() - age))
    _prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.123.partial.pt2", "fresh.pt2", "notes.txt", "week.pt2"]


def test_a_package_key_covers_the_source_its_graph_can_reach_and_only_that():
    """A package is keyed by the source files its graph's code can import (a static walk): the model, its
    attention kernels and their helpers, so that an edit to any of them builds it again; an edit to a
    command-line tool or the server does not."""
    from pathlib import Path

    from simulator.models.compiled import _source_digest, _source_files

    files = {Path(p).relative_to(Path(__file__).parents[1]).as_posix() for p in _source_files("simulator.models.dit")}
    assert {"simulator/models/dit.py", "simulator/models/kv_cache.py", "simulator/models/rope.py",
            "simulator/models/camera_warp.py", "simulator/models/compiled.py", "simulator/actions.py",
            "kernels/attention.py", "kernels/layout.py", "simulator/__init__.py"} <= files
    assert not {"simulator/cli.py", "simulator/rollout/generator.py", "simulator/train/world_trainer.py"} & files
    assert not any(f.startswith("simulator/serve/") for f in files)
    assert _source_digest("simulator.models.dit") != _source_digest("simulator.models.tokenizer")
