"""Prometheus metrics of one API instance, and the middleware that times every request by route.

One registry per app (tests run several apps in one process). Hot-path
counters are incremented once per frame or per Redis read, with the number of
messages, never once per message.

With ``tickpipe api --workers N`` the worker that answers a scrape must speak
for all of them: prometheus_client's multiprocess mode. The parent points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before any metric exists
(:func:`use_multiprocess`); every counter, histogram and gauge then lives in a
per-process file there, and ``/metrics`` merges the files of every worker, the
dead ones' counters included (a total never goes back), the dead ones' gauges
not (the parent calls :func:`worker_ended`). The stream's plain-int counters
(:class:`StreamCounts`) are copied into such counters by each worker every
:data:`SYNC_INTERVAL_S` and at its own scrapes, so another worker's share of a
scrape is at most that old.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
MULTIPROC_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"
#: How often a worker copies its stream counters where the other workers' scrapes read them.
SYNC_INTERVAL_S: Final = 0.5


def use_multiprocess(directory: Path) -> None:
    """Keep every metric made from now on in ``directory``, shared by the processes forked after.

    prometheus_client reads the variable when it is first imported; the value class is chosen again
    so that the parent, which has imported it already, makes its metrics the multiprocess way too.
    """
    os.environ[MULTIPROC_DIR] = str(directory)
    values.ValueClass = values.get_value_class()


def worker_ended(pid: int) -> None:
    """Drop a dead worker's live gauges (clients, subscriptions) from the merged figures."""
    if directory := os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(pid, directory)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "tickpipe_api_request_seconds",
            "HTTP request latency, by method, route template and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.multiprocess = MULTIPROC_DIR in os.environ
        self.ws_clients = Gauge(
            "tickpipe_api_ws_clients", "WebSocket clients connected", registry=r, multiprocess_mode="livesum"
        )
        self.stream = StreamCounts()
        r.register(StreamCollector(self.stream))  # this process's own figures (its health document reads them)
        self._shared = StreamCounters(self.stream) if self.multiprocess else None
        self.ws_slow_disconnects = Counter(
            "tickpipe_api_ws_slow_client_disconnects", "Clients disconnected with 407 (slow client)", registry=r
        )
        self.ws_errors = Counter(
            "tickpipe_api_ws_protocol_errors", "Protocol errors sent to clients, by code", ["code"], registry=r
        )
        self.redis_subscriptions = Gauge(
            "tickpipe_api_redis_subscriptions",
            "Redis channels and patterns this instance subscribes to (summed over workers)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.redis_connected = Gauge(
            "tickpipe_api_redis_subscriber_connected",
            "1 while the Redis subscriber connection is up (of every worker: 0 if any one's is down)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.redis_reconnects = Counter(
            "tickpipe_api_redis_reconnects", "Times the Redis subscriber connection was re-established", registry=r
        )

    def sync(self) -> None:
        """Copy the stream's plain counters where other workers' scrapes read them (multiprocess only)."""
        if self._shared is not None:
            self._shared.sync()

    def exposition(self) -> CollectorRegistry:
        """What ``/metrics`` shows: this registry, or with workers every worker's files merged."""
        if not self.multiprocess:
            return self.registry
        self.sync()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return merged


class MetricsSync:
    """A sidecar of each worker: :meth:`ApiMetrics.sync` every :data:`SYNC_INTERVAL_S`, and once at the end.

    ``metrics`` is asked for lazily: the app's state exists once its lifespan has run.
    """

    def __init__(self, metrics: Callable[[], ApiMetrics], interval_s: float = SYNC_INTERVAL_S) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.metrics().sync()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.metrics().sync()


@dataclass
class StreamCounts:
    """Counters of the stream's hot path: plain ints (a Counter.inc takes a lock), read at scrape time."""

    messages_sent: int = 0
    frames_sent: int = 0
    redis_messages: int = 0
    #: Sessions whose frames went to the socket directly, and through ASGI (see api.stream.direct).
    direct_sessions: int = 0
    asgi_sessions: int = 0


#: The :class:`StreamCounts` fields shown as counters of their own: field -> (metric name, help).
STREAM_COUNTERS: Final = {
    "messages_sent": ("tickpipe_api_ws_messages_sent", "Market-data messages sent to WebSocket clients"),
    "frames_sent": ("tickpipe_api_ws_frames_sent", "WebSocket frames of market data sent"),
    "redis_messages": ("tickpipe_api_redis_messages", "Messages received on subscribed Redis channels"),
}
#: One counter of sessions, and the ``path`` label of each :class:`StreamCounts` field counted in it.
SESSIONS: Final = (
    "tickpipe_api_ws_sessions",
    "WebSocket sessions by send path: direct socket writes, or ASGI sends (another server, or deflate)",
)
SESSION_PATHS: Final = {"direct_sessions": "direct", "asgi_sessions": "asgi"}


class StreamCollector(Collector):
    def __init__(self, counts: StreamCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        for field, (name, documentation) in STREAM_COUNTERS.items():
            yield CounterMetricFamily(name, documentation, getattr(self.counts, field))
        sessions = CounterMetricFamily(*SESSIONS, labels=["path"])
        for field, path in SESSION_PATHS.items():
            sessions.add_metric([path], getattr(self.counts, field))
        yield sessions


class StreamCounters:
    """:class:`StreamCounts` as multiprocess counters, brought up to date by :meth:`sync`.

    Not registered anywhere: the multiprocess collector reads their files. Same names and help as
    :class:`StreamCollector`'s, so a scrape looks the same with one worker or many.
    """

    def __init__(self, counts: StreamCounts) -> None:
        self.counts = counts
        self.synced = StreamCounts()
        self.counters = {
            field: Counter(name, documentation, registry=None)
            for field, (name, documentation) in STREAM_COUNTERS.items()
        }
        sessions = Counter(*SESSIONS, ["path"], registry=None)
        self.counters.update({field: sessions.labels(path) for field, path in SESSION_PATHS.items()})

    def sync(self) -> None:
        for field in fields(StreamCounts):
            now, before = getattr(self.counts, field.name), getattr(self.synced, field.name)
            if now != before:
                self.counters[field.name].inc(now - before)
                setattr(self.synced, field.name, now)


class RequestTimer:
    """Pure ASGI middleware (no response buffering, so CSV stays streamed) timing HTTP requests."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The template as the OpenAPI document writes it: /crypto/quotes/{symbol}, not {symbol:anypath}.
            matched = scope.get("route")
            route = getattr(matched, "path_format", None) or getattr(matched, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - began
            )
