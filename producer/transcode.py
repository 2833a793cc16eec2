"""The producer's fast path: an upstream msgpack frame straight to the Kafka and live encodings.

The producer needs, per event, only its symbol, type, timestamp and two encodings. Building an
Event with :func:`~tickpipe.codecs.decode_frame` and encoding it twice costs ~8 µs; decoding into
mirror structs whose ``t`` stays raw msgpack, then encoding those, costs ~2 µs and gives the same
bytes. Any frame the fast path cannot take whole (JSON, a control message, one bad message) goes the
exact way, through :mod:`tickpipe.codecs`.

Each feed's paths are one :class:`FeedTranscoder` built from its own event registry (crypto's and
options' codes collide with the stock ones); :func:`transcode_frame` is the stock feed's,
:func:`transcoder_for` picks a feed's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Union

import msgspec

from tickpipe.codecs import (
    TIME_FIELDS,
    Rejected,
    decode_frame,
    encode_kafka,
    encode_live,
    encode_raw,
    format_rfc3339_ns,
    registry,
    time_fields,
    to_alpaca_dict,
)
from tickpipe.errors import DecodeError
from tickpipe.events import EVENT_TYPES, SCHEMA_VERSION, Event
from tickpipe.feeds import STOCK, Feed

_NS = 1_000_000_000
_msgpack_encoder = msgspec.msgpack.Encoder()


class Transcoded(NamedTuple):
    """One upstream event ready for both sinks."""

    type_code: str
    #: The Redis channel's suffix (unless ``channels`` names others) and, unless ``key`` is given, the
    #: Kafka record key: the symbol; a news story's id (its channels are its symbols).
    symbol: str
    #: Event time, ns since the epoch.
    timestamp: int
    #: Exactly what ``decode_kafka`` reads back as the event (receive time included).
    kafka: bytes
    #: Exactly ``encode_live(event)``.
    live: bytes
    #: The Kafka record key when it is not the symbol (``Family.key``: an order update's order id, a news
    #: story's id); the fan-out reads it for a feed whose families are not keyed by symbol.
    key: str = ""
    #: The Redis channels' suffixes when they are not ``symbol`` (``Family.channels``: a news story's
    #: symbols, ``("",)`` for a story naming none); None: the one channel of ``symbol``.
    channels: tuple[str, ...] | None = None


@dataclass(slots=True)
class TranscodedFrame:
    events: list[Transcoded]
    control: list[dict[str, Any]]
    rejected: list[Rejected]


def _wire_struct(cls: type[msgspec.Struct], code: str) -> type[msgspec.Struct]:
    """A mutable mirror of an event struct without the internal fields, ``t`` kept as raw msgpack."""
    fields: list[tuple[str, Any, Any]] = []
    for info in msgspec.structs.fields(cls):
        if info.encode_name in ("_r", "_v"):
            continue
        kind = msgspec.Raw if info.encode_name == "t" else info.type
        if info.required:
            fields.append((info.name, kind, msgspec.field(name=info.encode_name)))
        elif info.default_factory is not msgspec.NODEFAULT:
            field = msgspec.field(name=info.encode_name, default_factory=info.default_factory)
            fields.append((info.name, kind, field))
        else:
            fields.append((info.name, kind, msgspec.field(name=info.encode_name, default=info.default)))
    return msgspec.defstruct(f"Wire{cls.__name__}", fields, kw_only=True, tag_field="T", tag=code, gc=False)


_live_encoder = msgspec.json.Encoder()
_RV_KEYS = (b"\xa2_r", b"\xa2_v")
_prefixes: dict[int, bytes] = {}


class _NotFast(Exception):
    """The frame needs the exact path."""


def _raw_timestamp_ns(raw: bytes) -> int:
    """A msgpack Timestamp extension (its encoded bytes) to nanoseconds, all three sizes."""
    if raw[:2] == b"\xd7\xff":  # timestamp 64: nanoseconds << 34 | seconds
        packed = int.from_bytes(raw[2:10], "big")
        return (packed & 0x3_FFFF_FFFF) * _NS + (packed >> 34)
    if raw[:2] == b"\xd6\xff":  # timestamp 32: seconds
        return int.from_bytes(raw[2:6], "big") * _NS
    if raw[:3] == b"\xc7\x0c\xff":  # timestamp 96: nanoseconds, signed seconds
        return int.from_bytes(raw[7:15], "big", signed=True) * _NS + int.from_bytes(raw[3:7], "big")
    raise _NotFast


def _live_stamp(ns: int) -> bytes:
    """``t`` of the live JSON, quoted: what ``format_rfc3339_ns`` gives, with the seconds cached."""
    seconds, nanos = divmod(ns, _NS)
    prefix = _prefixes.get(seconds)
    if prefix is None:
        if len(_prefixes) > 4096:
            _prefixes.clear()
        prefix = _prefixes[seconds] = b'"' + format_rfc3339_ns(seconds * _NS)[:-11].encode()
    return b'%s.%09dZ"' % (prefix, nanos)


def _kafka_tail(received_at: int) -> bytes:
    """``_r`` and ``_v`` as two more msgpack map entries."""
    encode = _msgpack_encoder.encode
    return _RV_KEYS[0] + encode(received_at) + _RV_KEYS[1] + encode(SCHEMA_VERSION)


def _transcode_wires(wires: list[Any], received_at: int) -> list[Transcoded]:
    tail = _kafka_tail(received_at)
    raw_of = msgspec.Raw
    encode_msgpack, encode_json = _msgpack_encoder.encode, _live_encoder.encode
    out: list[Transcoded] = []
    append = out.append
    for wire in wires:
        ns = _raw_timestamp_ns(bytes(wire.timestamp))
        wire.timestamp = raw_of(_live_stamp(ns))
        live = encode_json(wire)
        wire.timestamp = raw_of(encode_msgpack(ns))
        head = encode_msgpack(wire)
        if head[0] > 0x8D:  # not a fixmap with room for two more keys
            raise _NotFast
        kafka = bytes((head[0] + 2,)) + head[1:] + tail
        append(Transcoded(wire.__struct_config__.tag, wire.symbol, ns, kafka, live))
    return out


def transcode_event(event: Event) -> Transcoded:
    """The slow, exact path for one decoded event."""
    return Transcoded(event.type_code, event.symbol, event.timestamp, encode_kafka(event), encode_live(event))


#: A feed's frame transcoder: :func:`transcode_frame` for stocks, a :class:`FeedTranscoder` for another.
Transcode = Callable[[bytes | str, int], TranscodedFrame]


def _struct_exact(event: Any) -> Transcoded:
    """The exact path of a struct without codecs of its own: msgpack as is, live JSON with ``t`` in RFC 3339."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    data["t"] = format_rfc3339_ns(event.timestamp)
    del data["_r"], data["_v"]
    live = _live_encoder.encode(data)
    return Transcoded(event.type_code, event.symbol, event.timestamp, _msgpack_encoder.encode(event), live)


