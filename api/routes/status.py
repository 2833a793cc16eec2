"""``GET /status``: every instance of the pipeline and the figures of the dashboard's status strip.

Read from the health documents each process writes to Redis
(:mod:`tickpipe.health`), not from the services' admin ports: the API need not
know where anything runs, so the answer is the same on one machine, under
compose with scaled consumers, and across machines. An instance whose document
expired is listed as ``lost``. When Redis does not answer, the route still
answers 200, with every part unreachable and the reason.

Answers are cached for :data:`MIN_INTERVAL_S`, so any number of open
dashboards cost Redis one read each per interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import APIRouter, Request

from tickpipe.health import REDIS_ERRORS, read_instances, summarize

router = APIRouter()

MIN_INTERVAL_S: Final = 1.0
READ_TIMEOUT_S: Final = 1.5

Instances = Callable[[], Awaitable[list[dict[str, Any]]]]


def unavailable(reason: str) -> dict[str, Any]:
    """The answer when the documents cannot be read: nothing known, and why."""
    answer = summarize([])
    for part in answer["parts"].values():
        part["error"] = reason
    return {**answer, "error": reason}


@dataclass
class Tracker:
    """The last answer, kept :data:`MIN_INTERVAL_S` (the cache)."""

    clock: Callable[[], float] = time.monotonic
    answer: dict[str, Any] | None = None
    answered_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def status(self, instances: Instances) -> dict[str, Any]:
        async with self.lock:
            if self.answer is None or self.clock() - self.answered_at >= MIN_INTERVAL_S:
                try:
                    async with asyncio.timeout(READ_TIMEOUT_S):
                        self.answer = {**summarize(await instances()), "error": None}
                except REDIS_ERRORS as exc:
                    self.answer = unavailable(f"Redis: {type(exc).__name__}: {exc}")
                self.answered_at = self.clock()
            return self.answer


def _tracker(request: Request) -> Tracker:
    state = request.app.state
    tracker = getattr(state, "status_tracker", None)
    if tracker is None:
        tracker = state.status_tracker = Tracker()
    return tracker


EXAMPLE: Final = {
    "events_per_s": 412.5,
    "events_total": 1_250_311,
    "drops": 0,
    "spool_depth": 0,
    "upstream": "streaming",
    "consumer_lag": 37,
    "rows_written": 1_249_980,
    "dead_letters": 0,
    "parts": {
        "producer": {"reachable": True, "instances": 1, "lost": 0, "error": None},
        "consumers": {"reachable": True, "instances": 2, "lost": 1, "error": None},
    },
    "unhealthy": 1,
    "instances": [
        {"role": "producer", "instance": "host-4242", "state": "ready", "rate": 412.5, "rate_unit": "events/s"},
        {"role": "consumers", "instance": "host-4250", "state": "ready", "rate": 410.0, "lag": 37},
        {"role": "consumers", "instance": "host-4251", "state": "lost", "silent_s": 12.4, "last_error": None},
    ],
    "error": None,
}


@router.get(
    "/status",
    tags=["dashboard"],
    summary="Pipeline status: every instance (lost ones too), events/s, drops, consumer lag, dead letters",
    responses={200: {"content": {"application/json": {"example": EXAMPLE}}}},
)
async def status(request: Request) -> dict[str, Any]:
    """Every instance's health document from Redis, and the strip's figures summed over them."""
    state = request.app.state.api
    settings = state.settings

    async def instances() -> list[dict[str, Any]]:
        return await read_instances(state.redis, settings.kafka_topic_prefix, settings.health_forget_s)

    return await _tracker(request).status(instances)
