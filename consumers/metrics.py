"""The consumers' Prometheus metrics, on a registry of their own (tests run several services in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_SIZE_BUCKETS = (1, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ConsumerMetrics:
    """Every instrument the consume loop updates, labelled by table."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rows_written = Counter(
            "tickpipe_consumer_rows_written", "Rows inserted (or bars updated) in PostgreSQL; redeliveries count 0",
            ["table"], registry=r,
        )  # fmt: skip
        self.records = Counter(
            "tickpipe_consumer_records",
            "Kafka records written in a batch, by outcome: stored, duplicate (already stored), dead_letter, skipped",
            ["table", "outcome"], registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            "tickpipe_consumer_dead_letters",
            "Records sent to the dead-letter topic, by kind: decode, range, misrouted, refused (by PostgreSQL)",
            ["table", "kind"], registry=r,
        )  # fmt: skip
        self.skipped = Counter(
            "tickpipe_consumer_skipped", "Valid records of a type no table stores yet (statuses ...), by type",
            ["table", "type"], registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "tickpipe_consumer_batch_records", "Records per written batch", ["table"],
            buckets=BATCH_SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "tickpipe_consumer_batch_seconds",
            "Seconds from a batch's first write attempt to its offsets' commit (retries included)",
            ["table"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.lag = Gauge(
            "tickpipe_consumer_lag",
            "Records of an owned partition not yet written to PostgreSQL: its end offset minus the group's "
            "committed offset, measured every second. Exact on Apache Kafka; Tansu's end offsets undercount",
            ["table", "topic", "partition"], registry=r,
        )  # fmt: skip
        self.assigned = Gauge(
            "tickpipe_consumer_assigned_partitions", "Partitions this consumer owns now", ["table"], registry=r
        )
        self.rebalances = Counter(
            "tickpipe_consumer_rebalances", "Partition revocations seen (each rebalance revokes)", ["table"],
            registry=r,
        )  # fmt: skip
        self.db_up = Gauge(
            "tickpipe_consumer_database_up", "1 while the last write or ping reached PostgreSQL, else 0", ["table"],
            registry=r,
        )  # fmt: skip
        self.write_retries = Counter(
            "tickpipe_consumer_write_retries", "Batch writes retried after PostgreSQL failed to take them",
            ["table"], registry=r,
        )  # fmt: skip
        self.commit_failures = Counter(
            "tickpipe_consumer_commit_failures",
            "Offset commits the group refused (a rebalance); the records are redelivered, harmlessly",
            ["table"], registry=r,
        )  # fmt: skip
        self.abandoned = Counter(
            "tickpipe_consumer_abandoned_batches",
            "Batches dropped uncommitted at a rebalance or shutdown; their records are redelivered",
            ["table"], registry=r,
        )  # fmt: skip
