"""The wire protocol: message shapes, msgpack codec and validation of untrusted input.

Imports no torch (and no numpy beyond what `simulator.actions` needs), so a client needs only
msgpack and websockets. docs/protocol.md is the reference a client in another language is
written from; this module is its executable form. Every message is one msgpack map with a
string "type". Validation happens here, at the edge: a function either returns a clean,
typed message or raises `ProtocolError` naming the field, the value and the rule it broke.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgpack

from simulator.actions import Action, from_dict, to_dict

PROTOCOL_VERSION = 1
TICK_HZ = 20  # the engine's and the model's tick rate; the server ticks all sessions at this rate

MAX_MESSAGE_BYTES = 256 * 1024  # websocket max_size: an action is ~100 bytes; a start image needs more
MAX_START_IMAGE_PIXELS = 1024 * 1024  # decoded size cap on a start image (decompression bombs)
MAX_SEQ = 2**53 - 1  # largest sequence number (exact in a double, for JavaScript clients)
MAX_SEED = 2**63 - 1

ROLES = ("player", "viewer")
FORMATS = ("jpeg", "png", "raw")  # raw = H*W*3 bytes of uint8 RGB, row-major
DEFAULT_FORMAT = "jpeg"
DEFAULT_QUALITY = 90
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# client -> server message types
CLIENT_TYPES = ("hello", "action", "reset", "ping")
# server -> client message types
SERVER_TYPES = ("welcome", "frame", "error", "pong", "ended")

# error codes carried by {"type": "error", "code": ...}
ERROR_CODES = (
    "bad_msgpack",  # the bytes are not one msgpack value
    "bad_message",  # not a map, missing/extra field, wrong type, value out of range
    "unknown_type",  # "type" is not one of CLIENT_TYPES
    "version",  # the hello's version is not PROTOCOL_VERSION (fatal)
    "not_allowed",  # message not allowed in this state or role (e.g. action before hello, viewer sends action)
    "out_of_order",  # action seq not greater than the previous one
    "no_session",  # viewer asked for a session id that does not exist (fatal)
    "full",  # the server has no free session slot (fatal)
    "bad_start",  # the start condition cannot be used (e.g. image undecodable, seed out of range)
    "rate_limited",  # too many messages per second on this connection; the message was dropped
    "internal",  # the server failed on a valid request; the session is unaffected when possible
)


class ProtocolError(ValueError):
    """Invalid input from a peer. `code` is one of ERROR_CODES; `fatal` means the server closes."""

    def __init__(self, code: str, message: str, fatal: bool = False) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r} (known: {', '.join(ERROR_CODES)})")
        super().__init__(message)
        self.code, self.fatal = code, fatal


# --- codec -------------------------------------------------------------------------------

def pack(message: dict[str, Any]) -> bytes:
    """One message -> msgpack bytes (binary fields stay binary: use_bin_type)."""
    return msgpack.packb(message, use_bin_type=True)


def unpack(data: bytes | str) -> dict[str, Any]:
    """msgpack bytes from a peer -> a map with a string "type". Never executes anything:
    ext types are refused, and strings must be valid UTF-8."""
    if isinstance(data, str):
        raise ProtocolError("bad_msgpack", "text websocket frame: messages are binary msgpack frames")
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
    except ProtocolError:
        raise
    except Exception as err:  # msgpack raises several unrelated types on garbage
        raise ProtocolError("bad_msgpack", f"not one msgpack value ({type(err).__name__}: {err})") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_message", f"a message must be a msgpack map, got {type(value).__name__}")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", f"field 'type' must be a string, got {kind!r}")
    return value


def _refuse_ext(code: int, data: bytes) -> None:
    raise ProtocolError("bad_msgpack", f"msgpack ext type {code} is not part of the protocol")


# --- validated client messages ----------------------------------------------------------

@dataclass(frozen=True)
class Start:
    """Where a session starts: a world seed (the engine renders the first frames) or an
    encoded image (PNG/JPEG bytes; image to world). Both None = the server's default seed."""

    seed: int | None = None
    image: bytes | None = None


@dataclass(frozen=True)
class Hello:
    version: int
    role: str
    session: str | None  # viewer: the session to join
    start: Start  # player: where the session starts
    format: str
    quality: int


@dataclass(frozen=True)
class ActionMessage:
    seq: int
    action: Action


@dataclass(frozen=True)
class Reset:
    start: Start | None  # None = restart from the session's current start condition


@dataclass(frozen=True)
class Ping:
    t: float


ClientMessage = Hello | ActionMessage | Reset | Ping


def parse_client(message: dict[str, Any]) -> ClientMessage:
    """A map from `unpack` -> a validated message. Raises ProtocolError."""
    kind = message["type"]
    if kind == "hello":
        return _parse_hello(message)
    if kind == "action":
        _check_fields(message, required=("seq", "action"))
        seq = _int_field(message, "seq", 0, MAX_SEQ)
        try:
            action = from_dict(message["action"])
        except (ValueError, TypeError) as err:
            raise ProtocolError("bad_message", f"action: {err}") from None
        return ActionMessage(seq=seq, action=action)
    if kind == "reset":
        _check_fields(message, optional=("start",))
        return Reset(start=_parse_start(message["start"]) if "start" in message else None)
    if kind == "ping":
        _check_fields(message, required=("t",))
        t = message["t"]
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ProtocolError("bad_message", f"ping: field 't' must be a number, got {t!r}")
        return Ping(t=float(t))
    raise ProtocolError("unknown_type", f"unknown message type {kind!r} (known: {', '.join(CLIENT_TYPES)})")


