"""How every part of the producer waits before trying again, and how it names what went wrong."""

from __future__ import annotations

import random


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential from ``base``, capped at ``cap``, half of it random ("equal jitter").

    The random half keeps restarts of many clients from hitting a recovering
    service in step; the fixed half keeps the wait from collapsing to zero.
    """
    delay = min(cap, base * 2 ** (max(attempt, 1) - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def describe(exc: BaseException) -> str:
    """``KafkaTimeoutError`` or ``ConnectionRefusedError: [Errno 111] ...``, for one log line."""
    text, name = str(exc), type(exc).__name__
    if text.startswith(name):  # aiokafka's errors name themselves
        return text
    return f"{name}: {text}" if text else name
