"""A small reusable websocket client for the patchworld protocol (see docs/protocol.md).

Blocking API for a game loop: a background thread receives and decodes frames, keeping only the
latest one, so `latest()` never blocks and a slow display skips frames. Needs websockets,
msgpack, numpy and Pillow; no torch.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from simulator.actions import Action
from simulator.serve import protocol as P
from simulator.serve.codec import decode_frame

log = logging.getLogger(__name__)


@dataclass
class ReceivedFrame:
    frame: P.Frame
    image: np.ndarray  # uint8 [H, W, 3]
    received_at: float  # time.monotonic() when decoded
    answered_sent_at: list[float] = field(default_factory=list)  # send times of actions first answered here


class Client:
    """One connection as a player (creates a session) or a viewer (joins `session`)."""

    def __init__(self, url: str, role: str = "player", session: str | None = None, start: P.Start | None = None,
                 fmt: str = P.DEFAULT_FORMAT, quality: int = P.DEFAULT_QUALITY, timeout_s: float = 30.0) -> None:
        # entered as a context manager: websockets >= 16 deprecates using connect()'s result directly
        self._ws = connect(url, max_size=None if fmt == "raw" else 16 * 1024 * 1024, compression=None,
                           open_timeout=timeout_s, proxy=None).__enter__()
        self._ws.send(P.pack(P.hello(role, session=session, start=start, format=fmt, quality=quality)))
        first = P.unpack(self._ws.recv(timeout=timeout_s))
        if first["type"] == "error":
            self._ws.close()
            raise ConnectionError(f"server refused the hello: {first.get('code')}: {first.get('message')}")
        if first["type"] != "welcome":
            self._ws.close()
            raise ConnectionError(f"expected a welcome, got {first['type']!r}")
        self.welcome: dict[str, Any] = first
        self.session: str = first["session"]
        self.role = role
        self.errors: list[dict[str, Any]] = []
        self.ended: str | None = None  # the reason, once the server ends the session
        self.frames_received = 0
        self.frames_skipped = 0  # decoded frames replaced before the game loop took them
        self._seq = -1
        self._sent: dict[int, float] = {}  # seq -> send time, until answered
        self._answered = -1
        self._latest: ReceivedFrame | None = None
        self._cond = threading.Condition()
        self._closed = False
        # called from the receiving thread with every frame, skipped or not (e.g. a recorder)
        self.on_frame: Callable[[ReceivedFrame], None] | None = None
        self._thread = threading.Thread(target=self._receive, name="patchworld-client", daemon=True)
        self._thread.start()

    # --- sending -------------------------------------------------------------------------

    def send_action(self, action: Action, timed: bool = True) -> int:
        """Send one action; returns its sequence number. `timed`: count its latency (the send time
        comes back in the answering frame's `answered_sent_at`); a client repeating an unchanged
        action every frame leaves the repeats untimed, since nothing on screen answers them."""
        with self._cond:
            self._seq += 1
            seq = self._seq
            if timed:
                self._sent[seq] = time.monotonic()
        self._ws.send(P.pack(P.action_message(seq, action)))
        return seq

    def reset(self, start: P.Start | None = None) -> None:
        message: dict[str, Any] = {"type": "reset"}
        if start is not None:
            message["start"] = P.start_to_wire(start)
        self._ws.send(P.pack(message))

    def ping(self) -> None:
        self._ws.send(P.pack({"type": "ping", "t": time.monotonic()}))

    # --- receiving -----------------------------------------------------------------------

    def latest(self) -> ReceivedFrame | None:
        """The newest frame not yet taken, or None (never blocks)."""
        with self._cond:
            frame, self._latest = self._latest, None
            return frame

    def wait_frame(self, timeout_s: float = 5.0) -> ReceivedFrame | None:
        """Block until a frame not yet taken arrives (None on timeout or when the connection ends)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._latest is None and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._latest = self._latest, None
            return frame

    @property
    def connected(self) -> bool:
        return not self._closed

    def _receive(self) -> None:
        try:
            for data in self._ws:
                self._dispatch(P.unpack(data))
        except ConnectionClosed:
            pass
        except P.ProtocolError as err:
            log.error("server sent an invalid message: %s", err)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "frame":
            frame = P.parse_frame(message)
            image = decode_frame(frame.data, frame.format, frame.width, frame.height)
            now = time.monotonic()
            with self._cond:
                answered = []
                for seq in range(self._answered + 1, frame.seq + 1):
                    sent = self._sent.pop(seq, None)
                    if sent is not None:
                        answered.append(sent)
                self._answered = max(self._answered, frame.seq)
                if self._latest is not None:
                    self.frames_skipped += 1
                    answered = self._latest.answered_sent_at + answered
                self._latest = ReceivedFrame(frame, image, now, answered)
                self.frames_received += 1
                self._cond.notify_all()
            if self.on_frame is not None:
                try:
                    self.on_frame(ReceivedFrame(frame, image, now))
                except Exception:  # a failing hook (e.g. a full disk) must not stop the stream
                    log.exception("on_frame hook failed; the frame is still shown")
        elif kind == "error":
            self.errors.append(message)
            log.warning("server error %s: %s", message.get("code"), message.get("message"))
        elif kind == "ended":
            self.ended = str(message.get("reason", ""))

    def close(self) -> None:
        self._ws.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
