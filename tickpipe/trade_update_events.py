"""The order updates feed's event: one immutable struct per ``trade_updates`` message of the trading stream.

Alpaca's message has no ``T`` code, symbol or ``t``: it is ``{"event", "execution_id", "order": {...},
"timestamp", "price", "qty", "position_qty"}``. The struct keeps it whole, under Alpaca's own names,
and adds what every tickpipe event has (:class:`~tickpipe.events.FeedEvent`): ``S``, the order's
symbol, and ``t``, the event ``timestamp`` in integer nanoseconds. Prices and quantities stay the
strings Alpaca sent ("179.08"): never a float on the way, numeric in PostgreSQL. Its registry is its
own (:data:`TRADE_UPDATE_TYPES`), with the made-up code ``o`` (order) as its tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

import msgspec

from tickpipe.events import FeedEvent
from tickpipe.feeds.trade_updates import TRADE_UPDATES_FEED

_FAMILY_OF: Final = TRADE_UPDATES_FEED.family_of

#: Alpaca's trade update events (``event``), as its trading stream documents them.
EVENTS: Final = (
    "new", "fill", "partial_fill", "canceled", "expired", "done_for_day", "replaced", "rejected", "pending_new",
    "stopped", "pending_cancel", "pending_replace", "calculated", "suspended", "order_replace_rejected",
    "order_cancel_rejected",
)  # fmt: skip


class TradeUpdate(FeedEvent, frozen=True, kw_only=True, tag="o"):
    """An order's update: what happened (``event``), the order as it is now, and a fill's price and size."""

    type_code: ClassVar[str] = "o"
    family_of: ClassVar[Mapping[str, str]] = _FAMILY_OF

    event: str = msgspec.field(name="event")
    #: The whole order object as Alpaca sent it (id, client_order_id, qty, filled_qty, status ...).
    order: dict[str, Any] = msgspec.field(name="order")
    #: A fill's execution id (a UUID); "" for an event that is no execution.
    execution_id: str = msgspec.field(name="execution_id", default="")
    #: A fill's price and quantity, the position after it: Alpaca's strings, None when not sent.
    price: str | None = msgspec.field(name="price", default=None)
    qty: str | None = msgspec.field(name="qty", default=None)
    position_qty: str | None = msgspec.field(name="position_qty", default=None)

    @property
    def order_id(self) -> str:
        """The order's id: the Kafka record key, so an order's updates keep their order."""
        return str(self.order.get("id") or "")


#: The order updates feed's struct by its code.
TRADE_UPDATE_TYPES: Final[dict[str, type[TradeUpdate]]] = {TradeUpdate.type_code: TradeUpdate}