def _routed_exact(feed: Feed) -> Callable[[Any], Transcoded]:
    """:func:`_struct_exact` for a feed whose families key or route events by other fields than ``symbol`` and
    ``t`` (``Family.key``, ``Family.channels``, the struct's ``time_fields``): a news story is keyed by its id
    and published on each of its symbols' channels, its times in RFC 3339."""
    routes = {kind.code: (family.key, family.channels) for family, kind in feed.event_types()}

    def exact(event: Any) -> Transcoded:
        data: dict[str, Any] = msgspec.to_builtins(event)
        for name in time_fields(type(event)):
            data[name] = format_rfc3339_ns(data[name])
        del data["_r"], data["_v"]
        key, channels = routes[event.type_code]
        suffixes = None if channels is None else (tuple(getattr(event, channels)) or ("",))
        kafka = _msgpack_encoder.encode(event)
        record_key = str(getattr(event, key))
        live = _live_encoder.encode(data)
        return Transcoded(event.type_code, record_key, event.timestamp, kafka, live, record_key, suffixes)

    return exact


def _routed(feed: Feed) -> bool:
    """Whether a feed's events are keyed, routed or timed otherwise than by ``symbol`` and ``t``."""
    times = {time_fields(cls) for cls in registry(feed).values()}
    return times != {TIME_FIELDS} or any(f.key != "symbol" or f.channels is not None for f in feed.families)


