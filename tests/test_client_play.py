"""End to end: a server on a free port, the real pygame player window (SDL dummy driver) driven by
scripted key events, and a viewer; both receive frames answering the scripted keys."""

import os
import threading

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
pygame = pytest.importorskip("pygame")

from client.net import Client  # noqa: E402
from client.play import PlayApp, PlayConfig  # noqa: E402
from client.window import WindowConfig  # noqa: E402
from simulator.rollout.backend import EngineBackend  # noqa: E402
from simulator.rollout.recorder import read_recording  # noqa: E402
from simulator.serve import protocol as P  # noqa: E402
from simulator.serve.server import ServerConfig, ServerThread  # noqa: E402
from simulator.world.engine import WORLD_PRESETS  # noqa: E402


def _key(kind: int, key: int) -> "pygame.event.Event":
    return pygame.event.Event(kind, key=key, mod=0, unicode="", scancode=0)


def _watch(url: str, session: str, seen: list, stop: threading.Event) -> None:
    with Client(url, role="viewer", session=session) as viewer:
        while not stop.is_set() and viewer.connected:
            got = viewer.wait_frame(0.5)
            if got is not None:
                seen.append(got.frame)


def test_player_window_and_viewer_answer_scripted_keys(tmp_path):
    backend = EngineBackend(resolution=(24, 32), world_config=WORLD_PRESETS["tiny"])
    script = [
        (0.3, _key(pygame.KEYDOWN, pygame.K_F5)),  # start recording
        (0.5, _key(pygame.KEYDOWN, pygame.K_w)),
        (1.5, _key(pygame.KEYUP, pygame.K_w)),
        (1.6, _key(pygame.KEYDOWN, pygame.K_RIGHT)),  # arrow keys turn the camera
        (2.4, _key(pygame.KEYUP, pygame.K_RIGHT)),
        (2.5, _key(pygame.KEYDOWN, pygame.K_3)),  # hotbar slot 2
        (2.6, _key(pygame.KEYDOWN, pygame.K_F2)),  # screenshot
        (2.8, _key(pygame.KEYDOWN, pygame.K_F5)),  # stop recording
    ]
    config = PlayConfig(window=WindowConfig(scale=2), record_dir=tmp_path / "rec", screenshot_dir=tmp_path / "shots")
    seen: list[P.Frame] = []
    stop = threading.Event()
    with ServerThread(backend, ServerConfig(port=0)) as server:
        player = Client(server.url, start=P.Start(seed=2))
        watcher = threading.Thread(target=_watch, args=(server.url, player.session, seen, stop))
        watcher.start()
        try:
            stats = PlayApp(player, config, start={"seed": 2}).run(max_seconds=3.2, script=script)
        finally:
            stop.set()
            watcher.join(5)
            player.close()

    assert stats.frames_shown >= 20 and stats.actions_sent >= 20
    assert stats.latencies_ms and all(0 < ms < 5000 for ms in stats.latencies_ms)
    # only actions that change something are timed (key edges, turning, the hotbar), not the repeats
    assert len(stats.latencies_ms) < 0.6 * stats.actions_sent
    # the viewer saw the same session answer the scripted keys: walking, then turning right, then slot 2
    assert seen and all(f.session == player.session for f in seen)
    assert any(f.action.forward for f in seen)
    assert any(f.action.yaw > 0 and not f.action.forward for f in seen)
    assert any(f.action.hotbar == 2 for f in seen)
    # the F5 recording holds the keys too, in tick order
    (folder,) = stats.recordings
    rec = read_recording(folder)
    assert len(rec.frames) >= 20 and rec.metadata["complete"] and rec.metadata["start"] == {"seed": 2}
    assert any(a.forward for a in rec.actions) and any(a.yaw > 0 for a in rec.actions)
    ticks = [t["tick"] for t in rec.ticks]
    assert ticks == sorted(ticks)
    (shot,) = stats.screenshots
    from PIL import Image
    assert np.asarray(Image.open(shot)).shape == (24, 32, 3)
