"""How the producer names what went wrong, in one log line (its waits are :mod:`tickpipe.backoff`'s one curve)."""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    """``KafkaTimeoutError`` or ``ConnectionRefusedError: [Errno 111] ...``, for one log line."""
    text, name = str(exc), type(exc).__name__
    if text.startswith(name):  # aiokafka's errors name themselves
        return text
    return f"{name}: {text}" if text else name
