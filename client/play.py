"""`patchworld play`: the player's window.

With no arguments it starts a local server in this process (a background thread) with the
shipped checkpoint `checkpoints/world`, or the real engine with `--engine`, and opens the window;
`--url` joins a remote server instead. Keys come from client/controls.py (WASD, space, shift,
ctrl, mouse look, clicks, 1-9), plus R reset, F5 record (client side, VPT format), F2 screenshot.
Click the window to grab the mouse for looking; Esc releases it.
"""

from __future__ import annotations

import argparse
import datetime
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from client.controls import CONTROL_PRESETS, ControlsConfig, action_from_input
from client.net import Client, ReceivedFrame
from client.window import FrameWindow, RateMeter, WindowConfig
from simulator.actions import BUTTONS
from simulator.rollout.recorder import Recorder, RecordingInfo
from simulator.serve import protocol as P


@dataclass
class PlayConfig:
    window: WindowConfig = field(default_factory=WindowConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    display_hz: int = 60  # the window's loop rate; frames arrive at the server's 20 Hz
    record_dir: Path = Path("recordings")
    screenshot_dir: Path = Path("screenshots")


@dataclass
class PlayStats:
    frames_shown: int = 0
    actions_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # action sent -> answering frame on screen
    last_tick: int = -1
    recordings: list[Path] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


class PlayApp:
    """The player's loop: input -> action messages; frames -> window. `script` posts pygame events
    at given times (seconds from start), so tests and benchmarks drive the real input path."""

    def __init__(self, client: Client, config: PlayConfig | None = None, start: dict | None = None) -> None:
        self.client, self.config = client, config or PlayConfig()
        self.start = start or {}
        self.held_keys: set[str] = set()
        self.held_mouse: set[int] = set()
        self.mouse_delta = [0.0, 0.0]
        self.hotbar: int | None = None
        self._last_held: tuple[bool, ...] = (False,) * len(BUTTONS)  # buttons of the last action sent
        self.grabbed = False
        self.recorder: Recorder | None = None
        self._record_lock = threading.Lock()
        self.stats = PlayStats()
        self.meter = RateMeter()
        resolution = (client.welcome["height"], client.welcome["width"])
        self.window = FrameWindow(f"patchworld — session {client.session}", resolution, self.config.window)
        client.on_frame = self._record_frame

    def run(self, max_seconds: float | None = None, script: list[tuple[float, object]] = ()) -> PlayStats:
        import pygame

        clock = pygame.time.Clock()
        pending = sorted(script, key=lambda item: item[0])
        t0 = time.monotonic()
        try:
            while self.client.connected and self.client.ended is None:
                elapsed = time.monotonic() - t0
                if max_seconds is not None and elapsed >= max_seconds:
                    break
                while pending and pending[0][0] <= elapsed:
                    pygame.event.post(pending.pop(0)[1])
                edge, quit_requested = self._handle_events(pygame.event.get())
                if quit_requested:
                    break
                got = self.client.latest()
                if got is not None or edge:
                    self._send(camera_keys=got is not None)
                self.window.show(got.image if got is not None else None, self._hud(got))
                if got is not None:
                    self._displayed(got)
                clock.tick(self.config.display_hz)
        finally:
            self._stop_recording()
            self.window.close()
        return self.stats

    # --- input -------------------------------------------------------------------------

    def _handle_events(self, events: list) -> tuple[bool, bool]:
        """-> (an input edge happened, quit requested)."""
        import pygame

        edge = False
        controls = self.config.controls
        bound = set(controls.key_bindings) | set(controls.key_camera)
        for event in events:
            if event.type == pygame.QUIT:
                return edge, True
            if event.type == pygame.KEYDOWN:
                name = pygame.key.name(event.key)
                if name == "escape":
                    self._grab(False)
                elif name == "r":
                    self.client.reset()
                elif name == "f5":
                    self._toggle_recording()
                elif name == "f2":
                    self._screenshot()
                elif name in controls.hotbar_keys:
                    self.hotbar, edge = controls.hotbar_keys[name], True
                elif name in bound:
                    self.held_keys.add(name)
                    edge = True
            elif event.type == pygame.KEYUP:
                name = pygame.key.name(event.key)
                if name in self.held_keys:
                    self.held_keys.discard(name)
                    edge = True
            elif event.type == pygame.MOUSEBUTTONDOWN:
                if not self.grabbed:
                    self._grab(True)  # the click that grabs the mouse is not an attack
                elif event.button in controls.mouse_bindings:
                    self.held_mouse.add(event.button)
                    edge = True
            elif event.type == pygame.MOUSEBUTTONUP and event.button in self.held_mouse:
                self.held_mouse.discard(event.button)
                edge = True
            elif event.type == pygame.MOUSEMOTION and self.grabbed:
                self.mouse_delta[0] += event.rel[0]
                self.mouse_delta[1] += event.rel[1]
        return edge, False

    def _grab(self, on: bool) -> None:
        import pygame

        self.grabbed = on
        pygame.event.set_grab(on)
        pygame.mouse.set_visible(not on)

    def _send(self, camera_keys: bool) -> None:
        """One action message. Key-turning (arrow keys) counts once per received frame only, so an
        extra message on a key edge does not turn twice in one tick."""
        keys = self.held_keys if camera_keys else self.held_keys - set(self.config.controls.key_camera)
        action = action_from_input(keys, self.held_mouse, tuple(self.mouse_delta), self.hotbar,
                                   config=self.config.controls)
        held = tuple(getattr(action, name) for name in BUTTONS)
        # the HUD's latency: actions that change something (a button, a camera move, a hotbar press)
        changes = held != self._last_held or action.yaw != 0.0 or action.pitch != 0.0 or action.hotbar is not None
        self.client.send_action(action, timed=changes)
        self._last_held = held
        self.mouse_delta, self.hotbar = [0.0, 0.0], None
        self.stats.actions_sent += 1

    # --- output ------------------------------------------------------------------------

    def _displayed(self, got: ReceivedFrame) -> None:
        now = time.monotonic()
        self.meter.tick(now)
        for sent in got.answered_sent_at:
            latency = (now - sent) * 1000.0
            self.meter.latencies_ms.append(latency)
            self.stats.latencies_ms.append(latency)
        self.stats.frames_shown += 1
        self.stats.last_tick = got.frame.tick

    def _hud(self, got: ReceivedFrame | None) -> list[str]:
        latency = self.meter.latency_ms
        lines = [f"{self.meter.rate:4.1f} fps   latency {'-' if latency is None else f'{latency:.0f} ms'}",
                 f"session {self.client.session}   {self.client.welcome['backend']}"]
        if got is not None:
            lines.append(f"tick {got.frame.tick}   gen {got.frame.gen_ms:.0f} ms")
        lines.append("REC" if self.recorder is not None else "F5 record  F2 shot  R reset")
        if not self.grabbed:
            lines.append("click to look around, Esc to release")
        return lines

    def _toggle_recording(self) -> None:
        if self.recorder is not None:
            self._stop_recording()
            return
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = self.config.record_dir / f"{self.client.session}-{stamp}"
        info = RecordingInfo(resolution=(self.client.welcome["height"], self.client.welcome["width"]),
                             backend=self.client.welcome["backend"], start=self.start,
                             seed=self.start.get("seed"), extra={"session": self.client.session,
                                                                 "recorded_by": "client"})
        with self._record_lock:
            self.recorder = Recorder(folder, info)
        self.stats.recordings.append(folder)
        print(f"recording to {folder}")

    def _record_frame(self, got: ReceivedFrame) -> None:
        with self._record_lock:
            if self.recorder is not None:
                self.recorder.write(got.image, got.frame.action, tick=got.frame.tick, seq=got.frame.seq,
                                    gen_ms=got.frame.gen_ms)

    def _stop_recording(self) -> None:
        with self._record_lock:
            if self.recorder is not None:
                self.recorder.close()
                print(f"recorded {self.recorder.frames} frames to {self.recorder.directory}")
                self.recorder = None

    def _screenshot(self) -> None:
        from PIL import Image

        if self.window.image is None:
            return
        self.config.screenshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.config.screenshot_dir / f"{self.client.session}-{self.stats.last_tick:06d}.png"
        Image.fromarray(np.ascontiguousarray(self.window.image)).save(path)
        self.stats.screenshots.append(path)
        print(f"screenshot {path}")


# --- command line ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simulator.serve.cli import add_backend_arguments, add_server_arguments

    parser.add_argument("--url", help="join a remote server (ws://host:port) instead of starting one")
    add_backend_arguments(parser)
    add_server_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="world seed to start from")
    parser.add_argument("--image", type=Path, help="start from this PNG/JPEG instead (image to world)")
    parser.add_argument("--format", choices=P.FORMATS, default=P.DEFAULT_FORMAT, help="frame encoding")
    parser.add_argument("--scale", type=int, default=WindowConfig.scale, help="window pixels per frame pixel")
    parser.add_argument("--controls", choices=sorted(CONTROL_PRESETS), default="default", help="mouse feel")
    parser.add_argument("--record-dir", type=Path, default=PlayConfig.record_dir, help="where F5 records go")
    parser.add_argument("--seconds", type=float, help="quit after this long (demos, headless runs)")


def main(args: argparse.Namespace) -> int:
    from simulator.serve.cli import start_local_server

    start = P.Start(image=args.image.read_bytes()) if args.image else P.Start(seed=args.seed)
    server = None
    url = args.url
    if url is None:
        server = start_local_server(args)
        if server is None:
            return 1
        url = server.url
    try:
        try:
            client = Client(url, start=start, fmt=args.format)
        except (ConnectionError, OSError) as err:
            print(f"could not join {url}: {err}")
            return 1
        config = PlayConfig(window=WindowConfig(scale=args.scale), controls=CONTROL_PRESETS[args.controls],
                            record_dir=args.record_dir)
        print(f"session {client.session} on {url}: watch it with "
              f"`patchworld watch --url {url} --session {client.session}`")
        described = {"seed": args.seed} if args.image is None else {"image": str(args.image)}
        stats = PlayApp(client, config, start=described).run(max_seconds=args.seconds)
        client.close()
        if stats.latencies_ms:
            print(f"{stats.frames_shown} frames shown, median action-to-frame latency "
                  f"{float(np.median(stats.latencies_ms)):.0f} ms")
    finally:
        if server is not None:
            server.stop()
    return 0
