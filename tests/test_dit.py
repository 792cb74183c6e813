"""The DiT: shapes, block-causal masking, NaViT packing, the KV-cache path, copy-last init."""

import math

import pytest
import torch

from simulator.actions import BUTTON_DIM, CAMERA_BIN_CENTERS, CAMERA_BINS
from simulator.models.dit import PRESETS, build_dit


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Zero-initialised gates would hide bugs: give every parameter random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def _inputs(B: int, T: int, C: int, h: int, w: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(B, T, C, h, w, generator=g), "prev": torch.randn(B, T, C, h, w, generator=g),
            "noise_level": torch.rand(B, T, generator=g), "prev_level": 0.1 * torch.rand(B, T, generator=g),
            "buttons": (torch.rand(B, T, BUTTON_DIM, generator=g) > 0.7).float(),
            "camera": torch.randint(0, CAMERA_BINS, (B, T, 2), generator=g)}


def _run(model, inp, **kw):
    return model(inp["x"], inp["prev"], inp["noise_level"], inp["prev_level"], inp["buttons"], inp["camera"], **kw)


def test_shapes_and_any_resolution():
    model = _randomise(build_dit("tiny"))
    for h, w in [(8, 8), (4, 12), (6, 10)]:
        out = _run(model, _inputs(2, 3, 4, h, w))
        assert out.shape == (2, 3, 4, h, w)
        assert torch.isfinite(out).all()


def test_rejects_bad_latents():
    model = build_dit("tiny")
    with pytest.raises(ValueError, match="patch 2"):
        _run(model, _inputs(1, 2, 4, 7, 8))
    with pytest.raises(ValueError, match="4 channels"):
        _run(model, _inputs(1, 2, 3, 8, 8))


def test_fresh_model_is_copy_last_frame():
    model = build_dit("tiny").eval()
    inp = _inputs(2, 3, 4, 8, 8)
    assert torch.equal(_run(model, inp), inp["prev"])


@pytest.mark.parametrize("chunk", [1, 2])
def test_later_frames_do_not_change_earlier_outputs(chunk):
    model = _randomise(build_dit("tiny", chunk_frames=chunk))
    inp = _inputs(1, 6, 4, 8, 8)
    base = _run(model, inp)
    changed = {k: v.clone() for k, v in inp.items()}
    changed["x"][:, 4:] += 3.0  # frames 4, 5: chunk 2 (k=2) or frames 4, 5 (k=1)
    changed["buttons"][:, 4:] = 1.0
    changed["noise_level"][:, 4:] = 0.9
    out = _run(model, changed)
    torch.testing.assert_close(out[:, :4], base[:, :4], rtol=0, atol=1e-5)
    assert (out[:, 4:] - base[:, 4:]).abs().max() > 1e-2  # and the later frames do react
    if chunk == 2:  # within a chunk attention is bidirectional: frame 4 depends on frame 5
        only_last = {k: v.clone() for k, v in inp.items()}
        only_last["x"][:, 5] += 3.0
        assert (_run(model, only_last)[:, 4] - base[:, 4]).abs().max() > 1e-3


def test_action_changes_its_own_frame():
    model = _randomise(build_dit("tiny"))
    inp = _inputs(1, 3, 4, 8, 8)
    base = _run(model, inp)
    turned = {k: v.clone() for k, v in inp.items()}
    turned["camera"][:, 1, 0] = (turned["camera"][:, 1, 0] + 5) % CAMERA_BINS
    out = _run(model, turned)
    torch.testing.assert_close(out[:, 0], base[:, 0], rtol=0, atol=1e-5)
    assert (out[:, 1] - base[:, 1]).abs().max() > 1e-2


