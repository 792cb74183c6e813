"""The websocket server end to end over loopback, on the real engine at a tiny resolution:
players and viewers, validation errors, oversized and flooding input, fuzzing, server recording."""

import random
import time

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from client.net import Client
from simulator.actions import Action
from simulator.rollout.backend import EngineBackend
from simulator.rollout.recorder import read_recording
from simulator.serve import protocol as P
from simulator.serve.server import ServerConfig, ServerThread
from simulator.world.engine import WORLD_PRESETS

RESOLUTION = (24, 32)


def _backend(max_sessions: int = 8) -> EngineBackend:
    return EngineBackend(resolution=RESOLUTION, max_sessions=max_sessions, world_config=WORLD_PRESETS["tiny"])


@pytest.fixture(scope="module")
def server():
    with ServerThread(_backend(), ServerConfig(port=0, rate_per_s=40, rate_burst=40, rate_close_after=200)) as st:
        yield st


def _raw(url: str, close_timeout: float = 10):
    return connect(url, compression=None, proxy=None, open_timeout=10, close_timeout=close_timeout).__enter__()


def _recv(ws, timeout: float = 20.0) -> dict:
    return msgpack.unpackb(ws.recv(timeout=timeout), raw=False)


def _recv_type(ws, kind: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = _recv(ws, max(0.01, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


def _play(client: Client, action: Action, ticks: int) -> P.Frame:
    """Send `action` once per received frame for `ticks` frames; return the last frame."""
    last = None
    for _ in range(ticks):
        seq = client.send_action(action)
        got = client.wait_frame(5.0)
        while got is not None and got.frame.seq < seq:
            got = client.wait_frame(5.0)
        assert got is not None, "no frame answered the action within 5 s"
        last = got.frame
    return last


def test_player_and_viewer_get_frames_answering_actions(server):
    with Client(server.url, start=P.Start(seed=3)) as player:
        assert player.welcome["width"] == RESOLUTION[1] and player.welcome["height"] == RESOLUTION[0]
        first = player.wait_frame()
        assert first.frame.tick == 0 and first.frame.seq == -1 and first.image.shape == (*RESOLUTION, 3)
        with Client(server.url, role="viewer", session=player.session, fmt="raw") as viewer:
            frame = _play(player, Action(forward=True, yaw=6.0), ticks=10)
            assert frame.action.forward and frame.action.yaw == Action(yaw=6.0).quantized().yaw
            assert frame.tick >= 10 and frame.gen_ms > 0
            seen = viewer.wait_frame()
            assert seen is not None and seen.frame.session == player.session and seen.frame.format == "raw"
            assert viewer.frames_received >= 5
            turned = _play(player, Action(yaw=-20.0), ticks=5)
            assert turned.action.yaw == -20.0
        # the view changed in answer to the turn: not a frozen stream
        assert not np.array_equal(first.image, player.wait_frame().image)


def test_reset_restarts_the_session_from_its_start(server):
    with Client(server.url, start=P.Start(seed=5), fmt="png") as player:
        seen: list = []  # every frame the server sent, also those the game loop would skip
        player.on_frame = seen.append
        start = player.wait_frame()
        _play(player, Action(yaw=20.0), ticks=6)
        player.reset()
        deadline = time.monotonic() + 30  # generous: CI cores may be busy
        while not any(got.frame.epoch == 1 for got in list(seen)):
            assert player.wait_frame() is not None and time.monotonic() < deadline, "no frame of the reset epoch"
        first = next(got for got in list(seen) if got.frame.epoch == 1)
        # the epoch's start frame is never skipped, and it is the session's start again
        assert first.frame.tick == 0 and np.array_equal(first.image, start.image)  # png: lossless


def test_protocol_errors_get_error_messages_and_the_session_survives(server):
    with _raw(server.url) as ws:
        ws.send(msgpack.packb({"type": "hello", "version": 1, "role": "player", "start": {"seed": 2}}))
        assert _recv(ws)["type"] == "welcome"
        for bad, code in [(b"\xc1\xc1", "bad_msgpack"), (msgpack.packb({"type": "warp"}), "unknown_type"),
                          (msgpack.packb({"type": "action", "seq": 0}), "bad_message"),
                          (msgpack.packb({"type": "action", "seq": 0, "action": {"hotbar": 99}}), "bad_message"),
                          (msgpack.packb({"type": "hello", "version": 1, "role": "player"}), "not_allowed"),
                          ("text frame", "bad_msgpack")]:
            ws.send(bad)
            error = _recv_type(ws, "error")
            assert error["code"] == code and not error["fatal"], error
        ws.send(msgpack.packb({"type": "action", "seq": 5, "action": {"forward": True}}))
        ws.send(msgpack.packb({"type": "action", "seq": 5, "action": {}}))
        assert _recv_type(ws, "error")["code"] == "out_of_order"
        frame = _recv_type(ws, "frame")
        while frame["seq"] < 5:
            frame = _recv_type(ws, "frame")
        assert frame["action"] == {"forward": True}


@pytest.mark.parametrize("hello, code", [
    ({"type": "action", "seq": 0, "action": {}}, "not_allowed"),
    ({"type": "hello", "version": 99, "role": "player"}, "version"),
    ({"type": "hello", "version": 1, "role": "viewer", "session": "nosuchsession"}, "no_session"),
    ({"type": "hello", "version": 1, "role": "player", "start": {"image": b"not an image"}}, "bad_start"),
])
def test_bad_hello_gets_a_fatal_error_and_a_clean_close(server, hello, code):
    with _raw(server.url) as ws:
        ws.send(msgpack.packb(hello, use_bin_type=True))
        error = _recv(ws)
        assert error["type"] == "error" and error["code"] == code and error["fatal"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
        assert closed.value.rcvd.code == 1008


def test_oversized_message_closes_the_connection(server):
    with _raw(server.url) as ws:
        ws.send(msgpack.packb({"type": "hello", "version": 1, "role": "player"}))
        assert _recv(ws)["type"] == "welcome"
        ws.send(b"\x00" * (P.MAX_MESSAGE_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=20)
        assert closed.value.rcvd.code == 1009  # message too big


def test_flood_is_rate_limited_then_closed(server):
    with _raw(server.url) as ws:
        ws.send(msgpack.packb({"type": "hello", "version": 1, "role": "player"}))
        assert _recv(ws)["type"] == "welcome"
        ping = msgpack.packb({"type": "ping", "t": 0.0})
        codes = []
        try:  # the server may close while the flood is still being sent: that is the point
            for _ in range(400):
                ws.send(ping)
        except ConnectionClosed:
            pass
        with pytest.raises(ConnectionClosed) as closed:  # what arrived before the close is still read
            while True:
                message = _recv(ws)
                if message["type"] == "error":
                    codes.append(message["code"])
        assert "rate_limited" in codes and closed.value.rcvd.code == 1008


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "bytes", "bool", "none"] + (["list", "map"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, -1, 2**31, -(2**63), 2**64 - 1, rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.0, -1e308, float("inf"), float("nan"), rng.uniform(-100, 100)])
    if kind == "str":
        return rng.choice(["hello", "action", "reset", "ping", "player", "viewer", "", "\u2603" * 3])
    if kind == "bytes":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["type", "version", "role", "session", "start", "seed", "image", "seq", "action", "format", "t",
            "forward", "yaw", "hotbar"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _fuzz_message(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
    value = _random_value(rng)
    if roll < 0.8 and isinstance(value, dict):  # mostly well-formed maps with a plausible type
        value["type"] = rng.choice(P.CLIENT_TYPES + ("frame", "welcome"))
        if value["type"] == "hello" and rng.random() < 0.5:
            value["version"] = 1
    return msgpack.packb(value, use_bin_type=True)


def test_fuzz_then_a_normal_session_still_works(server):
    rng = random.Random(1234)
    with Client(server.url, start=P.Start(seed=9)) as bystander:
        bystander.wait_frame()
        for connection in range(30):
            try:
                with _raw(server.url) as ws:
                    if connection % 2:  # half of them first become a real player, then misbehave
                        ws.send(msgpack.packb({"type": "hello", "version": 1, "role": "player"}))
                    for _ in range(rng.randint(1, 15)):
                        ws.send(_fuzz_message(rng))
            except ConnectionClosed:
                pass  # the server may close a misbehaving connection: that is allowed
        # the session that was open during the fuzzing kept working
        assert _play(bystander, Action(forward=True), ticks=3).action.forward
    with Client(server.url, start=P.Start(seed=9)) as player:
        assert _play(player, Action(jump=True), ticks=3).action.jump


def test_silent_viewer_does_not_stall_the_player(server):
    with Client(server.url, start=P.Start(seed=4)) as player, _raw(server.url, close_timeout=0.5) as lazy:
        lazy.send(msgpack.packb({"type": "hello", "version": 1, "role": "viewer", "session": player.session,
                                 "format": "raw"}))
        # `lazy` never reads again; the player still gets a frame per action
        frame = _play(player, Action(right=True), ticks=30)
        assert frame.tick >= 30 and frame.action.right


def test_server_records_each_session(tmp_path):
    config = ServerConfig(port=0, record_dir=tmp_path)
    with ServerThread(_backend(), config) as st, Client(st.url, start=P.Start(seed=6), fmt="png") as player:
        start = player.wait_frame()
        _play(player, Action(forward=True), ticks=8)
        player.close()
        time.sleep(0.3)
    (folder,) = list(tmp_path.iterdir())
    rec = read_recording(folder)
    assert rec.metadata["complete"] and rec.metadata["seed"] == 6 and rec.metadata["backend"] == "engine"
    # ticks run at 20 Hz whether or not actions came: the first ticks may be NOOPs
    assert len(rec.actions) >= 9 and rec.actions[0] == Action() and sum(a.forward for a in rec.actions) >= 8
    assert [t["tick"] for t in rec.ticks] == list(range(len(rec.ticks)))
    assert np.abs(rec.frames[0].astype(int) - start.image).mean() < 4  # lossy mp4 of the same start frame


class _CountingBackend(EngineBackend):
    """Records which slots each step call carried."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[set[int]] = []

    def step(self, actions, abort=None):
        self.calls.append(set(actions))
        return super().step(actions)


def test_sessions_are_stepped_together_in_one_call_per_tick():
    backend = _CountingBackend(resolution=RESOLUTION, max_sessions=2, world_config=WORLD_PRESETS["tiny"])
    with ServerThread(backend, ServerConfig(port=0)) as st:
        with Client(st.url, start=P.Start(seed=1)) as a, Client(st.url, start=P.Start(seed=2)) as b:
            _play(a, Action(forward=True), ticks=5)
            _play(b, Action(back=True), ticks=5)
            assert any(call == {0, 1} for call in backend.calls)  # both slots in one batched step
            with pytest.raises(ConnectionError, match="full: all 2 session slots"):
                Client(st.url)
    assert all(len(call) <= 2 for call in backend.calls)


class _OrderBackend(EngineBackend):
    """Records the order of step and idle calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: list[str] = []

    def step(self, actions, abort=None):
        self.events.append("step")
        return super().step(actions)

    def idle(self):
        self.events.append("idle")


def test_between_tick_work_runs_after_each_step():
    backend = _OrderBackend(resolution=RESOLUTION, max_sessions=1, world_config=WORLD_PRESETS["tiny"])
    with ServerThread(backend, ServerConfig(port=0)) as st:
        with Client(st.url, start=P.Start(seed=1)) as player:
            _play(player, Action(forward=True), ticks=4)
    events = backend.events[:-1] if backend.events[-1] == "step" else backend.events  # stopped mid-tick
    assert events.count("step") >= 3
    assert events == ["step", "idle"] * (len(events) // 2)  # the model's cache pass: after its frames, before the next step


class _SlowBackend(EngineBackend):
    """A backend as slow as the model on a CPU: 4 'passes' of 30 ms, asking `abort` before the first two."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.abandoned = 0

    def step(self, actions, abort=None):
        for i in range(4):
            if abort is not None and i < 2 and abort():
                self.abandoned += 1
                return None
            time.sleep(0.03)
        return super().step(actions)


@pytest.mark.parametrize("restart", [True, False])
def test_an_action_restarts_a_slow_tick_that_has_just_begun(restart):
    backend = _SlowBackend(resolution=RESOLUTION, max_sessions=1, world_config=WORLD_PRESETS["tiny"])
    with ServerThread(backend, ServerConfig(port=0, restart_on_action=restart)) as st:
        with Client(st.url, start=P.Start(seed=1)) as player:
            player.wait_frame()
            for i in range(8):
                # ticks run back to back (120 ms > the 50 ms period): the next one has just begun
                time.sleep(0.005)
                seq = player.send_action(Action(yaw=5.0, forward=i % 2 == 0))
                got = player.wait_frame(5.0)
                while got is not None and got.frame.seq < seq:
                    got = player.wait_frame(5.0)
                assert got is not None and got.frame.action.forward == (i % 2 == 0)  # nothing lost
    assert backend.abandoned == st.server.restarts
    if restart:
        assert st.server.restarts >= 4  # most actions restarted the tick they landed in (timing leaves slack)
    else:
        assert st.server.restarts == 0