def _parse_hello(message: dict[str, Any]) -> Hello:
    _check_fields(message, required=("version", "role"), optional=("session", "start", "format", "quality"))
    version = message["version"]
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError("version", f"protocol version {version!r} is not supported (server speaks "
                                       f"{PROTOCOL_VERSION})", fatal=True)
    role = message["role"]
    if role not in ROLES:
        raise ProtocolError("bad_message", f"hello: role {role!r} is not one of {', '.join(ROLES)}", fatal=True)
    session = message.get("session")
    if role == "viewer":
        if not isinstance(session, str) or not SESSION_ID.match(session):
            raise ProtocolError("bad_message", f"hello: a viewer needs 'session', an id matching "
                                               f"{SESSION_ID.pattern}, got {session!r}", fatal=True)
    elif session is not None:
        raise ProtocolError("bad_message", "hello: a player creates its session; 'session' is for viewers",
                            fatal=True)
    if role == "viewer" and "start" in message:
        raise ProtocolError("bad_message", "hello: 'start' is for players; a viewer joins an existing session",
                            fatal=True)
    fmt = message.get("format", DEFAULT_FORMAT)
    if fmt not in FORMATS:
        raise ProtocolError("bad_message", f"hello: format {fmt!r} is not one of {', '.join(FORMATS)}", fatal=True)
    quality = _int_field(message, "quality", 1, 95) if "quality" in message else DEFAULT_QUALITY
    start = _parse_start(message["start"]) if "start" in message else Start()
    return Hello(version=version, role=role, session=session, start=start, format=fmt, quality=quality)


def _parse_start(value: Any) -> Start:
    if not isinstance(value, dict):
        raise ProtocolError("bad_start", f"start must be a map with 'seed' or 'image', got {type(value).__name__}")
    unknown = sorted(set(value) - {"seed", "image"})
    if unknown or len(value) != 1:
        raise ProtocolError("bad_start", f"start must have exactly one of 'seed', 'image'; got keys {sorted(value)}")
    if "seed" in value:
        return Start(seed=_int_field(value, "seed", 0, MAX_SEED, code="bad_start"))
    image = value["image"]
    if not isinstance(image, bytes) or not image:
        raise ProtocolError("bad_start", f"start.image must be non-empty binary (PNG or JPEG bytes), "
                                         f"got {type(image).__name__}")
    return Start(image=image)


def _check_fields(message: dict[str, Any], required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> None:
    kind = message["type"]
    missing = [f for f in required if f not in message]
    if missing:
        raise ProtocolError("bad_message", f"{kind}: missing field {missing[0]!r} (required: {', '.join(required)})")
    extra = sorted(set(message) - {"type", *required, *optional}, key=str)
    if extra:
        raise ProtocolError("bad_message", f"{kind}: unknown field {extra[0]!r} "
                                           f"(allowed: {', '.join(('type',) + required + optional)})")


def _int_field(message: dict[str, Any], name: str, low: int, high: int, code: str = "bad_message") -> int:
    value = message[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(code, f"field {name!r} must be an integer in {low}..{high}, got {value!r}")
    return value


# --- client-side builders (what a client sends) ------------------------------------------

def hello(role: str, session: str | None = None, start: Start | None = None,
          format: str = DEFAULT_FORMAT, quality: int = DEFAULT_QUALITY) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "hello", "version": PROTOCOL_VERSION, "role": role, "format": format,
                               "quality": quality}
    if session is not None:
        message["session"] = session
    if start is not None and (start.seed is not None or start.image is not None):
        message["start"] = start_to_wire(start)
    return message


def start_to_wire(start: Start) -> dict[str, Any]:
    return {"seed": start.seed} if start.seed is not None else {"image": start.image}


def action_message(seq: int, action: Action) -> dict[str, Any]:
    return {"type": "action", "seq": seq, "action": to_dict(action)}


# --- server messages ----------------------------------------------------------------------

def error(err: ProtocolError) -> dict[str, Any]:
    return {"type": "error", "code": err.code, "message": str(err), "fatal": err.fatal}


@dataclass(frozen=True)
class Frame:
    """A frame as a client receives it (see `parse_frame`)."""

    session: str
    tick: int  # ticks since the session (re)started; the start frame is tick 0
    seq: int  # sequence number of the last action this frame answers; -1 = none yet
    format: str
    width: int
    height: int
    data: bytes
    gen_ms: float  # server time to generate this tick's frame (model step; excludes encoding)
    action: Action  # the action the server applied in this tick
    epoch: int  # increments on every reset of the session


def frame_message(frame: Frame) -> dict[str, Any]:
    return {"type": "frame", "session": frame.session, "tick": frame.tick, "seq": frame.seq,
            "format": frame.format, "width": frame.width, "height": frame.height, "data": frame.data,
            "gen_ms": frame.gen_ms, "action": to_dict(frame.action), "epoch": frame.epoch}


def parse_frame(message: dict[str, Any]) -> Frame:
    """Client side: a "frame" map -> Frame (raises ProtocolError on a malformed frame)."""
    try:
        return Frame(session=message["session"], tick=int(message["tick"]), seq=int(message["seq"]),
                     format=message["format"], width=int(message["width"]), height=int(message["height"]),
                     data=message["data"], gen_ms=float(message["gen_ms"]), action=from_dict(message["action"]),
                     epoch=int(message["epoch"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ProtocolError("bad_message", f"frame: malformed ({type(err).__name__}: {err})") from None
