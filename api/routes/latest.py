"""``GET /quotes/latest``, ``/trades/latest``, ``/bars/latest``: Redis snapshots, PostgreSQL behind them.

The snapshot hashes (``latest:quotes`` ...) answer in one HMGET; symbols they
do not hold (never seen live, or Redis down) come from the newest stored row.
One route per served table of every feed of the declaration (:mod:`tickpipe.feeds`):
the stock feed's ``/quotes/latest`` ..., the crypto feed's ``/crypto/quotes/latest``
... (hashes ``latest:crypto.quotes`` ...). A family whose hash holds whole books
(crypto order books, ``Family.book``) has ``/crypto/orderbooks/latest``: each pair's
current book from the live snapshot alone (its table keeps the messages, not books).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from api.deps import State
from api.models import (
    LatestBars,
    LatestCryptoBars,
    LatestCryptoQuotes,
    LatestCryptoTrades,
    LatestOptionQuotes,
    LatestOptionTrades,
    LatestOrderbooks,
    LatestQuotes,
    LatestTrades,
    Unavailable,
)
from api.params import SYMBOLS, Symbols, SymbolsQuery
from api.queries import SERVED, latest_sql
from api.shape import SHAPES, book_object, encode_json, latest_object
from tickpipe.feeds import FEEDS, Family, Feed
from tickpipe.names import latest_hash

log = logging.getLogger(__name__)
router = APIRouter(tags=["latest"])

RESPONSES: dict[int | str, dict[str, Any]] = {503: {"model": Unavailable, "description": "PostgreSQL does not answer"}}
HOW = (
    "From the live snapshot in Redis, or the newest stored row when Redis has none. "
    "Symbols with no data at all are left out."
)
BOOK_RESPONSES: dict[int | str, dict[str, Any]] = {503: {"model": Unavailable, "description": "Redis does not answer"}}
BOOK_HOW = (
    "Each pair's whole current book (bids and asks, best first, and the time of its last change) from the "
    "live snapshot in Redis, as the producer keeps it from the stream's order book messages: there is no "
    "PostgreSQL fallback (the table holds the messages, not books), so a 503 when Redis does not answer. "
    "Pairs without a live book are left out."
)


async def latest(state: State, table: str, symbols: list[str]) -> Response:
    feed, family = SERVED[table]
    snapshots = latest_hash(feed.word(family.name))
    found: dict[str, Any] = {}
    try:
        values = await state.redis.hmget(snapshots, symbols)
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("latest %s: Redis did not answer (%s); reading PostgreSQL", table, exc)
        values = [None] * len(symbols)
    for symbol, payload in zip(symbols, values, strict=True):
        snapshot = latest_object(payload, table) if payload else None
        if snapshot is not None:
            found[symbol] = snapshot
    missing = [symbol for symbol in symbols if symbol not in found]
    if missing:
        rows = await state.pool.fetch(latest_sql(table), missing)
        for row, item in zip(rows, SHAPES[table]([tuple(row)[1:] for row in rows]), strict=True):
            found[row[0]] = item
    body = {family.name: {symbol: found[symbol] for symbol in symbols if symbol in found}}
    return Response(encode_json(body), media_type="application/json")


async def latest_books(state: State, feed: Feed, family: Family, symbols: list[str]) -> Response:
    """Whole books from the feed's book hash (``latest:crypto.orderbooks``); 503 if Redis does not answer."""
    snapshots = latest_hash(feed.word(family.name))
    try:
        values = await state.redis.hmget(snapshots, symbols)
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("latest %s: Redis did not answer (%s)", snapshots, exc)
        detail = f"Redis is unavailable: the current {family.name} come from its live snapshot only ({exc})"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})
    books = {}
    for symbol, payload in zip(symbols, values, strict=True):
        book = book_object(payload) if payload else None
        if book is not None:
            books[symbol] = book
    return Response(encode_json({family.name: books}), media_type="application/json")


#: What the docs say of each served table's latest route: its model and what one item is.
DOCS: Final[dict[str, tuple[type[BaseModel], str]]] = {
    "quotes": (LatestQuotes, "quote"),
    "trades": (LatestTrades, "trade"),
    "bars": (LatestBars, "minute bar"),
    "crypto_quotes": (LatestCryptoQuotes, "quote"),
    "crypto_trades": (LatestCryptoTrades, "trade"),
    "crypto_bars": (LatestCryptoBars, "minute bar"),
    "options_quotes": (LatestOptionQuotes, "quote"),
    "options_trades": (LatestOptionTrades, "trade"),
}
#: The model of each book family's latest route, by table.
BOOK_DOCS: Final[dict[str, type[BaseModel]]] = {"crypto_orderbooks": LatestOrderbooks}


def endpoint(table: str, rule: Symbols) -> Callable[..., Awaitable[Response]]:
    async def latest_of(state: State, symbols: SymbolsQuery) -> Response:
        return await latest(state, table, rule.parse(symbols))

    latest_of.__annotations__["symbols"] = rule.list_type  # the feed's symbols: tickers, or pairs
    return latest_of


def book_endpoint(feed: Feed, family: Family, rule: Symbols) -> Callable[..., Awaitable[Response]]:
    async def books_of(state: State, symbols: SymbolsQuery) -> Response:
        return await latest_books(state, feed, family, rule.parse(symbols))

    books_of.__annotations__["symbols"] = rule.list_type
    return books_of


for _table, (_feed, _family) in SERVED.items():
    _model, _item = DOCS[_table]
    _symbols = SYMBOLS[_feed.name]
    router.add_api_route(
        f"{_feed.route(_family.name)}/latest",
        endpoint(_table, _symbols),
        methods=["GET"],
        name=f"latest_{_table}",
        response_model=_model,
        summary=f"Latest {_item} of each {_symbols.noun}",
        description=HOW,
        responses=RESPONSES,
    )

for _feed in FEEDS:
    for _family in _feed.families:
        if _family.book and _family.table is not None:
            _symbols = SYMBOLS[_feed.name]
            router.add_api_route(
                f"{_feed.route(_family.name)}/latest",
                book_endpoint(_feed, _family, _symbols),
                methods=["GET"],
                name=f"latest_{_family.table}",
                response_model=BOOK_DOCS[_family.table],
                summary=f"Current order book of each {_symbols.noun}",
                description=BOOK_HOW,
                responses=BOOK_RESPONSES,
            )
