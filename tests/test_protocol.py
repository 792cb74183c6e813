"""The wire protocol's validation, codec and per-connection state (no network, no torch)."""

import subprocess
import sys

import msgpack
import numpy as np
import pytest

from simulator.actions import Action
from simulator.serve import protocol as P
from simulator.serve.codec import decode_frame, decode_start_image, encode_frame, fit_image
from simulator.serve.sessions import ActionMerger, Outbox, RateLimiter


def _parse(message: dict):
    return P.parse_client(P.unpack(msgpack.packb(message, use_bin_type=True)))


def test_protocol_module_imports_no_torch():
    code = "import sys, simulator.serve.protocol, simulator.serve.codec, client.net; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_valid_messages_parse():
    hello = _parse(P.hello("player", start=P.Start(seed=5), format="png", quality=50))
    assert hello == P.Hello(version=P.PROTOCOL_VERSION, role="player", session=None, start=P.Start(seed=5),
                            format="png", quality=50)
    viewer = _parse({"type": "hello", "version": 1, "role": "viewer", "session": "abc_-9"})
    assert viewer.session == "abc_-9" and viewer.format == "jpeg"
    action = _parse(P.action_message(7, Action(forward=True, hotbar=3, yaw=-2.5)))
    assert action == P.ActionMessage(seq=7, action=Action(forward=True, hotbar=3, yaw=-2.5))
    assert _parse({"type": "reset"}) == P.Reset(start=None)
    assert _parse({"type": "reset", "start": {"image": b"\x89PNG"}}).start.image == b"\x89PNG"
    assert _parse({"type": "ping", "t": 1.5}) == P.Ping(t=1.5)


@pytest.mark.parametrize("data, code, words", [
    (b"\xc1", "bad_msgpack", "not one msgpack value"),
    (b"\x92\x01", "bad_msgpack", "not one msgpack value"),  # truncated array
    (msgpack.packb(msgpack.ExtType(5, b"x")), "bad_msgpack", "ext type 5"),
    (msgpack.packb([1, 2]), "bad_message", "must be a msgpack map"),
    (msgpack.packb({"kind": "hello"}), "bad_message", "'type' must be a string"),
    (msgpack.packb({1: 2}), "bad_msgpack", "not one msgpack value"),  # non-string map keys refused
])
def test_undecodable_input(data, code, words):
    with pytest.raises(P.ProtocolError, match=words) as err:
        P.unpack(data)
    assert err.value.code == code


@pytest.mark.parametrize("message, code, words", [
    ({"type": "jump"}, "unknown_type", "unknown message type 'jump'"),
    ({"type": "action", "seq": 1}, "bad_message", "missing field 'action'"),
    ({"type": "action", "seq": -1, "action": {}}, "bad_message", "'seq' must be an integer in 0.."),
    ({"type": "action", "seq": True, "action": {}}, "bad_message", "'seq' must be an integer"),
    ({"type": "action", "seq": 1.5, "action": {}}, "bad_message", "'seq' must be an integer"),
    ({"type": "action", "seq": 1, "action": {"hotbar": 12}}, "bad_message", "hotbar: slot 12"),
    ({"type": "action", "seq": 1, "action": {"yaw": float("nan")}}, "bad_message", "yaw: camera delta nan"),
    ({"type": "action", "seq": 1, "action": {"fly": True}}, "bad_message", "fly: unknown action key"),
    ({"type": "action", "seq": 1, "action": [1]}, "bad_message", "expected a JSON object"),
    ({"type": "action", "seq": 1, "action": {}, "extra": 0}, "bad_message", "unknown field 'extra'"),
    ({"type": "hello", "version": 2, "role": "player"}, "version", "protocol version 2 is not supported"),
    ({"type": "hello", "version": 1, "role": "god"}, "bad_message", "role 'god'"),
    ({"type": "hello", "version": 1, "role": "viewer"}, "bad_message", "a viewer needs 'session'"),
    ({"type": "hello", "version": 1, "role": "viewer", "session": "../etc"}, "bad_message", "needs 'session'"),
    ({"type": "hello", "version": 1, "role": "player", "format": "gif"}, "bad_message", "format 'gif'"),
    ({"type": "hello", "version": 1, "role": "player", "quality": 100}, "bad_message", "'quality' must be"),
    ({"type": "hello", "version": 1, "role": "player", "start": {"seed": -4}}, "bad_start", "'seed' must be"),
    ({"type": "hello", "version": 1, "role": "player", "start": {"seed": 1, "image": b"x"}}, "bad_start",
     "exactly one of"),
    ({"type": "reset", "start": {"image": "notbytes"}}, "bad_start", "must be non-empty binary"),
    ({"type": "ping"}, "bad_message", "missing field 't'"),
])
def test_invalid_messages_name_the_problem(message, code, words):
    with pytest.raises(P.ProtocolError, match=words) as err:
        _parse(message)
    assert err.value.code == code


