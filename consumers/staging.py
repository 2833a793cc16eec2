"""Events to staging rows: checked, and in the cheapest form to send.

A staging row holds what asyncpg encodes fast (integers, floats, plain text):
``time`` and ``received_at`` travel as nanosecond integers and ``conditions``
as one array literal; PostgreSQL computes the ``timestamptz`` and ``text[]``
values in the upsert (:mod:`consumers.tables`). That halves the client's
encoding work (``datetime`` and array values are the slow ones in COPY) and
moves it to the server's core.

Values are checked as each row is built: a time outside 1970-2200, a negative
or non-finite price, a count beyond ``bigint`` or an empty symbol raises
:class:`~tickpipe.errors.DecodeError` naming the field, and the record becomes
a dead letter. These functions run once per record, so they are written for speed.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

from tickpipe.errors import DecodeError
from tickpipe.events import Bar, Event, Quote, Trade, TradeCancel, TradeCorrection, TradingStatus

#: Nanoseconds since the epoch that may be stored: 1970-01-01 up to 2200-01-01 (exclusive).
MAX_TIMESTAMP_NS: Final = 7_258_118_400 * 10**9
MAX_BIGINT: Final = 2**63 - 1

_INF: Final = float("inf")
_replace = msgspec.structs.replace
_encode = msgspec.msgpack.Encoder().encode
_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes
_literals: dict[tuple[str, ...], str] = {}


def array_literal(items: tuple[str, ...]) -> str:
    """A ``text[]`` literal of ``items``, every element quoted (so ``NULL`` stays a string); cached."""
    literal = _literals.get(items)
    if literal is None:
        quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
        literal = "{" + ",".join(quoted) + "}"
        if len(_literals) > 10_000:  # conditions repeat; a flood of unique ones must not grow memory
            _literals.clear()
        _literals[items] = literal
    return literal


def key_of(event: Event) -> int:
    """:func:`tickpipe.codecs.event_key` with its lookups bound once: the same key, a third faster."""
    data = _replace(event, received_at=0)
    return _from_bytes(_blake2b(_encode(data), digest_size=8).digest(), "big", signed=True)


def out_of_range(field_name: str, expected: str, value: object) -> DecodeError:
    return DecodeError(field_name, f"value out of range: expected {expected}, got {value!r}")


def check_event(
    event: Any,
    prices: tuple[tuple[str, float], ...] = (),
    counts: tuple[tuple[str, int], ...] = (),
    *,
    noun: str = "symbol",
    price: str = "a finite price >= 0",
) -> None:
    """Raise DecodeError naming the first value PostgreSQL cannot hold or no market would send: the times
    and symbol every feed's event has, then ``prices`` (finite, >= 0) and ``counts`` (0 to ``bigint``'s max).
    Every feed's staging functions check through this (``noun``: what the feed calls its symbol)."""
    if not 0 <= event.timestamp < MAX_TIMESTAMP_NS:
        raise out_of_range("t", "nanoseconds between 1970 and 2200", event.timestamp)
    if not 0 <= event.received_at < MAX_TIMESTAMP_NS:
        raise out_of_range("_r", "nanoseconds between 1970 and 2200 (or 0)", event.received_at)
    if not event.symbol:
        raise DecodeError("S", f"expected a {noun}, got an empty string")
    for name, value in prices:
        if not 0.0 <= value < _INF:  # False for NaN too
            raise out_of_range(name, price, value)
    for name, count in counts:
        if not 0 <= count <= MAX_BIGINT:
            raise out_of_range(name, f"an integer from 0 to {MAX_BIGINT}", count)


