"""``GET /trade_updates``: the account's order updates from PostgreSQL, to keys allowed to see them.

Private to the account, as ``WS /stream`` is (:mod:`api.stream.trading`): only a
key with the ``trade_updates`` scope (``tickpipe keys add NAME --trade-updates``)
is served; any other request is a 403, with auth off too. Each item is the
update as Alpaca's trading stream sent it (``event``, ``execution_id``,
``order``, ``timestamp``, ``price``, ``qty``, ``position_qty``), so alpaca-py's
``TradeUpdate(**item)`` reads it. Pages in time order (oldest first; newest first with
``sort=desc``, as the dashboard reads the latest), keyed on the last row (time, order,
event, execution), continued by ``page_token`` with the same ``sort``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import ApiKey, Denied
from api.deps import State, api_key
from api.params import MAX_NS, MIN_NS, Sort, invalid, parse_time
from api.stream.trading import SCOPE
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.settings import validate_order_symbol

router = APIRouter(tags=["order updates"])

DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
#: Most characters of an order id (Alpaca's are 36-character UUIDs).
ORDER_ID_CHARS: Final = 64
_SELECT: Final = (
    "SELECT time_ns, order_id, event, execution_id, fill_price, fill_quantity, position_quantity, order_details "
    "FROM trade_updates WHERE time >= to_timestamp($1::bigint / 1e9) - interval '1 microsecond' "
    "AND time <= to_timestamp($2::bigint / 1e9) + interval '1 microsecond' AND time_ns BETWEEN $1 AND $2 "
    "AND ($3::text IS NULL OR symbol = $3) AND ($4::text IS NULL OR order_id = $4) "
    "AND ($5::bigint IS NULL OR (time_ns, order_id, event, execution_id) {after} ($5, $6, $7, $8)) "
    "ORDER BY time_ns {order}, order_id {order}, event {order}, execution_id {order} LIMIT $9"
)
#: The query of each ``sort``: rows after the page token's in that order.
_SELECTS: Final = {
    "asc": _SELECT.format(after=">", order="ASC"),
    "desc": _SELECT.format(after="<", order="DESC"),
}


class TradeUpdatesPage(BaseModel):
    """A page of order updates, each as Alpaca's trading stream sent it."""

    trade_updates: list[dict[str, Any]] = Field(
        description="order updates in time order: event, execution_id, order (the whole order object), "
        "timestamp, price, qty, position_qty"
    )
    next_page_token: str | None = Field(description="pass as page_token for the next page; null on the last")


async def permitted(key: Annotated[ApiKey | None, Depends(api_key)]) -> ApiKey:
    """The request's key if it may see order updates; else 403 (with auth off too: they are private)."""
    if key is None or SCOPE not in key.scopes:
        raise Denied(
            403,
            "forbidden: order updates need a key allowed to see them (tickpipe keys add NAME --trade-updates)",
        )
    return key


def _token(text: str) -> tuple[int, str, str, str]:
    """A page token back to the last row's key; 422 naming ``page_token`` for anything else."""
    try:
        key = orjson.loads(base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        key = None
    shaped = isinstance(key, list) and len(key) == 4 and type(key[0]) is int
    if not shaped or not all(isinstance(v, str) and len(v) <= 128 for v in key[1:]) or not MIN_NS <= key[0] <= MAX_NS:
        invalid("query", "page_token", "expected a next_page_token of this route, unchanged", text)
    return key[0], key[1], key[2], key[3]


def _item(row: Any) -> dict[str, Any]:
    order = row["order_details"]
    item: dict[str, Any] = {
        "event": row["event"],
        "execution_id": row["execution_id"] or None,
        "order": orjson.loads(order) if isinstance(order, str) else order,
        "timestamp": format_rfc3339_ns(row["time_ns"]),
    }
    for name, column in (("price", "fill_price"), ("qty", "fill_quantity"), ("position_qty", "position_quantity")):
        if row[column] is not None:
            item[name] = str(row[column])
    return item


@router.get(
    "/trade_updates",
    response_model=TradeUpdatesPage,
    summary="The account's order updates",
    description="Order updates as stored from the trading stream, by symbol and/or order, in time order "
    "(newest first with sort=desc). Only for keys allowed to see order updates (403 otherwise).",
)
async def trade_updates(
    state: State,
    _key: Annotated[ApiKey, Depends(permitted)],
    symbol: Annotated[str | None, Query(max_length=32, description="the order's symbol: AAPL, BTC/USD")] = None,
    order_id: Annotated[str | None, Query(max_length=ORDER_ID_CHARS, description="one order's id")] = None,
    start: Annotated[str | None, Query(max_length=64, description="RFC 3339 time or date (inclusive)")] = None,
    end: Annotated[str | None, Query(max_length=64, description="RFC 3339 time or date (inclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="most updates per page")] = DEFAULT_LIMIT,
    sort: Annotated[Sort, Query(description="asc (oldest first, the default) or desc (newest first)")] = "asc",
    page_token: Annotated[str | None, Query(max_length=1024, description="next_page_token of the page before")] = None,
) -> dict[str, Any]:
    if symbol is not None:
        try:
            symbol = validate_order_symbol(symbol)
        except ValueError as exc:
            invalid("query", "symbol", str(exc), symbol)
    if order_id is not None and (not order_id or not order_id.isprintable()):
        invalid("query", "order_id", "expected an order id like 61e69015-8549-4bfd-b9c3-01e75843f47d", order_id)
    start_ns = parse_time(start, "start", end=False) if start is not None else MIN_NS
    end_ns = parse_time(end, "end", end=True) if end is not None else MAX_NS
    if start_ns > end_ns:
        invalid("query", "end", "expected end at or after start", end)
    after: tuple[int | None, str | None, str | None, str | None] = (None, None, None, None)
    if page_token is not None:
        after = _token(page_token)
    rows = await state.pool.fetch(_SELECTS[sort], start_ns, end_ns, symbol, order_id, *after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    token = None
    if more:
        last = rows[-1]
        key = [last["time_ns"], last["order_id"], last["event"], last["execution_id"]]
        token = base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")
    return {"trade_updates": [_item(row) for row in rows], "next_page_token": token}
