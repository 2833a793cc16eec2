"""Prometheus metrics of one API instance, and the middleware that times every request by route.

One registry per app (tests run several apps in one process). Hot-path
counters are incremented once per frame or per Redis read, with the number of
messages, never once per message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


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
        self.ws_clients = Gauge("tickpipe_api_ws_clients", "WebSocket clients connected", registry=r)
        self.stream = StreamCounts()
        r.register(StreamCollector(self.stream))
        self.ws_slow_disconnects = Counter(
            "tickpipe_api_ws_slow_client_disconnects", "Clients disconnected with 407 (slow client)", registry=r
        )
        self.ws_errors = Counter(
            "tickpipe_api_ws_protocol_errors", "Protocol errors sent to clients, by code", ["code"], registry=r
        )
        self.redis_subscriptions = Gauge(
            "tickpipe_api_redis_subscriptions", "Redis channels and patterns this instance subscribes to", registry=r
        )
        self.redis_connected = Gauge(
            "tickpipe_api_redis_subscriber_connected", "1 while the Redis subscriber connection is up", registry=r
        )
        self.redis_reconnects = Counter(
            "tickpipe_api_redis_reconnects", "Times the Redis subscriber connection was re-established", registry=r
        )


@dataclass
class StreamCounts:
    """Counters of the stream's hot path: plain ints (a Counter.inc takes a lock), read at scrape time."""

    messages_sent: int = 0
    frames_sent: int = 0
    redis_messages: int = 0
    #: Sessions whose frames went to the socket directly, and through ASGI (see api.stream.direct).
    direct_sessions: int = 0
    asgi_sessions: int = 0


class StreamCollector(Collector):
    def __init__(self, counts: StreamCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        c = self.counts
        yield CounterMetricFamily(
            "tickpipe_api_ws_messages_sent", "Market-data messages sent to WebSocket clients", c.messages_sent
        )
        yield CounterMetricFamily("tickpipe_api_ws_frames_sent", "WebSocket frames of market data sent", c.frames_sent)
        yield CounterMetricFamily(
            "tickpipe_api_redis_messages", "Messages received on subscribed Redis channels", c.redis_messages
        )
        sessions = CounterMetricFamily(
            "tickpipe_api_ws_sessions",
            "WebSocket sessions by send path: direct socket writes, or ASGI sends (another server, or deflate)",
            labels=["path"],
        )
        sessions.add_metric(["direct"], c.direct_sessions)
        sessions.add_metric(["asgi"], c.asgi_sessions)
        yield sessions


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
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - began
            )
