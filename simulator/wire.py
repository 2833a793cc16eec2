"""Alpaca stream v2 on the wire: both encodings, control messages, error codes.

Every server message is an array. Over msgpack ``t`` is a Timestamp
(extension type -1); over JSON it is RFC 3339 with up to nine fractional
digits, trailing zeros trimmed, exactly as Go's ``time.RFC3339Nano`` prints
it (Alpaca's servers are written in Go).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgpack
import orjson

Encoding = Literal["msgpack", "json"]
#: A frame ready for ``websocket.send``: bytes in a binary (msgpack) or text (JSON) frame.
Frame = bytes

#: Alpaca's error codes and their exact messages.
ERRORS: Final[dict[int, str]] = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    409: "insufficient subscription",
    410: "invalid subscribe action for this feed",
    412: "option messages are only available in MsgPack format",
    413: "star subscription is not allowed for option quotes",
    500: "internal error",
}

_NS = 1_000_000_000
_prefix_cache: dict[int, str] = {}


class WireError(ValueError):
    """A client message that is not valid msgpack or JSON (answered with 400)."""


def rfc3339(ns: int) -> str:
    """``2024-06-03T13:30:00.00123Z``: Go's RFC3339Nano of a nanosecond timestamp."""
    sec, frac = divmod(ns, _NS)
    prefix = _prefix_cache.get(sec)
    if prefix is None:
        if len(_prefix_cache) > 4096:
            _prefix_cache.clear()
        prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _prefix_cache[sec] = prefix
    if not frac:
        return prefix + "Z"
    return f"{prefix}.{frac:09d}".rstrip("0") + "Z"


def timestamp(ns: int) -> msgpack.Timestamp:
    """The msgpack Timestamp of a nanosecond timestamp."""
    sec, frac = divmod(ns, _NS)
    return msgpack.Timestamp(sec, frac)


def to_wire(event: dict[str, Any], encoding: Encoding) -> dict[str, Any]:
    """A copy of a market event with ``t`` as the encoding carries it."""
    wire = dict(event)
    wire["t"] = timestamp(event["t"]) if encoding == "msgpack" else rfc3339(event["t"])
    return wire


def encode(messages: list[dict[str, Any]], encoding: Encoding) -> Frame:
    """One frame holding an array of already wire-shaped messages."""
    return msgpack.packb(messages) if encoding == "msgpack" else orjson.dumps(messages)


#: A news story's times (it has no ``t``).
NEWS_TIMES: Final = ("created_at", "updated_at")


def encode_events(events: list[dict[str, Any]], encoding: Encoding) -> Frame:
    """One frame of market events whose ``t`` (a news story's ``created_at``, ``updated_at``) is still int
    nanoseconds."""
    convert = timestamp if encoding == "msgpack" else rfc3339
    out = [
        {**e, "t": convert(e["t"])} if "t" in e else {**e, **{name: convert(e[name]) for name in NEWS_TIMES}}
        for e in events
    ]
    return msgpack.packb(out) if encoding == "msgpack" else orjson.dumps(out)


def success(msg: str, encoding: Encoding) -> Frame:
    """``[{"T":"success","msg":...}]``: ``connected`` or ``authenticated``."""
    return encode([{"T": "success", "msg": msg}], encoding)


def error(code: int, encoding: Encoding) -> Frame:
    """``[{"T":"error","code":...,"msg":...}]`` with Alpaca's message for the code."""
    return encode([{"T": "error", "code": code, "msg": ERRORS[code]}], encoding)


def subscription(current: dict[str, list[str]], encoding: Encoding) -> Frame:
    """``[{"T":"subscription", <every channel>: [...]}]``: the whole current set."""
    return encode([{"T": "subscription", **current}], encoding)


def decode(data: bytes | str, encoding: Encoding) -> Any:
    """A client message: text frames are JSON, binary frames follow the connection's encoding."""
    try:
        if isinstance(data, str):
            return orjson.loads(data)
        if encoding == "msgpack":
            return msgpack.unpackb(data)
        return orjson.loads(data)
    except (ValueError, TypeError) as exc:
        kind = "json" if isinstance(data, str) else encoding
        raise WireError(f"expected a {kind} object, got {data[:40]!r}: {exc}") from exc


def decode_frame(frame: bytes | str) -> list[dict[str, Any]]:
    """A server frame back into messages (tests and tools): text is JSON, binary msgpack."""
    if isinstance(frame, str):
        return list(orjson.loads(frame))
    if frame[:1] in (b"[", b"{"):
        return list(orjson.loads(frame))
    return list(msgpack.unpackb(frame))


def malformed(encoding: Encoding) -> Frame:
    """A frame that is not a valid message: a truncated array of a truncated event."""
    if encoding == "msgpack":
        return b"\x91\x8b\xa1T\xa1q\xa1S"  # array of one 11-entry map, cut after 2 entries
    return b'[{"T":"q","S":"AAPL","bp":18'


_U16 = struct.Struct(">BH").pack
_U32 = struct.Struct(">BI").pack


def array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 65536:
        return _U16(0xDC, n)
    return _U32(0xDD, n)


def count_messages(frame: bytes) -> int:
    """How many messages a msgpack frame holds, read from its array header only.

    Lets a benchmark reader count events without paying to decode them.
    """
    first = frame[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first == 0xDC:
        return int.from_bytes(frame[1:3], "big")
    if first == 0xDD:
        return int.from_bytes(frame[1:5], "big")
    raise ValueError(f"expected a msgpack array header, got byte {first:#04x}")
