"""ProducerCounts: the producer's counts read once, and what /metrics and the exit summary make of them."""

from __future__ import annotations

from prometheus_client import generate_latest

from producer.counts import BackfillCounts, ProducerCounts
from producer.metrics import ProducerMetrics
from producer.source import UpstreamState

COUNTS = ProducerCounts(
    upstream_state=UpstreamState.STREAMING, events_read=1000, frames=40, reconnects={"silence": 2},
    received={"q": 600, "t": 400}, dead_letters=3, redis_connected=True, redis_published=990, redis_queued=10,
    redis_dropped={"queue_full": 7}, kafka_state="replaying", kafka_acked=900, kafka_pending=20, kafka_held=5,
    kafka_dropped={"spool_full": 11}, spooled=300, replayed=250, failed_rounds=4,
    failed_batches={"retriable": 6}, spool_depth=50, spool_bytes=4096,
    backfill=BackfillCounts(gaps_seen=2, gaps_open=1, open_seconds=1.5, resources=("trades", "bars"),
                            events={"trades": 30}, unreadable=0, requests=9, throttled=1, waited_s=0.25),
)  # fmt: skip


def test_one_scrape_reads_the_counts_once_and_shows_each() -> None:
    reads = 0

    def read() -> ProducerCounts:
        nonlocal reads
        reads += 1
        return COUNTS

    metrics = ProducerMetrics()
    metrics.watch(read)
    reads = 0  # registering may collect once to learn the names
    text = generate_latest(metrics.registry).decode()
    assert reads == 1
    for line in (
        'tickpipe_producer_received_total{type="q"} 600.0',
        'tickpipe_producer_published_total{sink="kafka"} 900.0',
        "tickpipe_producer_spooled_total 300.0",
        'tickpipe_producer_dropped_total{reason="queue_full",sink="redis"} 7.0',
        'tickpipe_producer_dropped_total{reason="spool_full",sink="kafka"} 11.0',
        'tickpipe_producer_dropped_total{reason="sink_failed",sink="kafka"} 0.0',
        "tickpipe_producer_kafka_held 5.0",
        'tickpipe_producer_kafka_errors_total{kind="fatal"} 0.0',
        'tickpipe_producer_kafka_state{state="replaying"} 1.0',
        "tickpipe_producer_spool_depth 50.0",
        'tickpipe_producer_queue_depth{sink="kafka"} 20.0',
        'tickpipe_producer_backfilled_total{type="bars"} 0.0',
        "tickpipe_producer_gap_open_seconds 1.5",
        'tickpipe_producer_upstream_state{state="streaming"} 1.0',
    ):
        assert line in text, line


def test_the_summary_is_one_line_of_the_same_counts() -> None:
    assert COUNTS.summary() == (
        "events_read=1000 kafka_acked=900 spooled_total=300 spool_depth=50 kafka_dropped=11 redis_published=990 "
        "redis_dropped=7 dead_letters=3 backfilled=30 gaps_seen=2"
    )
