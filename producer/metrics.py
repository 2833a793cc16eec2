"""The producer's Prometheus metrics.

Per-event counts stay plain integers on the hot path (a Prometheus counter
increment per event would cost more than decoding it); a collector reads
them when ``/metrics`` is scraped. Only per-frame timings are histograms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from producer.upstream import UpstreamState

if TYPE_CHECKING:
    from producer.service import ProducerService

PREFIX = "tickpipe_producer"


class ProducerMetrics:
    """One per producer instance, on its own registry (tests run several in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.upstream_lag = Histogram(
            f"{PREFIX}_upstream_lag_seconds",
            "Receive time minus event time, of the last event of each frame",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            f"{PREFIX}_handler_seconds",
            "Time the read loop spends on one frame (decode, count, enqueue to both sinks)",
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.1),
            registry=self.registry,
        )

    def watch(self, service: ProducerService) -> None:
        self.registry.register(_Counts(service))


class _Counts(Collector):
    def __init__(self, service: ProducerService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        svc = self.service
        received = CounterMetricFamily(f"{PREFIX}_received", "Events read from upstream, by type", labels=["type"])
        for code, n in sorted(svc.fanout.received.items()):
            received.add_metric([code], n)
        yield received

        published = CounterMetricFamily(f"{PREFIX}_published", "Events each sink delivered", labels=["sink"])
        published.add_metric(["redis"], svc.live.published)
        published.add_metric(["kafka"], svc.durable.stats.acked)
        yield published

        spooled = CounterMetricFamily(f"{PREFIX}_spooled", "Kafka records written to the disk spool")
        spooled.add_metric([], svc.durable.stats.spooled)
        yield spooled

        dropped = CounterMetricFamily(
            f"{PREFIX}_dropped", "Events a sink dropped, by reason", labels=["sink", "reason"]
        )
        for reason in ("queue_full", "redis_down", "redis_error", "shutdown"):
            dropped.add_metric(["redis", reason], svc.live.dropped[reason])
        yield dropped

        letters = CounterMetricFamily(f"{PREFIX}_dead_letters", "Upstream messages sent to the DLQ topic")
        letters.add_metric([], svc.fanout.dead_letters)
        yield letters

        reconnects = CounterMetricFamily(f"{PREFIX}_reconnects", "Upstream reconnects, by cause", labels=["cause"])
        for cause, n in sorted(svc.upstream.reconnects.items()):
            reconnects.add_metric([cause], n)
        yield reconnects

        errors = CounterMetricFamily(
            f"{PREFIX}_kafka_errors",
            "Kafka errors, by kind: retriable (a batch that failed and is sent again) or fatal (a batch, or the "
            "producer's start, refused in a way sending again cannot fix)",
            labels=["kind"],
        )
        for kind in ("retriable", "fatal"):
            errors.add_metric([kind], svc.durable.stats.failed_batches[kind])
        yield errors

        kafka_state = GaugeMetricFamily(
            f"{PREFIX}_kafka_state",
            "1 for the durable sink's state (failed: gave up on a fatal error)",
            labels=["state"],
        )
        now = svc.durable.state
        for value in ("connecting", "direct", "replaying", "spooling", "unknown", "failed"):
            kafka_state.add_metric([value], 1 if now == value else 0)
        yield kafka_state

        depth = GaugeMetricFamily(f"{PREFIX}_spool_depth", "Records in the disk spool not yet in Kafka")
        depth.add_metric([], svc.durable.spool.depth)
        yield depth

        queues = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Events waiting in memory, by sink", labels=["sink"])
        queues.add_metric(["redis"], len(svc.live.queue))
        queues.add_metric(["kafka"], svc.durable.pending)
        yield queues

        yield from _backfill(svc)

        state = GaugeMetricFamily(f"{PREFIX}_upstream_state", "1 for the upstream connection's state", labels=["state"])
        for value in UpstreamState:
            state.add_metric([value.value], 1 if svc.upstream.state is value else 0)
        yield state


def _backfill(svc: ProducerService) -> Iterator[Metric]:
    """Gaps in the stream and what the REST API filled them with."""
    gaps, backfiller = svc.gaps, svc.backfiller
    if gaps is None or backfiller is None:
        return
    seen = CounterMetricFamily(f"{PREFIX}_gaps", "Gaps in the stream seen (reconnect, silence, restart)")
    seen.add_metric([], gaps.gaps_seen)
    yield seen
    events = CounterMetricFamily(
        f"{PREFIX}_backfilled", "Events fetched from the REST API into Kafka, by resource", labels=["type"]
    )
    for resource in svc.resources:
        events.add_metric([resource], backfiller.events[resource])
    yield events
    open_s = GaugeMetricFamily(f"{PREFIX}_gap_open_seconds", "Seconds of market time in gaps not yet filled")
    open_s.add_metric([], gaps.open_seconds(svc.resources))
    yield open_s
    requests = CounterMetricFamily(
        f"{PREFIX}_backfill_requests", "REST requests, by outcome (throttled: answered 429)", labels=["outcome"]
    )
    stats = backfiller.client.stats
    requests.add_metric(["sent"], stats.requests)
    requests.add_metric(["throttled"], stats.throttled)
    yield requests
