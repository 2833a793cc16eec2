"""Encodings of events on each wire, and the one error they raise.

- **upstream** (Alpaca stream v2): a frame is an array of messages, msgpack
  (``t`` a Timestamp extension, -1) or JSON (``t`` an RFC 3339 string with up to
  nine fractional digits). :func:`decode_frame` splits a frame into events,
  control messages and rejects, so one bad message never costs its neighbours.
- **kafka**: msgpack of the struct with short names, ``T`` and a schema version
  ``v``; :func:`encode_kafka` / :func:`decode_kafka`.
- **live** (Redis channels and snapshot hashes): one JSON object in Alpaca's own
  shape (short names, RFC 3339 ``t``); :func:`encode_live` / :func:`decode_live`.
- **wire**: Alpaca-shaped frames for our own WebSocket clients,
  :func:`encode_wire_json` / :func:`encode_wire_msgpack`.

Every malformed input raises :class:`~tickpipe.errors.DecodeError` naming the field.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Union

import msgpack
import msgspec
import orjson

from tickpipe.errors import DecodeError
from tickpipe.events import EVENT_TYPES, SCHEMA_VERSION, Event

if TYPE_CHECKING:
    from tickpipe.feeds import Feed

CONTROL_TYPES: Final = frozenset({"success", "error", "subscription"})

_NS: Final = 1_000_000_000
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})$")
_FIELD_AT = re.compile(r"at `\$\.?([^`\[]*)")
_MISSING = re.compile(r"missing required field `([^`]+)`")

_kafka_encoder = msgspec.msgpack.Encoder()
_kafka_decoder = msgspec.msgpack.Decoder(Event)
_json_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Rejected:
    """One upstream message that is not a valid event, kept whole for the dead-letter topic."""

    raw: bytes
    error: DecodeError


@dataclass(slots=True)
class DecodedFrame:
    events: list[Event]
    control: list[dict[str, Any]]
    rejected: list[Rejected]


# --- timestamps -------------------------------------------------------------


def parse_rfc3339_ns(text: str) -> int:
    """RFC 3339 text to nanoseconds since the epoch, keeping all nine fractional digits."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"expected an RFC 3339 timestamp like 2024-01-02T15:04:05.123456789Z, got {text!r}")
    day, clock, frac, zone = match.groups()
    offset = "+00:00" if zone in ("Z", "z") else zone
    seconds = int(datetime.fromisoformat(f"{day}T{clock}{offset}").timestamp())
    nanos = int((frac or "0").ljust(9, "0"))
    return seconds * _NS + nanos


def format_rfc3339_ns(ns: int) -> str:
    """Nanoseconds since the epoch to RFC 3339 UTC with nine fractional digits, as Alpaca writes it."""
    seconds, nanos = divmod(ns, _NS)
    clock = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{clock}.{nanos:09d}Z"


