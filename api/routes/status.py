"""``GET /status``: the pipeline at a glance, for the dashboard's status strip.

The API has no counters of the producer or the consumers; it asks their admin
``/health`` documents (the addresses come from the same settings those
services bind to) and sums what the strip shows: events per second (from two
successive samples of the producer's received counts), drops, consumer lag and
dead letters. A part that does not answer is reported as such and its figures
are ``null``; the route itself always answers 200.

Answers are cached for :data:`MIN_INTERVAL_S`, so any number of open
dashboards cost the services one request each per interval.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request

from tickpipe.settings import Settings, get_settings

router = APIRouter()

MIN_INTERVAL_S: Final = 1.0
FETCH_TIMEOUT_S: Final = 1.5
#: Bind-all addresses a service listens on; a client reaches such a service on the loopback.
_ANY_HOST: Final = {"", "0.0.0.0", "::", "[::]"}

Fetch = Callable[[str], Awaitable[dict[str, Any]]]


def health_url(host: str, port: int) -> str:
    """``http://host:port/health`` of an admin server bound to ``host``:``port``."""
    if host in _ANY_HOST:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/health"


def health_urls(settings: Settings) -> dict[str, str]:
    return {
        "producer": health_url(settings.producer_admin_host, settings.producer_admin_port),
        "consumers": health_url(settings.consumer_admin_host, settings.consumer_admin_port),
    }


_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str) -> dict[str, Any]:
    with _no_proxy.open(url, timeout=FETCH_TIMEOUT_S) as response:
        data = orjson.loads(response.read())
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object from {url}, got {type(data).__name__}")
    return data


async def fetch_health(url: str) -> dict[str, Any]:
    """The JSON document at ``url`` (on a thread: urllib is simple and this runs once a second at most)."""
    return await asyncio.to_thread(_get_json, url)


def total(value: Any) -> int | float:
    """A number, or the sum of every number inside nested objects and lists (per type, per sink ...)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return value
    if isinstance(value, dict):
        return sum(total(item) for item in value.values())
    if isinstance(value, list):
        return sum(total(item) for item in value)
    return 0


def dig(doc: Any, *path: str) -> Any:
    """``doc[path[0]][path[1]]...``; None when a step is missing (a part's document may change shape)."""
    for name in path:
        if not isinstance(doc, dict) or name not in doc:
            return None
        doc = doc[name]
    return doc


def figure(doc: Any, *path: str) -> int | float | None:
    """The total of the numbers at ``path`` in ``doc``; None when there is nothing there."""
    value = dig(doc, *path)
    return None if value is None else total(value)


def add(*values: int | float | None) -> int | float | None:
    """The sum of the values known; None when none is."""
    known = [value for value in values if value is not None]
    return sum(known) if known else None


@dataclass
class Tracker:
    """Successive samples of the producer's counts, and the last answer (the cache)."""

    fetch: Fetch = fetch_health
    clock: Callable[[], float] = time.monotonic
    last_count: tuple[float, int | float] | None = None
    answer: dict[str, Any] | None = None
    answered_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def status(self, urls: dict[str, str]) -> dict[str, Any]:
        async with self.lock:
            if self.answer is None or self.clock() - self.answered_at >= MIN_INTERVAL_S:
                self.answer = await self._sample(urls)
                self.answered_at = self.clock()
            return self.answer

    async def _sample(self, urls: dict[str, str]) -> dict[str, Any]:
        names = list(urls)
        results = await asyncio.gather(*(self.fetch(urls[name]) for name in names), return_exceptions=True)
        docs: dict[str, dict[str, Any] | None] = {}
        parts: dict[str, dict[str, Any]] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                docs[name] = None
                parts[name] = {"url": urls[name], "reachable": False, "error": describe(result)}
            else:
                docs[name] = result
                parts[name] = {"url": urls[name], "reachable": True, "error": None}
        return {**self.summarize(docs.get("producer"), docs.get("consumers")), "parts": parts}

    def summarize(self, producer: dict[str, Any] | None, consumers: dict[str, Any] | None) -> dict[str, Any]:
        """The strip's figures from the two documents (either may be None: that part is down).

        Paths as ``producer/service.py`` and ``consumers/service.py`` write their ``/health``.
        """
        count = figure(producer, "received")  # events read from upstream, per type
        now = self.clock()
        rate: float | None = None
        if count is None:
            self.last_count = None
        else:
            if self.last_count is not None and now > self.last_count[0] and count >= self.last_count[1]:
                rate = (count - self.last_count[1]) / (now - self.last_count[0])
            self.last_count = (now, count)  # a smaller count (the producer restarted) starts over
        workers = dig(consumers, "workers")
        workers = list(workers.values()) if isinstance(workers, dict) else []
        return {
            "events_per_s": rate,
            "events_total": count,
            "drops": figure(producer, "redis", "dropped"),  # the live path drops; the durable path spools
            "spool_depth": figure(producer, "spool", "depth"),
            "upstream": dig(producer, "upstream", "state"),
            "consumer_lag": add(*(figure(worker, "lag") for worker in workers)),
            "rows_written": add(*(figure(worker, "stats", "rows_written") for worker in workers)),
            "dead_letters": add(
                figure(producer, "dead_letters"), *(figure(worker, "stats", "dead_letters") for worker in workers)
            ),
        }


def describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket error
    return f"{type(exc).__name__}: {reason if reason is not None else exc}"


def _tracker(request: Request) -> Tracker:
    state = request.app.state
    tracker = getattr(state, "status_tracker", None)
    if tracker is None:
        tracker = state.status_tracker = Tracker()
    return tracker


def _settings(request: Request) -> Settings:
    api = getattr(request.app.state, "api", None)
    settings = getattr(api, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


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
        "producer": {"url": "http://127.0.0.1:8081/health", "reachable": True, "error": None},
        "consumers": {"url": "http://127.0.0.1:8082/health", "reachable": True, "error": None},
    },
}


@router.get(
    "/status",
    tags=["dashboard"],
    summary="Pipeline status: events/s, drops, consumer lag, dead letters",
    responses={200: {"content": {"application/json": {"example": EXAMPLE}}}},
)
async def status(request: Request) -> dict[str, Any]:
    """The producer's and consumers' ``/health``, summed; ``parts`` says which answered."""
    return await _tracker(request).status(health_urls(_settings(request)))
