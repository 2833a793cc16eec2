"""Waiting on a condition with a deadline: the one way tests synchronise (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_for(
    condition: Callable[[], Any], timeout: float = 20.0, what: str = "a condition", *, every: float = 0.01
) -> Any:
    """Poll ``condition`` (sync, or returning an awaitable) until it is truthy and return that value.

    Fails naming ``what`` after ``timeout`` seconds; polls every ``every`` seconds in between.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)


def wait_for_sync(
    condition: Callable[[], Any], timeout: float = 30.0, what: str = "a condition", *, every: float = 0.05
) -> Any:
    """:func:`wait_for` for code with no event loop (threads, subprocesses)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