def check_values(event: Event) -> None:
    """:func:`check_event` with the prices and counts of each stock event type."""
    prices: tuple[tuple[str, float], ...] = ()
    counts: tuple[tuple[str, int], ...] = ()
    if isinstance(event, Quote):
        prices = (("bp", event.bid_price), ("ap", event.ask_price))
        counts = (("bs", event.bid_size), ("as", event.ask_size))
    elif isinstance(event, (Trade, TradeCancel)):  # the same fields, the same wire names
        prices, counts = (("p", event.price),), (("s", event.size), ("i", event.trade_id))
    elif isinstance(event, Bar):
        prices = (("o", event.open), ("h", event.high), ("l", event.low), ("c", event.close), ("vw", event.vwap))
        counts = (("v", event.volume), ("n", event.trade_count))
    elif isinstance(event, TradeCorrection):
        prices = (("op", event.original_price), ("cp", event.corrected_price))
        counts = (("os", event.original_size), ("oi", event.original_id), ("cs", event.corrected_size),
                  ("ci", event.corrected_id))  # fmt: skip
    check_event(event, prices, counts)


# The row builders check every value inline (one expression, the common case) and leave the
# message to check_values when one is off: they run once per record.


def quote_row(ev: Quote) -> tuple[Any, ...]:
    if not (
        0 <= ev.timestamp < MAX_TIMESTAMP_NS and 0 <= ev.received_at < MAX_TIMESTAMP_NS and ev.symbol
        and 0.0 <= ev.bid_price < _INF and 0.0 <= ev.ask_price < _INF
        and 0 <= ev.bid_size <= MAX_BIGINT and 0 <= ev.ask_size <= MAX_BIGINT
    ):  # fmt: skip
        check_values(ev)
    return (
        ev.symbol, ev.timestamp, ev.received_at, key_of(ev), ev.bid_exchange, ev.bid_price, ev.bid_size,
        ev.ask_exchange, ev.ask_price, ev.ask_size, array_literal(ev.conditions), ev.tape,
    )  # fmt: skip


def trade_row(ev: Trade) -> tuple[Any, ...]:
    if not (
        0 <= ev.timestamp < MAX_TIMESTAMP_NS and 0 <= ev.received_at < MAX_TIMESTAMP_NS and ev.symbol
        and 0.0 <= ev.price < _INF and 0 <= ev.size <= MAX_BIGINT and 0 <= ev.trade_id <= MAX_BIGINT
    ):  # fmt: skip
        check_values(ev)
    return (
        ev.symbol, ev.timestamp, ev.received_at, ev.exchange, ev.trade_id, ev.price, ev.size,
        array_literal(ev.conditions), ev.tape,
    )  # fmt: skip


def bar_row(ev: Bar) -> tuple[Any, ...]:
    check_values(ev)  # bars are few: the plain check is fast enough
    return (
        ev.symbol, ev.timeframe, ev.timestamp, ev.received_at, ev.open, ev.high, ev.low, ev.close, ev.volume,
        ev.vwap, ev.trade_count, ev.type_code,
    )  # fmt: skip


# Statuses, corrections and cancels are a few per symbol a day: the plain check is fast enough.


def status_row(ev: TradingStatus) -> tuple[Any, ...]:
    check_values(ev)
    return (
        ev.symbol, ev.timestamp, ev.received_at, ev.status_code, ev.status_message, ev.reason_code,
        ev.reason_message, ev.tape,
    )  # fmt: skip


def correction_row(ev: TradeCorrection) -> tuple[Any, ...]:
    check_values(ev)
    return (
        ev.symbol, ev.timestamp, ev.received_at, ev.exchange, ev.original_id, ev.original_price, ev.original_size,
        array_literal(ev.original_conditions), ev.corrected_id, ev.corrected_price, ev.corrected_size,
        array_literal(ev.corrected_conditions), ev.tape,
    )  # fmt: skip


def cancel_row(ev: TradeCancel) -> tuple[Any, ...]:
    check_values(ev)
    return (
        ev.symbol, ev.timestamp, ev.received_at, ev.exchange, ev.trade_id, ev.price, ev.size, ev.action, ev.tape,
    )  # fmt: skip
