"""The bench database for ``bench/api.py``: 10 million quotes across 500 symbols, built once.

Built inside PostgreSQL with ``INSERT ... SELECT generate_series`` rather than
COPY from Python: the rows never cross a socket, which makes the one-time load
a few times faster than any client-side COPY on this machine. A database that
already holds the full table is reused as it is.

    python bench/api_data.py [--database-url URL] [--rows N] [--symbols N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tickpipe import db
from tickpipe.settings import redact_url

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "tickpipe_bench"
ROWS = 10_000_000
SYMBOLS = 500
#: First quote 2024-03-04T13:30:00Z; one quote every 4.68 ms (spread across two UTC days).
START_NS = 1_709_559_000 * 1_000_000_000
STEP_NS = 4_680_000


def symbol_names(count: int) -> list[str]:
    return [f"S{n:03d}" for n in range(count)]


def bench_url(server_url: str, name: str = BENCH_DB) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


LOAD_SQL = """
INSERT INTO quotes
SELECT 'S' || lpad((n % $1)::text, 3, '0'),
       timestamptz 'epoch' + ((($2::bigint + n * $3::bigint) / 1000) * interval '1 microsecond'),
       $2::bigint + n * $3::bigint,
       n,
       'V', round((100 + (n % $1) + ((n * 7919) % 1000) / 100.0)::numeric, 2)::float8, 100 * (1 + n % 7),
       'N', round((100.01 + (n % $1) + ((n * 7919) % 1000) / 100.0)::numeric, 2)::float8, 100 * (1 + n % 5),
       '{R}', 'C',
       timestamptz 'epoch' + ((($2::bigint + n * $3::bigint) / 1000) * interval '1 microsecond') + interval '1 ms'
FROM generate_series($4::bigint, $5::bigint) AS n
"""


async def connect_server(server_url: str) -> asyncpg.Connection:
    """A connection to the benches' PostgreSQL server, or one line saying it is not there (no traceback)."""
    try:
        return await asyncpg.connect(db.asyncpg_dsn(server_url))
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"bench: cannot reach PostgreSQL at {redact_url(server_url)} ({type(exc).__name__}: {exc}); start one "
            "(Debian: pg_ctlcluster 15 main start) or pass --database-url / DATABASE_URL"
        ) from None


async def ensure_bench_db(server_url: str, rows: int = ROWS, symbols: int = SYMBOLS) -> str:
    """Create, migrate and fill the bench database unless it already holds ``rows`` quotes; its URL."""
    url = bench_url(server_url)
    admin = await connect_server(server_url)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", BENCH_DB):
            await admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await admin.close()
    await asyncio.to_thread(db.upgrade, url)
    conn = await asyncpg.connect(db.asyncpg_dsn(url))
    try:
        have = await conn.fetchval("SELECT count(*) FROM quotes")
        if have == rows:
            return url
        print(f"building {rows:,} quotes over {symbols} symbols in {BENCH_DB} (once)...", flush=True)
        began = time.perf_counter()
        await conn.execute("TRUNCATE quotes")
        last_ns = START_NS + (rows - 1) * STEP_NS
        first_day = date.fromtimestamp(START_NS // 1_000_000_000)
        last_day = date.fromtimestamp(last_ns // 1_000_000_000)
        await db.ensure_partitions(conn, db.days_between(first_day, last_day), ["quotes"])
        chunk = 1_000_000
        for first in range(0, rows, chunk):
            await conn.execute(LOAD_SQL, symbols, START_NS, STEP_NS, first, min(rows, first + chunk) - 1)
            print(f"  {min(rows, first + chunk):,} rows, {time.perf_counter() - began:.0f} s", flush=True)
        await conn.execute("ANALYZE quotes")
        await conn.execute("VACUUM (ANALYZE) quotes")
        print(f"built in {time.perf_counter() - began:.0f} s", flush=True)
    finally:
        await conn.close()
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_SERVER)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--symbols", type=int, default=SYMBOLS)
    args = parser.parse_args(argv)
    print(asyncio.run(ensure_bench_db(args.database_url, args.rows, args.symbols)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
