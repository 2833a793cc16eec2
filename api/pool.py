"""The PostgreSQL pool of one API instance, with a bounded wait for a connection.

Why: asyncpg's ``Pool.fetch`` waits for a free connection without a limit.
Ten slow CSV readers held every pooled connection and every other request
queued behind them for as long as they read, with no answer at all. Here a
request waits at most ``timeout`` (API_DB_POOL_TIMEOUT_S), then fails with
:class:`PoolBusy`, which the app answers with 503 and ``Retry-After``: the
client learns the instance is busy and may come back, the event loop keeps
no unbounded line of waiters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


class PoolBusy(Exception):
    """No pooled PostgreSQL connection came free in time (503, the client may retry)."""

    def __init__(self, size: int, timeout: float) -> None:
        super().__init__(
            f"all {size} PostgreSQL connections of this API instance stayed busy for {timeout:g} s; retry shortly"
        )


class BoundedPool:
    """What the routes use of asyncpg's pool: ``acquire``, ``fetch``, ``fetchval``, each waiting boundedly."""

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self._pool = pool
        self.timeout = timeout

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection within ``timeout``, or :class:`PoolBusy`; given back however the block ends."""
        try:
            conn = await self._pool.acquire(timeout=self.timeout)
        except TimeoutError:
            raise PoolBusy(self._pool.get_max_size(), self.timeout) from None
        try:
            yield conn
        finally:
            await self._pool.release(conn)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def close(self) -> None:
        await self._pool.close()
