"""Small helpers around the test services.

A database URL on the same server, and code with its own event loop run on a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

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
