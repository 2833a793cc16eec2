"""Order updates to staging rows: checked, and in the form COPY takes (as :mod:`consumers.staging`).

Prices and quantities are Alpaca's strings, stored as ``numeric`` exactly as
sent; the order object is kept whole as ``jsonb``. A value PostgreSQL cannot
hold (an order quantity that is no number, a time out of range) raises
:class:`~tickpipe.errors.DecodeError` naming the field, and the record becomes
a dead letter. The row's key is (symbol, time, order id, event, execution id):
the same update redelivered is a no-op, two fills of one order never collide.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from consumers.staging import check_event
from tickpipe.errors import DecodeError
from tickpipe.trade_update_events import TradeUpdate

_MOST_CHARS = 128


def _decimal(value: Any, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DecodeError(field, f"expected a decimal number, got {value!r}")
    try:
        number = Decimal(value if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise DecodeError(field, f"expected a decimal number, got {value!r}") from None
    if not number.is_finite():
        raise DecodeError(field, f"expected a finite decimal number, got {value!r}")
    return number


def _text(order: dict[str, Any], name: str) -> str:
    value = order.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > _MOST_CHARS:
        raise DecodeError(f"order.{name}", f"expected a string of at most {_MOST_CHARS} characters, got {value!r}")
    return value


def trade_update_row(ev: TradeUpdate) -> tuple[Any, ...]:
    check_event(ev, noun="order symbol")
    order = ev.order
    if not ev.order_id:
        raise DecodeError("order.id", "expected the order's id, got none")
    return (
        ev.symbol, ev.timestamp, ev.received_at, ev.order_id, ev.event, ev.execution_id,
        _text(order, "client_order_id"), _text(order, "side"), _text(order, "type") or _text(order, "order_type"),
        _decimal(order.get("qty"), "order.qty"), _decimal(order.get("filled_qty"), "order.filled_qty"),
        _decimal(order.get("filled_avg_price"), "order.filled_avg_price"), _decimal(ev.price, "price"),
        _decimal(ev.qty, "qty"), _decimal(ev.position_qty, "position_qty"), _text(order, "status"),
        orjson.dumps(order).decode(),
    )  # fmt: skip
