"""Migrations on a server of many databases: the role tickpipe_reader belongs to the server, not to one database.

Each test runs on a PostgreSQL of its own, where it can tell whether the role
exists at all (the session's server has other databases granting it).
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from tests.helpers.services import with_database
from tickpipe import db
from tickpipe.dev.services import EmbeddedPostgres


async def roles(server: str) -> set[str]:
    conn = await asyncpg.connect(server)
    try:
        return {row["rolname"] for row in await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tick%'")}
    finally:
        await conn.close()


async def databases(server: str, *names: str) -> list[str]:
    conn = await asyncpg.connect(server)
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return [with_database(server, name) for name in names]


async def migrate(url: str) -> int:
    """``tickpipe migrate`` in a process of its own; its exit code."""
    env = {**os.environ, "DATABASE_URL": url}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tickpipe.cli", "migrate", env=env)
    return await proc.wait()


async def reader_may_read(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT to_regrole('tickpipe_reader') IS NOT NULL "
                "AND has_table_privilege('tickpipe_reader', 'quotes', 'SELECT')"
            )
        )
    finally:
        await conn.close()


async def test_databases_migrated_at_once_share_the_role_and_the_last_downgrade_drops_it(
    private_postgres: EmbeddedPostgres,
) -> None:
    """Two databases upgraded at the same time (two processes) both end with the role (the second CREATE ROLE
    finds it, or loses the race quietly); downgrading one leaves the other's grants working; downgrading both
    removes it."""
    server = private_postgres.url
    first, second = await databases(server, "one", "two")
    # Two processes, as two deployments would: alembic's op and context are one per process.
    assert list(await asyncio.gather(migrate(first), migrate(second))) == [0, 0]
    assert await roles(server) == {"tickpipe_reader"}
    assert await reader_may_read(first) and await reader_may_read(second)

    await asyncio.to_thread(db.downgrade, first, "0002")
    assert await roles(server) == {"tickpipe_reader"}, "the other database still grants it"
    assert await reader_may_read(second)
    await asyncio.to_thread(db.downgrade, second, "0002")
    assert await roles(server) == set()

    await asyncio.to_thread(db.upgrade, first)  # and back: created again
    assert await reader_may_read(first)
    await asyncio.to_thread(db.downgrade, first)
    assert await roles(server) == set()


async def test_a_downgrade_keeps_the_role_while_a_login_role_is_a_member(private_postgres: EmbeddedPostgres) -> None:
    """Someone was given tickpipe_reader by hand: a schema downgrade does not take it from them."""
    server = private_postgres.url
    (url,) = await databases(server, "kept")
    await asyncio.to_thread(db.upgrade, url)
    conn = await asyncpg.connect(server)
    try:
        await conn.execute("CREATE ROLE alice LOGIN IN ROLE tickpipe_reader")
        await asyncio.to_thread(db.downgrade, url)
        assert await roles(server) == {"tickpipe_reader"}
        assert await conn.fetchval("SELECT pg_has_role('alice', 'tickpipe_reader', 'MEMBER')")
        await asyncio.to_thread(db.upgrade, url)  # the role exists already: no error
        assert await reader_may_read(url)
    finally:
        await conn.close()


async def test_downgrade_to_0002_clears_the_descriptions_0003_wrote(private_postgres: EmbeddedPostgres) -> None:
    (url,) = await databases(private_postgres.url, "plain")
    await asyncio.to_thread(db.upgrade, url)
    await asyncio.to_thread(db.downgrade, url, "0002")
    conn = await asyncpg.connect(url)
    try:
        described = await conn.fetch(
            "SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE c.relname IN ('quotes', 'trades', 'bars', 'statuses', 'corrections', 'cancels', 'trades_corrected') "
            "AND a.attnum > 0 AND col_description(c.oid, a.attnum) IS NOT NULL"
        )
        view = await conn.fetchval("SELECT obj_description('trades_corrected'::regclass, 'pg_class')")
        quotes = await conn.fetchval("SELECT obj_description('quotes'::regclass, 'pg_class')")
    finally:
        await conn.close()
    assert described == [] and quotes is None
    assert view.startswith("trades with their corrections applied"), "0002's own words are back"
