"""The producer's Prometheus metrics.

Per-event counts stay plain integers on the hot path (a Prometheus counter
increment per event would cost more than decoding it); a collector reads
them when ``/metrics`` is scraped. Only per-frame timings are histograms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from producer.counts import BackfillCounts, ProducerCounts
from producer.source import UpstreamState
from producer.spool_hold import SINK_FAILED, SPOOL_FULL

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

    def watch(self, read: Callable[[], ProducerCounts]) -> None:
        """Collect the counts ``read()`` returns at each scrape."""
        self.registry.register(_Counts(read))


class _Counts(Collector):
    def __init__(self, read: Callable[[], ProducerCounts]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        now = self.read()
        received = CounterMetricFamily(f"{PREFIX}_received", "Events read from upstream, by type", labels=["type"])
        for code, n in sorted(now.received.items()):
            received.add_metric([code], n)
        yield received

        published = CounterMetricFamily(f"{PREFIX}_published", "Events each sink delivered", labels=["sink"])
        published.add_metric(["redis"], now.redis_published)
        published.add_metric(["kafka"], now.kafka_acked)
        yield published

        spooled = CounterMetricFamily(f"{PREFIX}_spooled", "Kafka records written to the disk spool")
        spooled.add_metric([], now.spooled)
        yield spooled

        dropped = CounterMetricFamily(
            f"{PREFIX}_dropped", "Events a sink dropped, by reason", labels=["sink", "reason"]
        )
        for reason in ("queue_full", "redis_down", "redis_error", "shutdown"):
            dropped.add_metric(["redis", reason], now.redis_dropped.get(reason, 0))
        for reason in (SPOOL_FULL, SINK_FAILED):
            dropped.add_metric(["kafka", reason], now.kafka_dropped.get(reason, 0))
        yield dropped

        held = GaugeMetricFamily(
            f"{PREFIX}_kafka_held", "Kafka records held in memory because the spool takes nothing (disk full, cap)"
        )
        held.add_metric([], now.kafka_held)
        yield held

        letters = CounterMetricFamily(f"{PREFIX}_dead_letters", "Upstream messages sent to the DLQ topic")
        letters.add_metric([], now.dead_letters)
        yield letters

        reconnects = CounterMetricFamily(f"{PREFIX}_reconnects", "Upstream reconnects, by cause", labels=["cause"])
        for cause, n in sorted(now.reconnects.items()):
            reconnects.add_metric([cause], n)
        yield reconnects

        errors = CounterMetricFamily(
            f"{PREFIX}_kafka_errors",
            "Kafka errors, by kind: retriable (a batch that failed and is sent again) or fatal (a batch, or the "
            "producer's start, refused in a way sending again cannot fix)",
            labels=["kind"],
        )
        for kind in ("retriable", "fatal"):
            errors.add_metric([kind], now.failed_batches.get(kind, 0))
        yield errors

        kafka_state = GaugeMetricFamily(
            f"{PREFIX}_kafka_state",
            "1 for the durable sink's state (failed: gave up on a fatal error)",
            labels=["state"],
        )
        for value in ("connecting", "direct", "replaying", "spooling", "unknown", "failed"):
            kafka_state.add_metric([value], 1 if now.kafka_state == value else 0)
        yield kafka_state

        depth = GaugeMetricFamily(f"{PREFIX}_spool_depth", "Records in the disk spool not yet in Kafka")
        depth.add_metric([], now.spool_depth)
        yield depth

        queues = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Events waiting in memory, by sink", labels=["sink"])
        queues.add_metric(["redis"], now.redis_queued)
        queues.add_metric(["kafka"], now.kafka_pending)
        yield queues

        if now.backfill is not None:
            yield from _backfill(now.backfill)

        state = GaugeMetricFamily(f"{PREFIX}_upstream_state", "1 for the upstream connection's state", labels=["state"])
        for value in UpstreamState:
            state.add_metric([value.value], 1 if now.upstream_state is value else 0)
        yield state


def _backfill(now: BackfillCounts) -> Iterator[Metric]:
    """Gaps in the stream and what the REST API filled them with."""
    seen = CounterMetricFamily(f"{PREFIX}_gaps", "Gaps in the stream seen (reconnect, silence, restart)")
    seen.add_metric([], now.gaps_seen)
    yield seen
    events = CounterMetricFamily(
        f"{PREFIX}_backfilled", "Events fetched from the REST API into Kafka, by resource", labels=["type"]
    )
    for resource in now.resources:
        events.add_metric([resource], now.events.get(resource, 0))
    yield events
    open_s = GaugeMetricFamily(f"{PREFIX}_gap_open_seconds", "Seconds of market time in gaps not yet filled")
    open_s.add_metric([], now.open_seconds)
    yield open_s
    requests = CounterMetricFamily(
        f"{PREFIX}_backfill_requests", "REST requests, by outcome (throttled: answered 429)", labels=["outcome"]
    )
    requests.add_metric(["sent"], now.requests)
    requests.add_metric(["throttled"], now.throttled)
    yield requests
