"""How every part of the producer waits before trying again, and how it names what went wrong."""

from __future__ import annotations

from tickpipe.backoff import EqualJitterBackoff


def curve(base: float, cap: float) -> EqualJitterBackoff:
    """The project's one retry curve (:mod:`tickpipe.backoff`), from ``base`` up to ``cap`` (a cap below
    ``base``, as tests set, waits the cap)."""
    return EqualJitterBackoff(base=min(base, cap), cap=cap)


def describe(exc: BaseException) -> str:
    """``KafkaTimeoutError`` or ``ConnectionRefusedError: [Errno 111] ...``, for one log line."""
    text, name = str(exc), type(exc).__name__
    if text.startswith(name):  # aiokafka's errors name themselves
        return text
    return f"{name}: {text}" if text else name
