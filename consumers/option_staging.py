"""Option events to staging rows: checked, and in the cheapest form to send (as :mod:`consumers.staging`).

OPRA gives a trade no id, so trades are keyed as quotes are, by the hash of
their content (:func:`consumers.staging.key_of`). Sizes are whole contracts
(``bigint``); a value no venue would send raises
:class:`~tickpipe.errors.DecodeError` naming the field, and the record becomes a dead letter.
"""

from __future__ import annotations

from typing import Any, Final

from consumers.staging import MAX_BIGINT, MAX_TIMESTAMP_NS, key_of
from tickpipe.errors import DecodeError
from tickpipe.option_events import OptionEvent, OptionQuote, OptionTrade

_INF: Final = float("inf")


def _out_of_range(field_name: str, expected: str, value: object) -> DecodeError:
    return DecodeError(field_name, f"value out of range: expected {expected}, got {value!r}")


def check_values(
    event: OptionEvent, prices: tuple[tuple[str, float], ...], counts: tuple[tuple[str, int], ...]
) -> None:
    """Raise DecodeError naming the first value PostgreSQL cannot hold or no venue would send."""
    if not 0 <= event.timestamp < MAX_TIMESTAMP_NS:
        raise _out_of_range("t", "nanoseconds between 1970 and 2200", event.timestamp)
    if not 0 <= event.received_at < MAX_TIMESTAMP_NS:
        raise _out_of_range("_r", "nanoseconds between 1970 and 2200 (or 0)", event.received_at)
    if not event.symbol:
        raise DecodeError("S", "expected a contract, got an empty string")
    for name, price in prices:
        if not 0.0 <= price < _INF:  # False for NaN too
            raise _out_of_range(name, "a finite price >= 0", price)
    for name, count in counts:
        if not 0 <= count <= MAX_BIGINT:
            raise _out_of_range(name, f"an integer from 0 to {MAX_BIGINT}", count)


def trade_row(ev: OptionTrade) -> tuple[Any, ...]:
    check_values(ev, (("p", ev.price),), (("s", ev.size),))
    return (
        ev.symbol, ev.timestamp, ev.received_at, key_of(ev), ev.exchange, ev.price, ev.size,  # type: ignore[arg-type]
        ev.condition,
    )  # fmt: skip


def quote_row(ev: OptionQuote) -> tuple[Any, ...]:
    check_values(ev, (("bp", ev.bid_price), ("ap", ev.ask_price)), (("bs", ev.bid_size), ("as", ev.ask_size)))
    return (
        ev.symbol, ev.timestamp, ev.received_at, key_of(ev), ev.bid_exchange, ev.bid_price,  # type: ignore[arg-type]
        ev.bid_size, ev.ask_exchange, ev.ask_price, ev.ask_size, ev.condition,
    )  # fmt: skip