def ns_to_datetime(ns: int) -> datetime:
    """Nanoseconds to an aware datetime (microsecond precision, for humans and SQL)."""
    return datetime.fromtimestamp(ns // 1000 / 1_000_000, UTC)


def _timestamp_ns(value: Any, name: str = "t") -> int:
    if isinstance(value, msgpack.Timestamp):
        return int(value.to_unix_nano())
    if isinstance(value, str):
        try:
            return parse_rfc3339_ns(value)
        except ValueError as exc:
            raise DecodeError(name, str(exc)) from None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise DecodeError(name, f"expected a msgpack Timestamp or an RFC 3339 string, got {type(value).__name__}")


#: The upstream names of an event's times unless its struct says otherwise (``time_fields``: a news story's
#: ``created_at`` and ``updated_at``).
TIME_FIELDS: Final = ("t",)
#: Every name a time has on any feed's wire: what a msgpack frame for our clients carries as a Timestamp.
WIRE_TIME_FIELDS: Final = ("t", "created_at", "updated_at")


def time_fields(cls: type[Any] | None) -> tuple[str, ...]:
    """The upstream names of a struct's times (``t``, unless it declares ``time_fields``)."""
    found: tuple[str, ...] = getattr(cls, "time_fields", TIME_FIELDS)
    return found


def _field_of(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    missing = _MISSING.search(text)
    if missing:
        return missing.group(1)
    at = _FIELD_AT.search(text)
    if at and at.group(1):
        return at.group(1).split(".")[0]
    return "$"


def _to_event(message: dict[str, Any], received_at: int, types: Mapping[str, type[Any]] = EVENT_TYPES) -> Event:
    """One upstream message dict (short names) to an event of ``types`` (the stock feed's unless another
    feed's registry is given, e.g. :data:`tickpipe.crypto_events.CRYPTO_EVENT_TYPES`); raise DecodeError
    naming the field."""
    cls = types.get(message.get("T"))  # type: ignore[arg-type]
    for name in time_fields(cls):
        if name not in message:
            raise DecodeError(name, "missing required field")
        message[name] = _timestamp_ns(message[name], name)
    message["_r"] = received_at
    message["_v"] = SCHEMA_VERSION
    if cls is None:
        raise DecodeError("T", f"expected an event type among {', '.join(types)}, got {message.get('T')!r}")
    try:
        return msgspec.convert(message, cls, strict=True)
    except msgspec.ValidationError as exc:
        raise DecodeError(_field_of(exc), str(exc)) from None


# --- upstream -----------------------------------------------------------------


def decode_frame(frame: bytes | str, received_at: int, types: Mapping[str, type[Any]] = EVENT_TYPES) -> DecodedFrame:
    """Split one upstream frame into events, control messages and rejects.

    ``types``: the feed's event registry (another feed's events are its own structs, typed ``Event`` here).

    A frame that is not an array of objects at all raises DecodeError("$"); a
    single bad message inside a good frame becomes a :class:`Rejected` and the
    rest of the frame is kept.
    """
    try:
        if isinstance(frame, str):
            messages = orjson.loads(frame)
        else:
            messages = msgpack.unpackb(frame, timestamp=0, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise DecodeError("$", f"frame is neither valid msgpack nor JSON: {exc}") from None
    if not isinstance(messages, list):
        raise DecodeError("$", f"expected an array of messages, got {type(messages).__name__}")
    out = DecodedFrame([], [], [])
    for message in messages:
        if not isinstance(message, dict):
            out.rejected.append(Rejected(encode_raw(message), DecodeError("$", "expected an object")))
            continue
        kind = message.get("T")
        if kind in CONTROL_TYPES:
            out.control.append(message)
            continue
        stamps = [(name, message.get(name)) for name in time_fields(types.get(kind))]  # type: ignore[arg-type]
        try:
            out.events.append(_to_event(message, received_at, types))
        except DecodeError as exc:
            message.pop("_r", None)
            message.pop("_v", None)
            for name, stamp in stamps:  # the dead letter holds the times as they came
                if stamp is not None:
                    message[name] = stamp
            out.rejected.append(Rejected(encode_raw(message), exc))
    return out


def encode_raw(message: Any) -> bytes:
    """Re-encode a rejected message so the dead letter holds it whole (timestamps included)."""
    return bytes(msgpack.packb(message, datetime=False, default=str))


def decode_message(
    message: dict[str, Any], received_at: int = 0, types: Mapping[str, type[Any]] = EVENT_TYPES
) -> Event:
    """Decode one upstream-shaped dict (as msgpack or JSON would give it), of the stock feed's event
    types unless another feed's registry is given."""
    return _to_event(dict(message), received_at, types)


# --- kafka --------------------------------------------------------------------


def encode_kafka(event: Event) -> bytes:
    return _kafka_encoder.encode(event)


def decode_kafka(value: bytes) -> Event:
    """A Kafka record value to an event; an unknown schema version is a DecodeError, never a guess."""
    try:
        event = _kafka_decoder.decode(value)
    except msgspec.ValidationError as exc:
        raise DecodeError(_field_of(exc), str(exc)) from None
    except msgspec.DecodeError as exc:
        raise DecodeError("$", f"not a msgpack event: {exc}") from None
    if event.schema_version != SCHEMA_VERSION:
        raise DecodeError("_v", f"expected schema version {SCHEMA_VERSION}, got {event.schema_version}")
    return event


def registry(feed: Feed) -> Mapping[str, type[Any]]:
    """The event structs of a feed by ``T`` code, as its declaration names them (``Feed.events``)."""
    module, _, name = feed.events.partition(":")
    types: Mapping[str, type[Any]] = getattr(importlib.import_module(module), name)
    return types


_feed_decoders: dict[str, Callable[[bytes], Any]] = {}


def kafka_decoder(feed: Feed) -> Callable[[bytes], Any]:
    """:func:`decode_kafka` for a feed's own events: its codes may mean other structs in another feed."""
    found = _feed_decoders.get(feed.name)
    if found is not None:
        return found
    types = tuple(registry(feed).values())
    if types == tuple(EVENT_TYPES.values()):
        found = decode_kafka
    else:
        decoder = msgspec.msgpack.Decoder(Union[types])  # noqa: UP007 (a runtime tuple of types)

        def found(value: bytes) -> Any:
            try:
                event = decoder.decode(value)
            except msgspec.ValidationError as exc:
                raise DecodeError(_field_of(exc), str(exc)) from None
            except msgspec.DecodeError as exc:
                raise DecodeError("$", f"not a msgpack event: {exc}") from None
            if event.schema_version != SCHEMA_VERSION:
                raise DecodeError("_v", f"expected schema version {SCHEMA_VERSION}, got {event.schema_version}")
            return event

    _feed_decoders[feed.name] = found
    return found


# --- live (Redis) ---------------------------------------------------------------


def to_alpaca_dict(event: Event) -> dict[str, Any]:
    """The event as Alpaca's stream shows it: short names, RFC 3339 ``t``, no internal fields."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    data["t"] = format_rfc3339_ns(event.timestamp)
    del data["_r"], data["_v"]
    return data


def encode_live(event: Event) -> bytes:
    return orjson.dumps(to_alpaca_dict(event))


def decode_live(payload: bytes | str) -> Event:
    try:
        message = orjson.loads(payload)
    except ValueError as exc:
        raise DecodeError("$", f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise DecodeError("$", f"expected a JSON object, got {type(message).__name__}")
    return _to_event(message, 0)


# --- wire (our WebSocket clients) ---------------------------------------------------


def encode_wire_json(messages: Iterable[dict[str, Any]]) -> bytes:
    """Alpaca-shaped dicts (see :func:`to_alpaca_dict`) to one JSON frame."""
    return orjson.dumps(list(messages))


def encode_wire_msgpack(messages: Iterable[dict[str, Any]]) -> bytes:
    """Alpaca-shaped dicts to one msgpack frame, ``t`` (a story's ``created_at`` and ``updated_at``) as
    msgpack Timestamps, as Alpaca sends them."""
    out = []
    for message in messages:
        stamp = message.get("t")
        if isinstance(stamp, str):
            message = {**message, "t": msgpack.Timestamp.from_unix_nano(parse_rfc3339_ns(stamp))}
        elif stamp is None:
            message = {
                name: msgpack.Timestamp.from_unix_nano(parse_rfc3339_ns(value))
                if name in WIRE_TIME_FIELDS and isinstance(value, str)
                else value
                for name, value in message.items()
            }
        out.append(message)
    return bytes(msgpack.packb(out, datetime=False))


# --- keys ---------------------------------------------------------------------------


def event_key(event: Event) -> int:
    """A deterministic signed 64-bit key of the upstream content (receive time excluded).

    The same upstream event, redelivered or replayed, gets the same key, so a
    unique index turns every replay into a no-op.
    """
    data = msgspec.structs.replace(event, received_at=0)
    digest = hashlib.blake2b(_kafka_encoder.encode(data), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
