"""The HTTP API's bounds: CSV exports capped in rows and in number, a bounded wait for a pooled
connection, and no password of PostgreSQL or Redis in any error body.

A real uvicorn on the session's PostgreSQL. To hold a connection as a slow
client would, the test takes an exclusive lock on a table: a request reading
it then waits inside PostgreSQL, with its pooled connection (and its export
slot), until the test lets go. Every wait is on a condition, never a time.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import date

import asyncpg
import httpx
import pytest

from api.state import scrub
from tests.helpers.api import ApiServer, api_settings, insert_events, running_api
from tests.helpers.events import bar, day_ns, quote
from tests.helpers.waiting import wait_for
from tickpipe import db
from tickpipe.dev.processes import free_port
from tickpipe.settings import load_settings

DAY = date(2024, 3, 7)


@pytest.fixture
async def bounded(migrated_db: str, redis_url: str) -> AsyncIterator[ApiServer]:
    """Two pooled connections, one CSV export at a time, three rows per export."""
    settings = api_settings(
        migrated_db, redis_url, api_db_pool_size=2, api_csv_exports_max=1, api_csv_max_rows=3, api_db_pool_timeout_s=0.5
    )
    async with running_api(settings) as server:
        yield server


class Lock:
    """An exclusive lock on ``quotes``, held by one connection until ``release``; another one watches
    ``pg_stat_activity`` (a transaction sees a frozen snapshot of it, so not the locking one)."""

    def __init__(self, holder: asyncpg.Connection, watcher: asyncpg.Connection) -> None:
        self.holder = holder
        self.watcher = watcher

    async def take(self) -> None:
        await self.holder.execute("BEGIN; LOCK TABLE quotes IN ACCESS EXCLUSIVE MODE")

    async def release(self) -> None:
        await self.holder.execute("ROLLBACK")

    async def waiting(self, count: int) -> bool:
        """Whether ``count`` sessions wait for the lock to read quotes (requests parked in PostgreSQL)."""
        found = await self.watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%FROM quotes %'"
        )
        return bool(found == count)


@pytest.fixture
async def lock(migrated_db: str) -> AsyncIterator[Lock]:
    holder = await asyncpg.connect(db.asyncpg_dsn(migrated_db))
    watcher = await asyncpg.connect(db.asyncpg_dsn(migrated_db))
    try:
        yield Lock(holder, watcher)
    finally:
        await holder.close()  # ends the transaction, if still open
        await watcher.close()


def rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


async def test_csv_without_a_limit_stops_at_the_row_cap_and_continues_by_token(
    bounded: ApiServer, migrated_db: str, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    ns = day_ns(DAY, 14)
    await insert_events(migrated_db, [quote(symbol, ns + n) for n in range(5)])
    await insert_events(migrated_db, [bar(symbol, ns + n * 300 * 10**9, 1, 2) for n in range(5)])
    csv_accept = {"Accept": "text/csv"}
    async with httpx.AsyncClient(base_url=bounded.url, timeout=30) as http:
        for path, params in ((f"/quotes/{symbol}", {}), (f"/bars/{symbol}", {"timeframe": "5Min"})):
            first = await http.get(path, params=params, headers=csv_accept)
            assert first.status_code == 200 and len(rows(first.text)) == 3
            token = first.headers["Next-Page-Token"]
            rest = await http.get(path, params={**params, "page_token": token}, headers=csv_accept)
            assert rest.status_code == 200 and "Next-Page-Token" not in rest.headers
            times = [row["time"] for row in rows(first.text) + rows(rest.text)]
            assert len(times) == 5 and times == sorted(set(times))


async def test_csv_exports_beyond_the_limit_get_503_and_the_slot_comes_back(
    bounded: ApiServer, lock: Lock, unique_symbol: Callable[[], str]
) -> None:
    symbol, exports = unique_symbol(), bounded.app.state.api.csv_exports
    await lock.take()
    csv_accept = {"Accept": "text/csv"}
    async with httpx.AsyncClient(base_url=bounded.url, timeout=30) as http:
        first = asyncio.create_task(http.get(f"/quotes/{symbol}", headers=csv_accept))
        await wait_for(lambda: lock.waiting(1), what="the first export to wait in PostgreSQL")
        assert exports.taken == 1
        refused = await http.get(f"/trades/{symbol}", headers=csv_accept)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert "at most 1 CSV exports at once" in refused.json()["detail"]
        assert (await http.get(f"/trades/{symbol}")).status_code == 200  # JSON pages are not exports
        await lock.release()
        answered = await first
        assert answered.status_code == 200 and answered.text.startswith("symbol,")
        await wait_for(lambda: exports.taken == 0, what="the slot to come back")
        # A client that leaves before reading the body gives its slot back too.
        async with http.stream("GET", f"/trades/{symbol}", headers=csv_accept) as response:
            assert response.status_code == 200
        await wait_for(lambda: exports.taken == 0, what="the slot of a client gone early")
        assert (await http.get(f"/trades/{symbol}", headers=csv_accept)).status_code == 200


async def test_a_request_waits_a_bounded_time_for_a_pooled_connection_then_gets_503(
    bounded: ApiServer, lock: Lock, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    await lock.take()
    async with httpx.AsyncClient(base_url=bounded.url, timeout=30) as http:
        # Two readers hold both pooled connections, waiting in PostgreSQL as slow clients would.
        holders = [asyncio.create_task(http.get(f"/quotes/{symbol}", params={"sort": s})) for s in ("asc", "desc")]
        await wait_for(lambda: lock.waiting(2), what="both readers to wait in PostgreSQL")
        refused = await http.get(f"/trades/{symbol}")
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert "all 2 PostgreSQL connections of this API instance stayed busy" in refused.json()["detail"]
        await lock.release()
        assert [(await holder).status_code for holder in holders] == [200, 200]
        assert (await http.get(f"/trades/{symbol}")).status_code == 200


async def test_no_password_in_error_bodies_or_readiness() -> None:
    pg_secret, redis_secret = "pg-S3cret-pw", "redis%2FS3cret"
    settings = api_settings(
        f"postgresql://tickpipe:{pg_secret}@127.0.0.1:{free_port()}/nothing",
        f"redis://:{redis_secret}@127.0.0.1:{free_port()}/0",
    )
    secrets = (pg_secret, redis_secret, "redis/S3cret")
    async with running_api(settings) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for path in ("/readyz", "/quotes/AAPL", "/bars/AAPL?timeframe=1Day", "/quotes/latest?symbols=AAPL", "/symbols"):
            for accept in ("application/json", "text/csv"):
                response = await http.get(path, headers={"Accept": accept})
                assert response.status_code == 503, (path, response.text)
                assert not any(secret in response.text for secret in secrets), (path, response.text)


def test_scrub_removes_both_passwords_as_written_and_decoded() -> None:
    settings = load_settings(
        database_url="postgresql://user:p%40ss@db:5432/x", redis_url="rediss://default:r3d1s@cache:6380/0"
    )
    text = "connect to postgresql://user:p%40ss@db:5432/x failed (password p@ss); AUTH r3d1s refused"
    assert scrub(text, settings) == "connect to postgresql://user:***@db:5432/x failed (password ***); AUTH *** refused"
