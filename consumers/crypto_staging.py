"""Crypto events to staging rows: checked, and in the cheapest form to send (as :mod:`consumers.staging`).

Sizes and volumes are fractional, so they are checked as finite and non-negative
floats, not as ``bigint`` counts; an order book's levels travel as four
``float8[]`` literals that PostgreSQL casts in the upsert. A value no venue would
send raises :class:`~tickpipe.errors.DecodeError` naming the field, and the
record becomes a dead letter.
"""

from __future__ import annotations

from typing import Any, Final

from consumers.staging import MAX_BIGINT, MAX_TIMESTAMP_NS, key_of
from tickpipe.crypto_events import BookLevel, CryptoBar, CryptoEvent, CryptoOrderbook, CryptoQuote, CryptoTrade
from tickpipe.errors import DecodeError

_INF: Final = float("inf")


def _out_of_range(field_name: str, expected: str, value: object) -> DecodeError:
    return DecodeError(field_name, f"value out of range: expected {expected}, got {value!r}")


def check_values(
    event: CryptoEvent, amounts: tuple[tuple[str, float], ...], counts: tuple[tuple[str, int], ...] = ()
) -> None:
    """Raise DecodeError naming the first value PostgreSQL cannot hold or no venue would send."""
    if not 0 <= event.timestamp < MAX_TIMESTAMP_NS:
        raise _out_of_range("t", "nanoseconds between 1970 and 2200", event.timestamp)
    if not 0 <= event.received_at < MAX_TIMESTAMP_NS:
        raise _out_of_range("_r", "nanoseconds between 1970 and 2200 (or 0)", event.received_at)
    if not event.symbol:
        raise DecodeError("S", "expected a pair, got an empty string")
    for name, amount in amounts:
        if not 0.0 <= amount < _INF:  # False for NaN too
            raise _out_of_range(name, "a finite number >= 0", amount)
    for name, count in counts:
        if not 0 <= count <= MAX_BIGINT:
            raise _out_of_range(name, f"an integer from 0 to {MAX_BIGINT}", count)


def quote_row(ev: CryptoQuote) -> tuple[Any, ...]:
    check_values(ev, (("bp", ev.bid_price), ("bs", ev.bid_size), ("ap", ev.ask_price), ("as", ev.ask_size)))
    return (
        ev.symbol, ev.timestamp, ev.received_at, key_of(ev), ev.bid_price, ev.bid_size,  # type: ignore[arg-type]
        ev.ask_price, ev.ask_size,
    )  # fmt: skip


def trade_row(ev: CryptoTrade) -> tuple[Any, ...]:
    check_values(ev, (("p", ev.price), ("s", ev.size)), (("i", ev.trade_id),))
    return ev.symbol, ev.timestamp, ev.received_at, ev.trade_id, ev.price, ev.size, ev.taker_side


def bar_row(ev: CryptoBar) -> tuple[Any, ...]:
    check_values(
        ev,
        (("o", ev.open), ("h", ev.high), ("l", ev.low), ("c", ev.close), ("v", ev.volume), ("vw", ev.vwap)),
        (("n", ev.trade_count),),
    )
    return (
        ev.symbol, ev.timeframe, ev.timestamp, ev.received_at, ev.open, ev.high, ev.low, ev.close, ev.volume,
        ev.vwap, ev.trade_count, ev.type_code,
    )  # fmt: skip


def _floats(values: list[float]) -> str:
    """A ``float8[]`` literal; ``repr`` of a float reads back as the same float64."""
    return "{" + ",".join(repr(value) for value in values) + "}"


def _side(levels: tuple[BookLevel, ...], name: str) -> tuple[str, str]:
    for at, level in enumerate(levels):
        if not (0.0 <= level.price < _INF and 0.0 <= level.size < _INF):
            raise _out_of_range(f"{name}[{at}]", "a finite price and size >= 0", (level.price, level.size))
    return _floats([level.price for level in levels]), _floats([level.size for level in levels])


def orderbook_row(ev: CryptoOrderbook) -> tuple[Any, ...]:
    check_values(ev, ())
    bid_prices, bid_sizes = _side(ev.bids, "b")
    ask_prices, ask_sizes = _side(ev.asks, "a")
    return (
        ev.symbol, ev.timestamp, ev.received_at, key_of(ev), ev.reset,  # type: ignore[arg-type]
        bid_prices, bid_sizes, ask_prices, ask_sizes,
    )  # fmt: skip
