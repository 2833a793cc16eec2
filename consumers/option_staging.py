"""Option events to staging rows: checked, and in the cheapest form to send (as :mod:`consumers.staging`).

OPRA gives a trade no id, so trades are keyed as quotes are, by the hash of
their content (:func:`consumers.staging.key_of`). Sizes are whole contracts
(``bigint``); a value no venue would send raises
:class:`~tickpipe.errors.DecodeError` naming the field, and the record becomes a dead letter.
"""

from __future__ import annotations

from typing import Any, Final

from consumers.staging import check_event, key_of
from tickpipe.option_events import OptionQuote, OptionTrade

_CONTRACT: Final = "contract"


def trade_row(ev: OptionTrade) -> tuple[Any, ...]:
    check_event(ev, (("p", ev.price),), (("s", ev.size),), noun=_CONTRACT)
    return (
        ev.symbol, ev.timestamp, ev.received_at, key_of(ev), ev.exchange, ev.price, ev.size,  # type: ignore[arg-type]
        ev.condition,
    )  # fmt: skip


def quote_row(ev: OptionQuote) -> tuple[Any, ...]:
    check_event(
        ev, (("bp", ev.bid_price), ("ap", ev.ask_price)), (("bs", ev.bid_size), ("as", ev.ask_size)), noun=_CONTRACT
    )
    return (
        ev.symbol, ev.timestamp, ev.received_at, key_of(ev), ev.bid_exchange, ev.bid_price,  # type: ignore[arg-type]
        ev.bid_size, ev.ask_exchange, ev.ask_price, ev.ask_size, ev.condition,
    )  # fmt: skip
