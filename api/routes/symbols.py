"""``GET /symbols``: every symbol the pipeline knows, live (Redis) or stored (PostgreSQL)."""

from __future__ import annotations

import logging
import time
from typing import Final

import orjson
import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import State
from api.models import SymbolsOut, Unavailable
from api.queries import symbols_sql
from tickpipe.names import REQUIRED_FAMILIES, SYMBOLS_KEY, latest_hash
from tickpipe.settings import SYMBOL_RE

log = logging.getLogger(__name__)
router = APIRouter(tags=["symbols"])

#: Seconds a /symbols answer is reused (it costs one index probe per symbol and partition).
TTL_S: Final = 5.0


async def known_symbols(state: State) -> list[str]:
    names: set[str] = set()
    try:
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(SYMBOLS_KEY)
            for family in REQUIRED_FAMILIES:
                pipe.hkeys(latest_hash(family))
            for result in await pipe.execute():
                names.update(item.decode() if isinstance(item, bytes) else str(item) for item in result)
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("symbols: Redis did not answer (%s); PostgreSQL only", exc)
    for table in REQUIRED_FAMILIES:
        names.update(row[0] for row in await state.pool.fetch(symbols_sql(table)))
    return sorted(name for name in names if SYMBOL_RE.match(name))


@router.get(
    "/symbols",
    response_model=SymbolsOut,
    summary="Known symbols",
    description="Symbols the producer subscribes to, has live snapshots of, or has stored history of. "
    f"Reused for {TTL_S:.0f} s.",
    responses={503: {"model": Unavailable, "description": "PostgreSQL does not answer"}},
)
async def symbols(state: State) -> Response:
    cached = state.cached_symbols(TTL_S)
    if cached is None:
        cached = await known_symbols(state)
        state.symbols_cache = (time.monotonic(), cached)
    return Response(orjson.dumps({"symbols": cached}), media_type="application/json")
