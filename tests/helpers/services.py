"""Small helpers around the test services.

A database of its own on the test server, and code with its own event loop run on a thread.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

T = TypeVar("T")


def in_thread(fn: Callable[[], T]) -> T:
    """Call ``fn`` on a thread of its own and return its result (or raise its error).

    For code that runs an event loop of its own (``asyncio.run``, alembic's env):
    on its own thread it cannot disturb the loops pytest-asyncio runs tests in.
    """
    outcome: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="in_thread")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return outcome[0]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code (a session fixture)."""
    return in_thread(lambda: asyncio.run(coro))


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def on_server(server_url: str, sql: str) -> None:
    """Run one statement on the server's maintenance database (CREATE/DROP DATABASE cannot run in a transaction)."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def database_of_its_own(server_url: str, prefix: str, *, migrated: bool = True) -> Iterator[str]:
    """A database made on the server for one fixture (``<prefix>_<hex>``), at head unless ``migrated=False``;
    dropped at the end, whoever is still connected (a shared server is left as found)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = with_database(server_url, name)
    run_sync(on_server(server_url, f'CREATE DATABASE "{name}"'))
    try:
        if migrated:
            from tickpipe.db import upgrade

            in_thread(lambda: upgrade(url))
        yield url
    finally:
        run_sync(on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