def test_frame_codecs_round_trip():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    assert np.array_equal(decode_frame(encode_frame(frame, "raw"), "raw", 32, 24), frame)
    assert np.array_equal(decode_frame(encode_frame(frame, "png"), "png", 32, 24), frame)
    smooth = np.broadcast_to(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (24, 32, 3)).copy()
    jpeg = decode_frame(encode_frame(smooth, "jpeg", 95), "jpeg", 32, 24)
    assert np.abs(jpeg.astype(int) - smooth).mean() < 3
    with pytest.raises(ValueError, match="raw frame has 5 bytes, expected 24\\*32\\*3"):
        decode_frame(b"12345", "raw", 32, 24)


def test_start_images_are_checked_and_fitted():
    png = encode_frame(np.zeros((30, 60, 3), np.uint8), "png")
    assert decode_start_image(png).shape == (30, 60, 3)
    with pytest.raises(P.ProtocolError, match="not a readable PNG or JPEG"):
        decode_start_image(b"GIF89a not really")
    huge = encode_frame(np.zeros((1100, 1000, 3), np.uint8), "png")
    with pytest.raises(P.ProtocolError, match="over the 1048576-pixel limit"):
        decode_start_image(huge)
    wide = np.zeros((30, 60, 3), np.uint8)
    wide[:, 15:45] = 255  # the centre square survives the crop to 1:1
    assert fit_image(wide, 16, 16).min() > 200


def test_action_merger_keeps_taps_sums_camera_and_repeats_held_buttons():
    m = ActionMerger()
    assert m.take() == Action() and m.answered_seq == -1
    m.add(0, Action(forward=True, yaw=3.0))
    m.add(1, Action(jump=True, yaw=4.0, hotbar=2))
    merged = m.take()
    assert merged.forward and merged.jump and merged.hotbar == 2 and m.answered_seq == 1
    assert merged == Action(forward=True, jump=True, hotbar=2, yaw=7.0).quantized()
    held = m.take()  # nothing new: the last message's buttons are still held; camera and hotbar were one-shot
    assert held == Action(jump=True)
    m.add(2, Action(yaw=15.0))
    m.add(3, Action(yaw=15.0))
    assert m.take().yaw == 20.0  # clamped to the per-tick range


def test_action_merger_gives_back_an_abandoned_ticks_actions():
    """A tick abandoned for a newer action (untake) loses nothing: its tap and camera move are
    merged with the newer message, and the answered seq is the newer one's."""
    m = ActionMerger()
    m.add(0, Action(forward=True))
    m.take()
    m.add(1, Action(attack=True, yaw=4.0, hotbar=3))
    assert m.take() == Action(attack=True, yaw=4.0, hotbar=3).quantized() and not m.changed()
    m.add(2, Action(attack=True))
    assert not m.changed()  # a repeat of what the tick already applies: not worth a restart
    m.add(3, Action(yaw=6.0))
    assert m.changed()
    m.untake()
    assert m.answered_seq == 0
    merged = m.take()
    assert merged == Action(attack=True, yaw=10.0, hotbar=3).quantized() and m.answered_seq == 3
    assert m.take() == Action()  # then the last message's buttons (none) are held
    with pytest.raises(RuntimeError, match="without a take"):
        m.untake()
        m.untake()


def test_outbox_keeps_only_the_latest_frame():
    import asyncio

    async def scenario():
        box = Outbox("jpeg", 90)
        box.put_control(b"welcome")
        for i in range(5):
            box.put_frame(bytes([i]))
        first = await box.next()
        box.put_frame(b"late")
        box.close(1000, "bye")
        second = await box.next()
        third = await box.next()
        return box, first, second, third

    box, first, second, third = asyncio.run(scenario())
    assert first == [b"welcome", bytes([4])] and box.frames_skipped == 4
    assert second == [b"late"] and third is None


def test_outbox_never_skips_a_kept_frame():
    """An epoch's start frame (kept) survives the frames after it and drops the stale one before it."""
    import asyncio

    async def scenario():
        box = Outbox("jpeg", 90)
        box.put_frame(b"old epoch")
        box.put_frame(b"start", keep=True)
        box.put_frame(b"tick 1")
        box.put_frame(b"tick 2")
        return box, await box.next()

    box, sent = asyncio.run(scenario())
    assert sent == [b"start", b"tick 2"] and box.frames_skipped == 2


def test_rate_limiter_allows_bursts_then_drops():
    limiter = RateLimiter(rate=1.0, burst=5)
    allowed = sum(limiter.allow() for _ in range(20))
    assert allowed == 5 and limiter.dropped == 15
    assert limiter.should_warn() and not limiter.should_warn()
