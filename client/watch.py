"""`patchworld watch --url U --session ID`: spectate a session in a window (read only).

The server sends a viewer only the latest frame it can take, so a slow window skips frames and
never slows the player.
"""

from __future__ import annotations

import argparse
import time

from client.net import Client
from client.window import FrameWindow, RateMeter, WindowConfig
from simulator.serve import protocol as P


def watch(client: Client, config: WindowConfig | None = None, max_seconds: float | None = None,
          display_hz: int = 60) -> int:
    """Show the session's frames until it ends, the window closes, or `max_seconds`; returns frames shown."""
    import pygame

    window = FrameWindow(f"patchworld — watching {client.session}",
                         (client.welcome["height"], client.welcome["width"]), config)
    meter, clock, shown, t0 = RateMeter(), pygame.time.Clock(), 0, time.monotonic()
    try:
        while client.connected and (max_seconds is None or time.monotonic() - t0 < max_seconds):
            if any(event.type == pygame.QUIT for event in pygame.event.get()):
                break
            got = client.latest()
            hud = [f"{meter.rate:4.1f} fps   watching {client.session}"]
            if got is not None:
                meter.tick()
                shown += 1
                hud.append(f"tick {got.frame.tick}   gen {got.frame.gen_ms:.0f} ms")
            if client.ended is not None:
                hud.append(f"session ended: {client.ended}")
            window.show(got.image if got is not None else None, hud)
            clock.tick(display_hz)
    finally:
        window.close()
    return shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="server address, ws://host:port")
    parser.add_argument("--session", required=True, help="session id (the player's window shows it)")
    parser.add_argument("--format", choices=P.FORMATS, default=P.DEFAULT_FORMAT, help="frame encoding")
    parser.add_argument("--scale", type=int, default=WindowConfig.scale, help="window pixels per frame pixel")
    parser.add_argument("--seconds", type=float, help="quit after this long")


def main(args: argparse.Namespace) -> int:
    try:
        client = Client(args.url, role="viewer", session=args.session, fmt=args.format)
    except ConnectionError as err:
        print(err)
        return 1
    shown = watch(client, WindowConfig(scale=args.scale), max_seconds=args.seconds)
    reason = client.ended
    client.close()
    print(f"{shown} frames shown" + (f"; session ended: {reason}" if reason else ""))
    return 0
