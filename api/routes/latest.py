"""``GET /quotes/latest``, ``/trades/latest``, ``/bars/latest``: Redis snapshots, PostgreSQL behind them.

The snapshot hashes (``latest:quotes`` ...) answer in one HMGET; symbols they
do not hold (never seen live, or Redis down) come from the newest stored row.
One route per stored family of the feed declaration (:mod:`tickpipe.feeds`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from api.deps import State
from api.models import LatestBars, LatestQuotes, LatestTrades, Unavailable
from api.params import SymbolsQuery, parse_symbols
from api.queries import latest_sql
from api.shape import SHAPES, encode_json, latest_object
from tickpipe.feeds import STOCK
from tickpipe.names import latest_hash

log = logging.getLogger(__name__)
router = APIRouter(tags=["latest"])

RESPONSES: dict[int | str, dict[str, Any]] = {503: {"model": Unavailable, "description": "PostgreSQL does not answer"}}
HOW = (
    "From the live snapshot in Redis, or the newest stored row when Redis has none. "
    "Symbols with no data at all are left out."
)


async def latest(state: State, family: str, symbols: list[str]) -> Response:
    found: dict[str, Any] = {}
    try:
        values = await state.redis.hmget(latest_hash(family), symbols)
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("latest %s: Redis did not answer (%s); reading PostgreSQL", family, exc)
        values = [None] * len(symbols)
    for symbol, payload in zip(symbols, values, strict=True):
        snapshot = latest_object(payload, family) if payload else None
        if snapshot is not None:
            found[symbol] = snapshot
    missing = [symbol for symbol in symbols if symbol not in found]
    if missing:
        rows = await state.pool.fetch(latest_sql(family), missing)
        for row, item in zip(rows, SHAPES[family]([tuple(row)[1:] for row in rows]), strict=True):
            found[row[0]] = item
    body = {family: {symbol: found[symbol] for symbol in symbols if symbol in found}}
    return Response(encode_json(body), media_type="application/json")


#: What the docs say of each stored family's latest route: its model and what one item is.
DOCS: Final[dict[str, tuple[type[BaseModel], str]]] = {
    "quotes": (LatestQuotes, "quote"),
    "trades": (LatestTrades, "trade"),
    "bars": (LatestBars, "minute bar"),
}


def endpoint(family: str) -> Callable[..., Awaitable[Response]]:
    async def latest_of(state: State, symbols: SymbolsQuery) -> Response:
        return await latest(state, family, parse_symbols(symbols))

    return latest_of


for _family in STOCK.stored:
    _model, _item = DOCS[_family.name]
    router.add_api_route(
        f"/{_family.name}/latest",
        endpoint(_family.name),
        methods=["GET"],
        name=f"latest_{_family.name}",
        response_model=_model,
        summary=f"Latest {_item} of each symbol",
        description=HOW,
        responses=RESPONSES,
    )
