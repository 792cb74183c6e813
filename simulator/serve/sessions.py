"""Per-session and per-connection state of the server: how actions are merged into ticks, the
per-client outbox with its latest-frame slot, and the per-connection rate limit.

Nothing here touches the network or the backend; server.py wires these together.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import time
from dataclasses import dataclass, field

from simulator.actions import BUTTONS, CAMERA_MAX_DEG, Action
from simulator.rollout.backend import StartCondition
from simulator.rollout.recorder import Recorder


class ActionMerger:
    """Turns a player's action messages into one action per tick.

    Each message states the buttons held from now on, plus a camera move and a hotbar press to
    apply once. A tick applies: every button held in any message since the previous tick (so a
    tap shorter than a tick still lands), or the last message's buttons when none arrived; the
    sum of the camera moves (clamped to the per-tick range); the last hotbar press. The result is
    quantized: what the player sees applied is exactly what the model was given.
    """

    def __init__(self) -> None:
        self._pending: list[Action] = []
        self._held = Action()
        self.last_seq = -1  # seq of the latest action received
        self.answered_seq = -1  # seq of the latest action merged into a tick
        # what the last take() consumed (messages, held action and answered seq before it) and gave
        self._taken: tuple[list[Action], Action, int] | None = None
        self._took: Action | None = None

    def add(self, seq: int, action: Action) -> None:
        self._pending.append(action)
        self.last_seq = seq

    def take(self) -> Action:
        pending, self._pending = self._pending, []
        self._taken = (pending, self._held, self.answered_seq)
        if pending:
            self._held = pending[-1]
            self.answered_seq = self.last_seq
        self._took = self._merge(pending, self._held)
        return self._took

    def changed(self) -> bool:
        """Whether the messages that arrived since the last take() would change the action it gave
        (a client repeats its action every frame: only a real change is worth restarting a tick).
        Safe to ask from another thread while messages arrive."""
        newer = list(self._pending)
        if not newer or self._taken is None:
            return False
        return self._merge(self._taken[0] + newer, self._held) != self._took

    def untake(self) -> None:
        """Undo the last take(): its tick was abandoned, so the next take() merges its messages
        with the newer ones (a tap or a camera move sent before the restart still lands)."""
        if self._taken is None:
            raise RuntimeError("untake() without a take() before it")
        (pending, self._held, self.answered_seq), self._taken = self._taken, None
        self._pending = pending + self._pending

    @staticmethod
    def _merge(pending: list[Action], held: Action) -> Action:
        if not pending:
            return Action(**{n: getattr(held, n) for n in BUTTONS})
        buttons = {n: any(getattr(a, n) for a in pending) for n in BUTTONS}
        presses = [a.hotbar for a in pending if a.hotbar is not None]
        yaw = max(-CAMERA_MAX_DEG, min(CAMERA_MAX_DEG, sum(a.yaw for a in pending)))
        pitch = max(-CAMERA_MAX_DEG, min(CAMERA_MAX_DEG, sum(a.pitch for a in pending)))
        return Action(**buttons, hotbar=presses[-1] if presses else None, yaw=yaw, pitch=pitch).quantized()


class Outbox:
    """What one connection has still to send: a short queue of control messages (errors, pongs,
    welcome) and ONE latest-frame slot. A new frame overwrites an unsent one, so a slow client
    skips frames and the producer never waits for it. A kept frame (an epoch's start frame, tick 0)
    is never skipped: it queues behind the control messages and discards the stale frame before it."""

    CONTROL_LIMIT = 64  # control messages beyond this are dropped (a client not reading its errors)

    def __init__(self, fmt: str, quality: int) -> None:
        self.format, self.quality = fmt, quality
        self._control: collections.deque[bytes] = collections.deque(maxlen=self.CONTROL_LIMIT)
        self._frame: bytes | None = None
        self._wake = asyncio.Event()
        self.closing: tuple[int, str] | None = None  # (close code, reason) once the server ends this connection
        self.frames_put = 0
        self.frames_skipped = 0

    def put_control(self, data: bytes) -> None:
        self._control.append(data)
        self._wake.set()

    def put_frame(self, data: bytes, keep: bool = False) -> None:
        if self._frame is not None:
            self.frames_skipped += 1
        if keep:  # sent in order after the control messages; frames put later follow it
            self._frame = None
            self._control.append(data)
        else:
            self._frame = data
        self.frames_put += 1
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        self.closing = (code, reason)
        self._wake.set()

    async def next(self) -> list[bytes] | None:
        """Wait for something to send: control messages first, then the latest frame. None = close."""
        await self._wake.wait()
        self._wake.clear()
        out = list(self._control)
        self._control.clear()
        if self._frame is not None:
            out.append(self._frame)
            self._frame = None
        if not out and self.closing is not None:
            return None
        if self.closing is not None:
            self._wake.set()  # come back once more to close after flushing
        return out


class RateLimiter:
    """Token bucket per connection: `rate` messages/s on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._last = burst, time.monotonic()
        self.dropped = 0
        self._last_warning = -1e9

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.dropped += 1
        return False

    def should_warn(self) -> bool:
        """At most one rate_limited error per second, so the error replies are not a flood themselves."""
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            return True
        return False


def new_session_id() -> str:
    return secrets.token_urlsafe(6)  # 8 characters of [A-Za-z0-9_-], unguessable enough to share as a link


@dataclass
class Session:
    """One player's stream and its viewers."""

    id: str
    slot: int
    start: StartCondition
    player: Outbox
    viewers: set[Outbox] = field(default_factory=set)
    merger: ActionMerger = field(default_factory=ActionMerger)
    tick: int = 0
    epoch: int = 0  # increments on each reset
    pending_reset: StartCondition | None = None
    recorder: Recorder | None = None
    live: bool = False  # ticks step it only once its start frame is out
    closed: bool = False

    def outboxes(self) -> list[Outbox]:
        return [self.player, *self.viewers]

    def formats(self) -> set[tuple[str, int]]:
        """The (format, quality) pairs this tick's frame must be encoded in."""
        return {(o.format, o.quality) for o in self.outboxes()}
