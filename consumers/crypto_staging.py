"""Crypto events to staging rows: checked, and in the cheapest form to send (as :mod:`consumers.staging`).

Sizes and volumes are fractional, so they are checked as finite and non-negative
floats, not as ``bigint`` counts; an order book's levels travel as four
``float8[]`` literals that PostgreSQL casts in the upsert. A value no venue would
send raises :class:`~tickpipe.errors.DecodeError` naming the field, and the
record becomes a dead letter.
"""

from __future__ import annotations

from typing import Any, Final

from consumers.staging import check_event, key_of, out_of_range
from tickpipe.crypto_events import BookLevel, CryptoBar, CryptoOrderbook, CryptoQuote, CryptoTrade

_INF: Final = float("inf")
_PAIR: Final = "pair"
_AMOUNT: Final = "a finite number >= 0"  # prices and fractional sizes alike


def quote_row(ev: CryptoQuote) -> tuple[Any, ...]:
    amounts = (("bp", ev.bid_price), ("bs", ev.bid_size), ("ap", ev.ask_price), ("as", ev.ask_size))
    check_event(ev, amounts, noun=_PAIR, price=_AMOUNT)
    return (
        ev.symbol, ev.timestamp, ev.received_at, key_of(ev), ev.bid_price, ev.bid_size,  # type: ignore[arg-type]
        ev.ask_price, ev.ask_size,
    )  # fmt: skip


def trade_row(ev: CryptoTrade) -> tuple[Any, ...]:
    check_event(ev, (("p", ev.price), ("s", ev.size)), (("i", ev.trade_id),), noun=_PAIR, price=_AMOUNT)
    return ev.symbol, ev.timestamp, ev.received_at, ev.trade_id, ev.price, ev.size, ev.taker_side


def bar_row(ev: CryptoBar) -> tuple[Any, ...]:
    amounts = (("o", ev.open), ("h", ev.high), ("l", ev.low), ("c", ev.close), ("v", ev.volume), ("vw", ev.vwap))
    check_event(ev, amounts, (("n", ev.trade_count),), noun=_PAIR, price=_AMOUNT)
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
            raise out_of_range(f"{name}[{at}]", "a finite price and size >= 0", (level.price, level.size))
    return _floats([level.price for level in levels]), _floats([level.size for level in levels])


def orderbook_row(ev: CryptoOrderbook) -> tuple[Any, ...]:
    check_event(ev, noun=_PAIR)
    bid_prices, bid_sizes = _side(ev.bids, "b")
    ask_prices, ask_sizes = _side(ev.asks, "a")
    return (
        ev.symbol, ev.timestamp, ev.received_at, key_of(ev), ev.reset,  # type: ignore[arg-type]
        bid_prices, bid_sizes, ask_prices, ask_sizes,
    )  # fmt: skip
