"""The websocket server: connections, the 20 Hz tick loop over all sessions, fan-out to viewers.

One asyncio event loop owns the network; one worker thread owns the backend (every backend
call, open/step/reset/close, runs there, in order). Each tick, the actions of all sessions go to
the backend in one batched `step`, the frames are encoded once per (format, quality) a session's
clients asked for, and land in each client's latest-frame slot (sessions.Outbox).

Untrusted input is validated in protocol.py; anything invalid gets an `error` message (or a clean
close when fatal) and touches no other session. Messages are msgpack only: nothing is unpickled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from simulator.actions import NOOP, Action
from simulator.rollout.backend import Backend, StartCondition
from simulator.rollout.recorder import Recorder, RecordingInfo
from simulator.serve import protocol as P
from simulator.serve.codec import decode_start_image, encode_frame
from simulator.serve.sessions import Outbox, RateLimiter, Session, new_session_id

log = logging.getLogger(__name__)

CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TRY_AGAIN = 1000, 1008, 1013


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"  # localhost unless told otherwise
    port: int = 8765  # 0 = any free port (see Server.port once started)
    tick_hz: float = P.TICK_HZ
    max_message_bytes: int = P.MAX_MESSAGE_BYTES  # larger messages close the connection (1009)
    rate_per_s: float = 60.0  # messages per second per connection, on average (3 per tick)
    rate_burst: float = 120.0
    rate_close_after: int = 1000  # dropped messages after which a flooding connection is closed
    max_viewers: int = 32  # per session
    hello_timeout_s: float = 10.0
    default_seed: int = 0  # a player's start when its hello names none
    record_dir: Path | None = None  # record every session epoch under this folder
    # a player's action that arrives while a slow backend (the model) is early in a tick, and
    # changes that tick's action, abandons the tick and restarts it with the action: the answer
    # comes up to a whole tick sooner (at most one restart per tick; docs/protocol.md "Timing")
    restart_on_action: bool = True


SERVER_PRESETS: dict[str, ServerConfig] = {
    "local": ServerConfig(),
    "public": ServerConfig(host="0.0.0.0", rate_per_s=40.0, rate_burst=80.0, max_viewers=8),
}


class Server:
    def __init__(self, backend: Backend, config: ServerConfig | None = None) -> None:
        self.backend, self.config = backend, config or ServerConfig()
        self.sessions: dict[str, Session] = {}
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="backend")
        self._server: Any = None
        self._ticker: asyncio.Task | None = None
        self.port: int | None = None
        self.ticks = 0
        self.restarts = 0  # ticks abandoned for a newer action and run again

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(self._connection, self.config.host, self.config.port,
                                   max_size=self.config.max_message_bytes, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_loop())
        log.info("serving %s backend on ws://%s:%d", self.backend.name, self.config.host, self.port)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for session in list(self.sessions.values()):
            await self._end_session(session, "server stopping", tell_player=True)
        if self._server is not None:
            self._server.close()  # waits for each connection's handler, which flushes its `ended`
            await self._server.wait_closed()
        self._worker.shutdown(wait=True)

    async def _backend(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # --- the tick loop -------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        period = 1.0 / self.config.tick_hz
        deadline = time.monotonic()
        while True:
            try:
                await self._tick()
            except Exception:  # a failed tick must not stop the server; the next one tries again
                log.exception("tick %d failed", self.ticks)
            deadline += period
            delay = deadline - time.monotonic()
            if delay < 0:
                deadline = time.monotonic()  # running behind: no catch-up burst, just go on at full speed
            await asyncio.sleep(max(0.0, delay))

    async def _tick(self) -> None:
        for session in [s for s in self.sessions.values() if s.live and s.pending_reset is not None]:
            await self._reset_session(session)
        sessions = [s for s in self.sessions.values() if s.live and not s.closed]
        if not sessions:
            return
        frames, actions, seqs, gen_ms = await self._step(sessions, restartable=self.config.restart_on_action)
        if frames is None:  # abandoned for a newer action: once more with it, to the end this time
            self.restarts += 1
            sessions = [s for s in sessions if not s.closed]  # a player may have left meanwhile
            if not sessions:
                return
            frames, actions, seqs, gen_ms = await self._step(sessions, restartable=False)
        self.ticks += 1
        for s in sessions:
            s.tick += 1
        # formats are read here, on the loop thread that changes the viewer sets, not in the worker
        jobs = [(s, frames[s.slot], actions[s.slot], seqs[s.id], s.formats()) for s in sessions]
        messages = await self._backend(self._encode_all, jobs, gen_ms)
        for session, per_format in messages:
            self._publish(session, per_format)
        # what the step left for later (the model's cache pass) runs now, while the frames go
        # out, not after the next tick's actions are read
        await self._backend(self.backend.idle)

    async def _step(self, sessions: list[Session], restartable: bool) -> tuple:
        """Take each session's action for this tick and step the backend: (frames or None when
        abandoned, actions, answered seqs, ms). An abandoned step gives its actions back."""
        actions = {s.slot: s.merger.take() for s in sessions}
        seqs = {s.id: s.merger.answered_seq for s in sessions}
        abort = (lambda: any(s.merger.changed() for s in sessions)) if restartable else None
        t0 = time.perf_counter()
        frames = await self._backend(self.backend.step, actions, abort)
        if frames is None:
            for s in sessions:
                s.merger.untake()
        return frames, actions, seqs, (time.perf_counter() - t0) * 1000.0

    def _encode_all(self, jobs: list[tuple[Session, np.ndarray, Action, int, set[tuple[str, int]]]],
                    gen_ms: float) -> list[tuple[Session, dict[tuple[str, int], bytes]]]:
        """Worker thread: encode each session's frame once per requested format, write recordings."""
        out = []
        for session, frame, action, seq, formats in jobs:
            if session.closed:  # its player left during the step; its recorder is already closed
                continue
            if session.recorder is not None:
                session.recorder.write(frame, action, tick=session.tick, seq=seq, gen_ms=gen_ms)
            out.append((session, self._frame_messages(session, formats, frame, action, seq, gen_ms)))
        return out

    def _frame_messages(self, session: Session, formats: set[tuple[str, int]], frame: np.ndarray, action: Action,
                        seq: int, gen_ms: float) -> dict[tuple[str, int], bytes]:
        height, width = frame.shape[:2]
        return {(fmt, quality): P.pack(P.frame_message(P.Frame(
                    session=session.id, tick=session.tick, seq=seq, format=fmt, width=width, height=height,
                    data=encode_frame(frame, fmt, quality), gen_ms=round(gen_ms, 3), action=action,
                    epoch=session.epoch)))
                for fmt, quality in formats}

    # --- sessions ------------------------------------------------------------------------

    async def _open_session(self, hello: P.Hello, outbox: Outbox) -> Session:
        """Open a slot, queue welcome then the start frame (tick 0), and only then let ticks see it."""
        start = self._start_condition(hello.start)
        try:
            slot = await self._backend(self.backend.open, start)
        except RuntimeError as err:
            raise P.ProtocolError("full", str(err), fatal=True) from None
        except ValueError as err:
            raise P.ProtocolError("bad_start", str(err), fatal=True) from None
        session = Session(id=new_session_id(), slot=slot, start=start, player=outbox)
        self.sessions[session.id] = session
        outbox.put_control(self._welcome(session, "player", outbox))
        self._publish(session, await self._backend(self._begin_epoch, session, session.formats()), keep=True)
        session.live = True
        return session

    def _publish(self, session: Session, per_format: dict[tuple[str, int], bytes], keep: bool = False) -> None:
        """Hand a tick's frames to every outbox; `keep`: an epoch's start frame, which no later frame skips."""
        if session.closed:
            return
        for outbox in session.outboxes():
            data = per_format.get((outbox.format, outbox.quality))
            if data is not None:  # None: a viewer that joined during this tick; it gets the next one
                outbox.put_frame(data, keep=keep)

    def _start_condition(self, start: P.Start) -> StartCondition:
        if start.image is not None:
            return StartCondition(image=decode_start_image(start.image))
        return StartCondition(seed=self.config.default_seed if start.seed is None else start.seed)

    def _begin_epoch(self, session: Session, formats: set[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
        """Worker thread: (re)start the recording; returns the start frame's (tick 0) messages."""
        frame = self.backend.frame(session.slot)
        if self.config.record_dir is not None:
            if session.recorder is not None:
                session.recorder.close()
            info = RecordingInfo(resolution=self.backend.resolution, backend=self.backend.name,
                                 start=session.start.describe(), seed=session.start.seed,
                                 checkpoint=self.backend.checkpoint, extra={"session": session.id})
            session.recorder = Recorder(Path(self.config.record_dir) / f"{session.id}-{session.epoch}", info)
            session.recorder.write(frame, NOOP, tick=0)
        return self._frame_messages(session, formats, frame, NOOP, session.merger.answered_seq, 0.0)

    async def _reset_session(self, session: Session) -> None:
        start, session.pending_reset = session.pending_reset, None
        try:
            await self._backend(self.backend.reset, session.slot, start)
        except ValueError as err:
            session.player.put_control(P.pack(P.error(P.ProtocolError("bad_start", str(err)))))
            return
        session.start, session.tick = start, 0
        session.epoch += 1
        self._publish(session, await self._backend(self._begin_epoch, session, session.formats()), keep=True)

    async def _end_session(self, session: Session, reason: str, tell_player: bool = False) -> None:
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        ended = P.pack({"type": "ended", "session": session.id, "reason": reason})
        for outbox in session.outboxes() if tell_player else session.viewers:
            outbox.put_control(ended)
            outbox.close(CLOSE_NORMAL, "session ended")
        await self._backend(self._close_slot, session)

    def _close_slot(self, session: Session) -> None:
        if session.recorder is not None:
            session.recorder.close()
        self.backend.close(session.slot)

    # --- connections ---------------------------------------------------------------------

    async def _connection(self, ws: ServerConnection) -> None:
        outbox: Outbox | None = None
        try:
            hello = await self._read_hello(ws)
            if hello is None:
                return
            outbox = Outbox(hello.format, hello.quality)
            sender = asyncio.create_task(self._send_loop(ws, outbox))
            try:
                if hello.role == "player":
                    await self._player(ws, hello, outbox)
                else:
                    await self._viewer(ws, hello, outbox)
            except P.ProtocolError as err:  # fatal here, whatever its origin: the connection closes
                outbox.put_control(P.pack(P.error(P.ProtocolError(err.code, str(err), fatal=True))))
                outbox.close(CLOSE_POLICY, err.code)
            finally:
                if outbox.closing is None:
                    outbox.close(CLOSE_NORMAL, "bye")
                # keep reading (and discarding) while closing: unread input would stop the transport
                # from reading and the peer's close frame would never be seen
                drain = asyncio.create_task(self._drain(ws))
                try:
                    await asyncio.wait_for(sender, timeout=5.0)
                except (asyncio.TimeoutError, ConnectionClosed):
                    sender.cancel()
                drain.cancel()
        except ConnectionClosed:
            pass
        except Exception as exc:  # one connection's failure must never reach the others
            log.exception("connection from %s failed", ws.remote_address)
            try:
                await ws.send(P.pack(P.error(P.ProtocolError("internal", f"server error: {type(exc).__name__}",
                                                             fatal=True))))
                await ws.close(1011, "internal error")
            except ConnectionClosed:
                pass

    async def _read_hello(self, ws: ServerConnection) -> P.Hello | None:
        try:
            data = await asyncio.wait_for(ws.recv(), timeout=self.config.hello_timeout_s)
            message = P.parse_client(P.unpack(data))
            if not isinstance(message, P.Hello):
                raise P.ProtocolError("not_allowed", f"the first message must be 'hello', got "
                                                     f"{type(message).__name__.lower()}", fatal=True)
            return message
        except asyncio.TimeoutError:
            err = P.ProtocolError("not_allowed", f"no hello within {self.config.hello_timeout_s} s", fatal=True)
        except P.ProtocolError as e:
            err = e
        await ws.send(P.pack(P.error(P.ProtocolError(err.code, str(err), fatal=True))))
        await ws.close(CLOSE_POLICY, err.code)
        return None

    def _welcome(self, session: Session, role: str, outbox: Outbox) -> bytes:
        height, width = self.backend.resolution
        return P.pack({"type": "welcome", "version": P.PROTOCOL_VERSION, "role": role, "session": session.id,
                       "width": width, "height": height, "tick_hz": self.config.tick_hz,
                       "backend": self.backend.name, "format": outbox.format, "quality": outbox.quality,
                       "max_message_bytes": self.config.max_message_bytes,
                       "recording": session.recorder is not None or self.config.record_dir is not None})

    async def _player(self, ws: ServerConnection, hello: P.Hello, outbox: Outbox) -> None:
        session = await self._open_session(hello, outbox)
        try:
            await self._receive(ws, session, outbox, player=True)
        finally:
            await self._end_session(session, "player left")

    async def _viewer(self, ws: ServerConnection, hello: P.Hello, outbox: Outbox) -> None:
        session = self.sessions.get(hello.session)
        if session is None or session.closed:
            raise P.ProtocolError("no_session", f"no session {hello.session!r} on this server", fatal=True)
        if len(session.viewers) >= self.config.max_viewers:
            raise P.ProtocolError("full", f"session {session.id} already has {self.config.max_viewers} viewers",
                                  fatal=True)
        outbox.put_control(self._welcome(session, "viewer", outbox))
        session.viewers.add(outbox)
        try:
            await self._receive(ws, session, outbox, player=False)
        finally:
            session.viewers.discard(outbox)

    async def _receive(self, ws: ServerConnection, session: Session, outbox: Outbox, player: bool) -> None:
        limiter = RateLimiter(self.config.rate_per_s, self.config.rate_burst)
        async for data in ws:
            if outbox.closing is not None:
                return
            if not limiter.allow():
                if limiter.dropped >= self.config.rate_close_after:
                    raise P.ProtocolError("rate_limited", f"{limiter.dropped} messages over the limit of "
                                                          f"{self.config.rate_per_s}/s; closing", fatal=True)
                if limiter.should_warn():
                    outbox.put_control(P.pack(P.error(P.ProtocolError(
                        "rate_limited", f"over {self.config.rate_per_s} messages/s; message dropped"))))
                continue
            try:
                self._handle(P.parse_client(P.unpack(data)), session, outbox, player)
            except P.ProtocolError as err:
                if err.fatal:
                    raise
                outbox.put_control(P.pack(P.error(err)))

    def _handle(self, message: P.ClientMessage, session: Session, outbox: Outbox, player: bool) -> None:
        if isinstance(message, P.Ping):
            outbox.put_control(P.pack({"type": "pong", "t": message.t, "server_time": time.time()}))
        elif isinstance(message, P.Hello):
            raise P.ProtocolError("not_allowed", "hello was already received on this connection")
        elif not player:
            raise P.ProtocolError("not_allowed", f"a viewer may only send ping, got {type(message).__name__}")
        elif isinstance(message, P.ActionMessage):
            if message.seq <= session.merger.last_seq:
                raise P.ProtocolError("out_of_order", f"action seq {message.seq} is not greater than the "
                                                      f"previous {session.merger.last_seq}; ignored")
            session.merger.add(message.seq, message.action)
        elif isinstance(message, P.Reset):
            session.pending_reset = session.start if message.start is None else self._start_condition(message.start)

    @staticmethod
    async def _drain(ws: ServerConnection) -> None:
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass

    async def _send_loop(self, ws: ServerConnection, outbox: Outbox) -> None:
        while True:
            batch = await outbox.next()
            if batch is None:
                code, reason = outbox.closing
                await ws.close(code, reason)
                return
            for data in batch:
                await ws.send(data)


class ServerThread:
    """A server on its own event loop in a background thread (for `patchworld play` and tests)."""

    def __init__(self, backend: Backend, config: ServerConfig | None = None) -> None:
        self.server = Server(backend, config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="patchworld-server", daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        return self

    @property
    def url(self) -> str:
        host = self.server.config.host
        return f"ws://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.server.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
