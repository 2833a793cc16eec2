"""``GET /symbols``: every symbol the pipeline knows, live (Redis) or stored (PostgreSQL), by feed.

``symbols`` holds the stock feed's (as it always has: the dashboard's watchlist lists them); each other
feed ``ALPACA_FEEDS`` names adds its own key, the feed's qualifier (``crypto``: pairs, ``options``: OCC
contracts). A feed's symbols are those of its run-time set (``tickpipe:symbols:options``), of its live
snapshot hashes (``latest:options.trades`` ...) and of its served tables, each checked against the
feed's symbol pattern; everything is derived from the declaration (:mod:`tickpipe.feeds`).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Final

import orjson
import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import State
from api.models import SymbolsOut, Unavailable
from api.queries import symbols_sql
from tickpipe.feeds import STOCK, Feed
from tickpipe.names import SYMBOLS_KEY, latest_hash, qualified

log = logging.getLogger(__name__)
router = APIRouter(tags=["symbols"])

#: Seconds a /symbols answer is reused (it costs one index probe per symbol and partition).
TTL_S: Final = 5.0


async def feed_symbols(state: State, feed: Feed) -> list[str]:
    """One feed's known symbols, sorted: its run-time set, its snapshot hashes and its served tables."""
    names: set[str] = set()
    try:
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(qualified(SYMBOLS_KEY, feed.qualifier))
            for family in feed.stored:
                pipe.hkeys(latest_hash(feed.word(family.name)))
            for result in await pipe.execute():
                names.update(item.decode() if isinstance(item, bytes) else str(item) for item in result)
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("symbols: Redis did not answer (%s); PostgreSQL only", exc)
    for family in feed.stored:
        if family.table is not None:
            names.update(row[0] for row in await state.pool.fetch(symbols_sql(family.table)))
    pattern = re.compile(feed.symbol_pattern)
    return sorted(name for name in names if pattern.fullmatch(name))


async def known_symbols(state: State) -> dict[str, list[str]]:
    """``symbols``: the stock feed's; then one key per other feed ALPACA_FEEDS names (its qualifier)."""
    known = {"symbols": await feed_symbols(state, STOCK)}
    for feed in state.settings.feeds:
        if feed.qualifier:
            known[feed.qualifier] = await feed_symbols(state, feed)
    return known


@router.get(
    "/symbols",
    response_model=SymbolsOut,
    summary="Known symbols",
    description="Symbols the producers subscribe to, have live snapshots of, or have stored history of: "
    "`symbols` the stock feed's, and `crypto` (pairs) and `options` (OCC contracts) when ALPACA_FEEDS names "
    f"that feed. Reused for {TTL_S:.0f} s.",
    responses={503: {"model": Unavailable, "description": "PostgreSQL does not answer"}},
)
async def symbols(state: State) -> Response:
    cached = state.cached_symbols(TTL_S)
    if cached is None:
        cached = await known_symbols(state)
        state.symbols_cache = (time.monotonic(), cached)
    return Response(orjson.dumps(cached), media_type="application/json")
