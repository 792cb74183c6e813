"""`patchworld bench latency`: action-to-displayed-frame latency through a real client on loopback.

Starts a local server (the model, or the engine with --engine), connects the real websocket
client, and shows frames in a pygame window (SDL's dummy driver when there is no display). At
random moments (not aligned to the server's ticks, as a human's key presses are not) it sends a
changed action; the latency of that action is the time from sending it to the moment the first
frame answering it has been decoded and flipped onto the window.
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np

from client.net import Client
from client.window import FrameWindow, WindowConfig
from simulator.actions import Action
from simulator.benchlog import add_record_arguments, markdown_table, record
from simulator.serve import protocol as P

TARGET_MEDIAN_MS, TARGET_P99_MS = 80.0, 200.0


PATTERNS = ("random", "look")


def measure(url: str, actions: int, mean_gap_s: float, fmt: str, seed: int = 0,
            pattern: str = "random") -> tuple[list[float], float]:
    """Latencies (ms) of `actions` actions through a displaying client, sent at random moments
    ("random": key presses) or one per displayed frame with a camera move ("look": `patchworld
    play` while the mouse turns the camera); and the frames/s the window showed meanwhile."""
    import pygame

    rng = random.Random(seed)
    client = Client(url, start=P.Start(seed=seed), fmt=fmt)
    window = FrameWindow("patchworld latency", (client.welcome["height"], client.welcome["width"]),
                         WindowConfig(scale=4))
    latencies: list[float] = []
    waiting: dict[int, float] = {}  # seq -> sent at
    next_send = time.monotonic() + 0.5
    sent = shown_frames = 0
    began = time.monotonic()
    try:
        while len(latencies) < actions and client.connected:
            pygame.event.pump()
            now = time.monotonic()
            if pattern == "random" and now >= next_send and sent < actions:
                action = Action(forward=sent % 2 == 0, yaw=4.0 * (sent % 3 - 1))
                waiting[client.send_action(action)] = time.monotonic()
                sent += 1
                next_send = now + rng.expovariate(1.0 / mean_gap_s)
            got = client.wait_frame(timeout_s=0.002)
            if got is None:
                continue
            window.show(got.image, [])
            shown = time.monotonic()
            shown_frames += 1
            for seq in [s for s in waiting if s <= got.frame.seq]:
                latencies.append((shown - waiting.pop(seq)) * 1000.0)
            if pattern == "look" and sent < actions:
                waiting[client.send_action(Action(forward=True, yaw=3.0 if sent % 2 else -3.0))] = time.monotonic()
                sent += 1
    finally:
        window.close()
        client.close()
    return latencies, shown_frames / (time.monotonic() - began)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simulator.serve.cli import add_backend_arguments, add_server_arguments

    add_backend_arguments(parser)
    add_server_arguments(parser)
    parser.add_argument("--url", help="measure against this server instead of starting a local one")
    parser.add_argument("--actions", type=int, default=200, help="actions to time")
    parser.add_argument("--gap", type=float, default=0.15, help="mean seconds between actions (exponential)")
    parser.add_argument("--pattern", choices=PATTERNS, default="random",
                        help="when actions are sent: at random moments (key presses; default) or one per displayed "
                             "frame with a camera move (mouse look)")
    parser.add_argument("--format", choices=P.FORMATS, default=P.DEFAULT_FORMAT)
    add_record_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from simulator.serve.cli import start_local_server

    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: the display path still runs
    server, url, what = None, args.url, f"remote server {args.url}"
    if url is None:
        server = start_local_server(args)
        if server is None:
            return 1
        url, backend = server.url, server.server.backend
        what = ("engine backend (ground-truth engine, not the model)" if backend.name == "engine"
                else f"dream backend, checkpoint {backend.checkpoint}") + f", {backend.resolution[0]}x" \
                                                                           f"{backend.resolution[1]}, loopback"
    try:
        measured, fps = measure(url, args.actions, args.gap, args.format, pattern=args.pattern)
        latencies = np.array(measured)
    finally:
        if server is not None:
            server.stop()
    median, p99 = float(np.median(latencies)), float(np.percentile(latencies, 99))
    table = markdown_table(["actions", "median ms", "p90 ms", "p99 ms", "max ms", "frames/s shown",
                            "targets (median / p99)", "met"],
                           [[len(latencies), median, float(np.percentile(latencies, 90)), p99,
                             float(latencies.max()), fps, f"{TARGET_MEDIAN_MS:.0f} / {TARGET_P99_MS:.0f} ms",
                             "yes" if median <= TARGET_MEDIAN_MS and p99 <= TARGET_P99_MS else "no"]])
    when = (f"actions at random moments (mean gap {args.gap} s)" if args.pattern == "random"
            else "one action per displayed frame, each turning the camera (mouse look)")
    if args.url:
        ticks = "the remote server's tick policy"
    elif args.no_restart:
        ticks = "fixed 20 Hz ticks (--no-restart)"
    else:
        ticks = "a new, different action restarts a tick that has just begun"
    notes = (f"{what}; {args.format} frames; {when}; latency = send -> first answering frame decoded and "
             f"flipped to a pygame window (SDL driver {os.environ.get('SDL_VIDEODRIVER') or 'default'}); "
             f"{ticks}. " + args.note).strip()
    record("Latency: action to displayed frame", table, notes=notes, dry_run=args.no_record)
    return 0
