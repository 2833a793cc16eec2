"""The producer's own admin routes: the run-time symbol list.

``GET /symbols``, ``POST /symbols`` ``{"symbols": ["AAPL", ...]}`` and
``DELETE /symbols/{symbol}`` change the upstream subscription on the open
connection (no reconnect) and keep the list in Redis for the next start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from redis.exceptions import RedisError


class Symbols(Protocol):
    """The symbol list the routes change (:class:`~producer.symbols.SymbolRegistry`)."""

    @property
    def configured(self) -> list[str]: ...
    @property
    def runtime(self) -> list[str]: ...
    def current(self) -> list[str]: ...
    async def add(self, symbols: Iterable[str]) -> list[str]: ...
    async def remove(self, symbol: str) -> bool: ...


class Subscription(Protocol):
    """The open upstream connection's subscription (:class:`~producer.upstream.UpstreamClient`)."""

    @property
    def subscription(self) -> dict[str, list[str]]: ...
    async def subscribe(self, symbols: Sequence[str]) -> None: ...
    async def unsubscribe(self, symbols: Sequence[str]) -> None: ...


class SymbolsBody(BaseModel):
    symbols: list[str] = Field(min_length=1, max_length=10_000)


def add_symbol_routes(app: FastAPI, registry: Symbols, upstream: Subscription) -> None:
    """``GET``/``POST /symbols`` and ``DELETE /symbols/{symbol}`` on ``app``, changing ``registry`` and ``upstream``."""

    def listing() -> dict[str, Any]:
        return {
            "symbols": registry.current(),
            "configured": registry.configured,
            "runtime": registry.runtime,
            "upstream": upstream.subscription,
        }

    @app.get("/symbols")
    async def get_symbols() -> dict[str, Any]:
        return listing()

    @app.post("/symbols")
    async def post_symbols(body: SymbolsBody) -> dict[str, Any]:
        try:
            added = await registry.add(body.symbols)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except (RedisError, OSError) as exc:
            raise HTTPException(503, f"could not store the symbols in Redis: {exc}") from None
        await upstream.subscribe(added)
        return {"added": added, **listing()}

    @app.delete("/symbols/{symbol}")
    async def delete_symbol(symbol: str) -> dict[str, Any]:
        name = symbol.strip().upper()
        if name in registry.configured:
            raise HTTPException(409, f"{name} is in SUBSCRIBED_SYMBOLS; remove it there, not at run time")
        try:
            removed = await registry.remove(name)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except (RedisError, OSError) as exc:
            raise HTTPException(503, f"could not update Redis: {exc}") from None
        if not removed:
            raise HTTPException(404, f"{name} was not added at run time")
        if name not in registry.current():
            await upstream.unsubscribe([name])
        return {"removed": name, **listing()}
