"""Fixtures of the API tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from tests.helpers.services import in_thread, run_sync, with_database


@pytest.fixture(scope="module")
def keyed_db(postgres_server_url: str) -> Iterator[str]:
    """A database of this module alone, schema at head, for tests that add API keys.

    Keys turn auth on for every API on their database, so they never go into
    the session's database, where the other tests run without keys.
    """
    from tickpipe.db import upgrade

    name = f"tickpipe_keys_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_sync(admin(f'CREATE DATABASE "{name}"'))
    url = with_database(postgres_server_url, name)
    in_thread(lambda: upgrade(url))
    yield url
    run_sync(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
