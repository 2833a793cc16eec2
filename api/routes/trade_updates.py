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

import re
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import ApiKey, Denied
from api.deps import State, api_key
from api.params import MAX_NS, MIN_NS, EndQuery, Sort, StartQuery, invalid, parse_time
from api.stream.trading import SCOPE
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.feeds import TRADE_UPDATES_FEED
from tickpipe.settings import validate_order_symbol

router = APIRouter(tags=["order updates"])

DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
#: An order's symbol as the feed declares it (a ticker, a crypto pair, an OCC contract), in either case.
ORDER_SYMBOL_PATTERN: Final = f"^{TRADE_UPDATES_FEED.symbol_pattern.replace('A-Z', 'A-Za-z')}$"
_ORDER_SYMBOL: Final = re.compile(ORDER_SYMBOL_PATTERN, re.ASCII)
#: Most characters of an order id (Alpaca's are 36-character UUIDs).
ORDER_ID_CHARS: Final = 64
ORDER_ID_PATTERN: Final = rf"^[\x21-\x7e]{{1,{ORDER_ID_CHARS}}}$"
_ORDER_ID: Final = re.compile(ORDER_ID_PATTERN, re.ASCII)
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


#: A page token: the last row's time (ns, 16 hex digits, below 2**63) then its order id, event and
#: execution id, each the hex of its UTF-8 bytes after a dash. Every string of the pattern is a key the
#: route takes (the document says exactly what the server accepts, as :mod:`api.tokens` does for the others).
TOKEN_PATTERN: Final = r"^[0-7][0-9a-f]{15}(?:-(?:[0-9a-f]{2}){0,256}){3}$"
_TOKEN: Final = re.compile(TOKEN_PATTERN, re.ASCII)


def _text(hexed: str) -> str:
    """Hex of UTF-8 back to text; bytes no row holds (not UTF-8, NUL) become U+FFFD, a key sorting like any."""
    return bytes.fromhex(hexed).decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _token(text: str) -> tuple[int, str, str, str]:
    """A page token back to the last row's key; 422 naming ``page_token`` for anything else."""
    if not _TOKEN.fullmatch(text):
        shown = text if len(text) <= 64 else f"{text[:64]}..."
        invalid("query", "page_token", f"expected the next_page_token of a previous page ({TOKEN_PATTERN})", shown)
    time_hex, order_id, event, execution_id = text.split("-")
    return int(time_hex, 16), _text(order_id), _text(event), _text(execution_id)


def _encode_token(time_ns: int, order_id: str, event: str, execution_id: str) -> str:
    return "-".join([f"{time_ns:016x}", *(part.encode().hex() for part in (order_id, event, execution_id))])


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
    symbol: Annotated[
        str | None,
        Query(
            description="the order's symbol, any case: AAPL, BTC/USD, AAPL240621C00190000",
            json_schema_extra={"pattern": ORDER_SYMBOL_PATTERN},
        ),
    ] = None,
    order_id: Annotated[
        str | None,
        Query(description="one order's id (printable ASCII)", json_schema_extra={"pattern": ORDER_ID_PATTERN}),
    ] = None,
    start: StartQuery = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="most updates per page")] = DEFAULT_LIMIT,
    sort: Annotated[Sort, Query(description="asc (oldest first, the default) or desc (newest first)")] = "asc",
    page_token: Annotated[
        str | None,
        Query(description="next_page_token of the page before", json_schema_extra={"pattern": TOKEN_PATTERN}),
    ] = None,
) -> dict[str, Any]:
    if symbol is not None:
        if not _ORDER_SYMBOL.fullmatch(symbol):  # exactly what the document says (no spaces, ASCII letters)
            invalid(
                "query", "symbol", f"expected an order's symbol like AAPL, BTC/USD ({ORDER_SYMBOL_PATTERN})", symbol
            )
        symbol = validate_order_symbol(symbol)
    if order_id is not None and not _ORDER_ID.fullmatch(order_id):
        invalid("query", "order_id", "expected an order id like 61e69015-8549-4bfd-b9c3-01e75843f47d", order_id)
    start_ns = parse_time(start, "start", end=False) if start is not None else MIN_NS
    end_ns = parse_time(end, "end", end=True) if end is not None else MAX_NS
    after: tuple[int | None, str | None, str | None, str | None] = (None, None, None, None)
    if page_token is not None:
        after = _token(page_token)
    if start_ns > end_ns:  # as on every history route: an empty page, not an error
        return {"trade_updates": [], "next_page_token": None}
    rows = await state.pool.fetch(_SELECTS[sort], start_ns, end_ns, symbol, order_id, *after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    token = None
    if more:
        last = rows[-1]
        token = _encode_token(last["time_ns"], last["order_id"], last["event"], last["execution_id"])
    return {"trade_updates": [_item(row) for row in rows], "next_page_token": token}