def _struct_message(event: Any) -> dict[str, Any]:
    message: dict[str, Any] = msgspec.to_builtins(event)
    del message["_r"], message["_v"]
    return message


class FeedTranscoder:
    """One feed's fast and exact paths, built from its event registry (stocks: ``EVENT_TYPES``).

    ``exact`` encodes one decoded event (the stock one: ``encode_kafka``/``encode_live``); ``message``
    gives the Alpaca-shaped dict of an event that decoded but cannot be encoded, for its dead letter.
    """

    def __init__(
        self,
        types: Mapping[str, type[Any]],
        exact: Callable[[Any], Transcoded],
        message: Callable[[Any], dict[str, Any]],
    ) -> None:
        self.types = dict(types)
        self.exact = exact
        self.message = message
        #: The fast path's decoder; None for structs not timed by ``t`` (a news story), which go the exact way.
        self._decoder: msgspec.msgpack.Decoder[Any] | None = None
        if all(time_fields(cls) == TIME_FIELDS for cls in self.types.values()):
            wire_types = tuple(_wire_struct(cls, code) for code, cls in self.types.items())
            self._decoder = msgspec.msgpack.Decoder(list[Union[wire_types]])  # type: ignore[valid-type]  # noqa: UP007

    def _fast(self, frame: bytes, received_at: int) -> list[Transcoded]:
        if self._decoder is None:
            raise _NotFast
        try:
            wires = self._decoder.decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise _NotFast from None
        try:
            return _transcode_wires(wires, received_at)
        except OverflowError:  # a timestamp past 2554: let the exact path reject it
            raise _NotFast from None

    def __call__(self, frame: bytes | str, received_at: int) -> TranscodedFrame:
        """See :func:`transcode_frame`."""
        if isinstance(frame, bytes | bytearray | memoryview):
            try:
                return TranscodedFrame(self._fast(bytes(frame), received_at), [], [])
            except _NotFast:
                pass
        decoded = decode_frame(frame, received_at, self.types)
        out = TranscodedFrame([], decoded.control, decoded.rejected)
        for event in decoded.events:
            try:
                out.events.append(self.exact(event))
            except OverflowError as exc:  # decodes, but no int64 holds it
                out.rejected.append(
                    Rejected(
                        encode_raw(self.message(event)), DecodeError("t", f"expected a timestamp before 2262: {exc}")
                    )
                )
        return out


_STOCK = FeedTranscoder(EVENT_TYPES, transcode_event, to_alpaca_dict)


def transcode_frame(frame: bytes | str, received_at: int) -> TranscodedFrame:
    """An upstream frame to events ready for Kafka and Redis, plus control messages and rejects.

    Same outcome as ``decode_frame`` followed by ``encode_kafka``/``encode_live`` on each event
    (tested byte for byte), about four times faster on msgpack frames of events only.
    Raises DecodeError("$") for a frame that is not an array of messages.
    """
    return _STOCK(frame, received_at)


_transcoders: dict[str, FeedTranscoder] = {}


def feed_transcoder(feed: Feed) -> FeedTranscoder:
    """The feed's :class:`FeedTranscoder` (its event registry is ``.types``): the stock one, or one built
    from the feed's event registry."""
    if feed is STOCK:
        return _STOCK
    found = _transcoders.get(feed.name)
    if found is None:
        exact = _routed_exact(feed) if _routed(feed) else _struct_exact
        found = _transcoders[feed.name] = FeedTranscoder(registry(feed), exact, _struct_message)
    return found


def transcoder_for(feed: Feed) -> Transcode:
    """A market-data feed's transcoder: the stock one (:func:`transcode_frame`), or :func:`feed_transcoder`'s
    (the trading stream's dialect has its own, :func:`producer.trading_transcode.transcoder_of`)."""
    return transcode_frame if feed is STOCK else feed_transcoder(feed)