@pytest.mark.parametrize("warp,zoom", [(0.0, 0.0), (70.0, 0.0), (70.0, 0.02)])
def test_packed_batch_equals_clips_one_by_one(warp, zoom):
    model = _randomise(build_dit("tiny", camera_warp_fov=warp, walk_zoom=zoom))
    sizes = [(3, 8, 8), (2, 4, 12), (4, 6, 6)]  # (T, h, w): different resolutions and aspect ratios
    clips = []
    for i, (T, h, w) in enumerate(sizes):
        inp = _inputs(1, T, 4, h, w, seed=10 + i)
        clips.append({k: v[0] for k, v in inp.items()})
    packed = model.forward_packed(clips)
    for clip, out in zip(clips, packed):
        alone = _run(model, {k: v[None] for k, v in clip.items()})[0]
        torch.testing.assert_close(out, alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("window,warp,zoom", [(3, 0.0, 0.0), (8, 0.0, 0.0), (3, 70.0, 0.0), (3, 70.0, 0.02)])
def test_cached_chunks_equal_uncached_window(window, warp, zoom):
    """Feeding frames one at a time through the ring-buffer cache (wrapping around when T > window)
    equals one block-causal pass whose window is the cache plus the current frame."""
    model = _randomise(build_dit("tiny", camera_warp_fov=warp, walk_zoom=zoom))
    B, T, h, w = 2, 7, 4, 6
    inp = _inputs(B, T, 4, h, w)
    full = _run(model, inp, window_frames=window + 1)
    cache = model.new_cache(B, window, (h // 2) * (w // 2), "cpu")
    rows = torch.arange(B)
    outs = []
    for t in range(T):
        step = {k: v[:, t:t + 1] for k, v in inp.items()}
        outs.append(model.forward_cached(step["x"], step["prev"], step["noise_level"], step["prev_level"],
                                         step["buttons"], step["camera"], cache=cache, rows=rows,
                                         first_frame=torch.full((B,), t), append=True))
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=1e-4, atol=1e-4)
    assert int(cache.length.max()) == min(T, window) * cache.frame_tokens


def test_cache_pass_without_append_leaves_cache_alone():
    model = _randomise(build_dit("tiny"))
    cache = model.new_cache(1, 4, 16, "cpu")
    inp = _inputs(1, 1, 4, 8, 8)
    args = (inp["x"], inp["prev"], inp["noise_level"], inp["prev_level"], inp["buttons"], inp["camera"])
    model.forward_cached(*args, cache=cache, rows=torch.tensor([0]), first_frame=torch.tensor([0]), append=True)
    k, length = cache.k.clone(), cache.length.clone()
    model.forward_cached(*args, cache=cache, rows=torch.tensor([0]), first_frame=torch.tensor([1]), append=False)
    assert torch.equal(cache.k, k) and torch.equal(cache.length, length)


def test_presets_table():
    assert set(PRESETS) >= {"tiny", "cpu", "gpu"}
    n = sum(p.numel() for p in build_dit("cpu").parameters())
    assert 4e6 < n < 20e6, f"cpu preset has {n / 1e6:.1f} M parameters, meant to be 5-10 M"
    with pytest.raises(ValueError, match="unknown DiT preset"):
        build_dit("huge")


def _primed_stream(model, B: int = 2, h: int = 4, w: int = 6):
    """One new frame's inputs [B, 1, ...] against a cache already holding two frames at positions 1-2:
    (inputs, cache, rows, first frame [B] = 3, the tick's stream view)."""
    inp = _inputs(B, 1, 4, h, w)
    rows, first = torch.arange(B), torch.full((B,), 3)
    cache = model.new_cache(B, 4, (h // 2) * (w // 2), "cpu")
    prime = _inputs(B, 2, 4, h, w, seed=5)
    model.forward_cached(prime["x"], prime["prev"], prime["noise_level"], prime["prev_level"], prime["buttons"],
                         prime["camera"], cache=cache, rows=rows, first_frame=torch.full((B,), 1), append=True)
    return inp, cache, rows, first, model.stream_view(cache, rows, first, 1, h, w)


def test_stream_passes_with_shared_modulations_equal_forward_cached():
    """The generator's tick: one stream view and the adaLN modulations of all passes computed at
    once, then sliced per pass, give what separate forward_cached calls give."""
    model = _randomise(build_dit("tiny"))
    levels = [1.0, 0.6, 0.3]
    inp, cache, rows, first, view = _primed_stream(model)
    B, P = len(rows), len(levels)
    mods = model.modulations(model.condition(torch.tensor(levels).expand(B, P), inp["prev_level"].expand(B, P),
                                             inp["buttons"].expand(B, P, -1), inp["camera"].expand(B, P, -1)))
    for i, level in enumerate(levels):
        fast = model.forward_stream(inp["x"], inp["prev"], [m[:, i:i + 1] for m in mods], view, append=False)
        plain = model.forward_cached(inp["x"], inp["prev"], torch.full((B, 1), level), inp["prev_level"],
                                     inp["buttons"], inp["camera"], cache=cache, rows=rows, first_frame=first,
                                     append=False)
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_stream_pass_without_history_equals_a_clips_first_frame():
    """history="without" (the weak prediction of history guidance): whatever the cache holds, the new
    frame sees only itself and its previous latent, exactly as the first frame of a training clip."""
    model = _randomise(build_dit("tiny", camera_warp_fov=70.0))
    inp, cache, rows, first, view = _primed_stream(model)
    mods = model.modulations(model.condition(inp["noise_level"], inp["prev_level"], inp["buttons"], inp["camera"]))
    prev = model.warp_previous(inp["prev"], inp["camera"], inp["buttons"])
    alone = model.forward_stream(inp["x"], prev, mods, view, append=False, history="without")
    torch.testing.assert_close(alone, _run(model, inp), rtol=1e-4, atol=1e-4)
    with_history = model.forward_stream(inp["x"], prev, mods, view, append=False)
    assert not torch.allclose(alone, with_history, atol=1e-3)  # the cache did matter to the usual pass
    both = model.forward_stream(inp["x"], prev, mods, view, append=False, history="both")  # one batch
    torch.testing.assert_close(both, torch.cat([with_history, alone]), rtol=1e-5, atol=1e-5)
    for bad in (dict(append=True, history="without"), dict(append=True, history="both")):
        with pytest.raises(ValueError, match="only a pass with history"):
            model.forward_stream(inp["x"], prev, mods, view, **bad)


def _bins(yaw_bin: int, pitch_bin: int, B: int = 1, T: int = 1) -> torch.Tensor:
    return torch.tensor([yaw_bin, pitch_bin]).expand(B, T, 2)


def test_camera_warp_shifts_the_previous_latent_as_a_pinhole_camera_turns():
    """A linear ramp is reproduced exactly by bilinear sampling, so inside the borders the warped ramp
    must equal the ramp moved by the pinhole camera's image motion: right turns move the picture left,
    looking up moves it down, and no camera move changes nothing."""
    model = build_dit("tiny", camera_warp_fov=70.0)
    h, w, centre = 12, 16, CAMERA_BINS // 2
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    prev = torch.stack([xs, ys, xs + ys, torch.ones_like(xs)])[None, None]  # [1, 1, 4, h, w]
    per_degree = (h / 2) / math.tan(math.radians(35.0)) * math.pi / 180
    still = torch.zeros(1, 1, BUTTON_DIM)
    torch.testing.assert_close(model.warp_previous(prev, _bins(centre, centre), still), prev, rtol=0, atol=1e-5)
    yaw_bin, pitch_bin = centre + 3, centre - 2
    yaw, pitch = float(CAMERA_BIN_CENTERS[yaw_bin]), float(CAMERA_BIN_CENTERS[pitch_bin])
    assert yaw > 0 and pitch < 0
    out = model.warp_previous(prev, _bins(yaw_bin, pitch_bin), still)[0, 0]
    dx, dy = -yaw * per_degree, pitch * per_degree  # how far the content moves, latent pixels
    inner = (slice(3, h - 3), slice(3, w - 3))
    torch.testing.assert_close(out[0][inner], (xs - dx)[inner], rtol=0, atol=1e-4)  # x ramp moved right by -dx
    torch.testing.assert_close(out[1][inner], (ys - dy)[inner], rtol=0, atol=1e-4)
    assert dx < 0 and dy < 0  # turning right: content moves left; looking down: content moves up
    assert torch.equal(build_dit("tiny").warp_previous(prev, _bins(yaw_bin, pitch_bin), still), prev)  # warp off


def test_warp_padding_zeros_leaves_nothing_to_copy_where_the_picture_moves_in():
    """Turning right moves the picture left: the right edge columns come from outside the old frame.
    "border" repeats the old edge there; "zeros" leaves zeros; inside, both are the same warp."""
    prev = 1.0 + torch.rand(1, 1, 4, 12, 16, generator=torch.Generator().manual_seed(0))  # no zeros of its own
    turn, still = _bins(CAMERA_BINS - 1, CAMERA_BINS // 2), torch.zeros(1, 1, BUTTON_DIM)
    border = build_dit("tiny", camera_warp_fov=70.0).warp_previous(prev, turn, still)[0, 0]
    zeros = build_dit("tiny", camera_warp_fov=70.0, warp_padding="zeros").warp_previous(prev, turn, still)[0, 0]
    assert (border[..., -1].abs() > 0.9).all() and (zeros[..., -1] == 0).all()
    torch.testing.assert_close(zeros[..., :4], border[..., :4], rtol=0, atol=1e-6)  # content that stays
    with pytest.raises(ValueError, match="warp_padding"):
        build_dit("tiny", warp_padding="reflect")


def test_fresh_model_with_camera_warp_is_copy_warped_last_frame():
    model = build_dit("tiny", camera_warp_fov=70.0).eval()
    inp = _inputs(2, 3, 4, 8, 8)
    expected = model.warp_previous(inp["prev"], inp["camera"], inp["buttons"])
    assert not torch.allclose(expected, inp["prev"])
    torch.testing.assert_close(_run(model, inp), expected, rtol=0, atol=0)


def test_walk_zoom_enlarges_the_previous_latent_as_walking_forward_does():
    """With walk_zoom, forward enlarges the previous latent about its centre by 1 + zoom (a linear
    ramp from the centre is scaled exactly inside the borders), back shrinks it, sprint and sneak
    scale the zoom by the engine's speeds, and keys that do not walk ahead change nothing."""
    from simulator.actions import BUTTONS
    from simulator.models.camera_warp import SNEAK_SPEED_RATIO, SPRINT_SPEED_RATIO
    from simulator.world.physics import PhysicsConfig

    physics = PhysicsConfig()
    assert SPRINT_SPEED_RATIO == pytest.approx(physics.sprint_speed / physics.walk_speed)
    assert SNEAK_SPEED_RATIO == pytest.approx(physics.sneak_speed / physics.walk_speed)
    zoom, h, w, centre = 0.02, 12, 16, CAMERA_BINS // 2
    model = build_dit("tiny", camera_warp_fov=70.0, walk_zoom=zoom)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    xc, yc = xs - (w - 1) / 2, ys - (h - 1) / 2  # pixel centres relative to the image centre
    prev = torch.stack([xc, yc, xc + yc, torch.ones_like(xc)])[None, None]

    def keys(*names: str) -> torch.Tensor:
        hot = torch.zeros(1, 1, BUTTON_DIM)
        for name in names:
            hot[..., BUTTONS.index(name)] = 1.0
        return hot

    inner = (slice(3, h - 3), slice(3, w - 3))
    for names, scale in [(("forward",), 1 + zoom), (("back",), 1 - zoom),
                         (("forward", "sprint"), 1 + zoom * SPRINT_SPEED_RATIO),
                         (("forward", "sneak"), 1 + zoom * SNEAK_SPEED_RATIO)]:
        out = model.warp_previous(prev, _bins(centre, centre), keys(*names))[0, 0]
        torch.testing.assert_close(out[0][inner], (xc / scale)[inner], rtol=0, atol=1e-4), names
        torch.testing.assert_close(out[1][inner], (yc / scale)[inner], rtol=0, atol=1e-4), names
    for names in [(), ("left",), ("jump", "attack"), ("forward", "back"), ("sprint",)]:
        torch.testing.assert_close(model.warp_previous(prev, _bins(centre, centre), keys(*names)), prev,
                                   rtol=0, atol=1e-5)
    off = build_dit("tiny", camera_warp_fov=70.0)
    torch.testing.assert_close(off.warp_previous(prev, _bins(centre, centre), keys("forward")), prev, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="camera_warp_fov"):
        build_dit("tiny", walk_zoom=zoom)


def test_clean_base_adds_the_correction_to_the_clean_previous_latent():
    """clean_base: the network reads the noised previous latent but adds its correction to the clean one
    (moved the same way), in the plain, packed and cached paths alike; a fresh model is then copy-last of
    the clean latent whatever the input's noise; without prev_clean it refuses."""
    model = _randomise(build_dit("tiny", camera_warp_fov=70.0, clean_base=True))
    plain = build_dit("tiny", camera_warp_fov=70.0)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    B, T, h, w = 2, 3, 4, 6
    inp = _inputs(B, T, 4, h, w)
    clean = torch.randn(B, T, 4, h, w, generator=torch.Generator().manual_seed(5))
    out = _run(model, inp, prev_clean=clean)
    moved = model.warp_previous(clean, inp["camera"], inp["buttons"]) - model.warp_previous(
        inp["prev"], inp["camera"], inp["buttons"])
    torch.testing.assert_close(out, _run(plain, inp) + moved, rtol=1e-5, atol=1e-5)
    packed = model.forward_packed([{**{k: v[i] for k, v in inp.items()}, "prev_clean": clean[i]} for i in range(B)])
    torch.testing.assert_close(torch.stack(packed), out, rtol=1e-4, atol=1e-4)
    cache, rows, steps = model.new_cache(B, 4, (h // 2) * (w // 2), "cpu"), torch.arange(B), []
    for t in range(T):
        step = {k: v[:, t:t + 1] for k, v in inp.items()}
        steps.append(model.forward_cached(step["x"], step["prev"], step["noise_level"], step["prev_level"],
                                          step["buttons"], step["camera"], cache=cache, rows=rows,
                                          first_frame=torch.full((B,), t), append=True,
                                          prev_clean=clean[:, t:t + 1]))
    torch.testing.assert_close(torch.cat(steps, dim=1), out, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="prev_clean"):
        _run(model, inp)
    fresh = build_dit("tiny", clean_base=True).eval()
    assert torch.equal(_run(fresh, inp, prev_clean=clean), clean)
