"""What a worker did and how far behind it is: its counters, the metrics they feed, lag, "caught up".

Lag is the partition's high watermark (as the last fetch reported it) minus
the offset the worker last committed (or its position, before its first
commit). It is approximate: watermarks move between fetches, and Tansu's
``ListOffsets`` end offsets undercount, which is why "caught up" (burst mode)
also needs several empty fetches in a row, not only positions at the watermark.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from consumers.batch import Batch
from consumers.metrics import ConsumerMetrics


@dataclass
class WorkerStats:
    """What one worker did; the same numbers feed the metrics."""

    records: int = 0
    rows_written: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    skipped: int = 0
    batches: int = 0
    abandoned: int = 0
    write_retries: int = 0
    commit_failures: int = 0
    rebalances: int = 0
    #: Seconds from the first record fetched to the last commit: the working time, for rates.
    busy_seconds: float = 0.0


def account(
    metrics: ConsumerMetrics, stats: WorkerStats, batch: Batch, inserted: int, refused: int, seconds: float
) -> None:
    """Count a stored batch: every record ends up stored, duplicate, dead letter or skipped."""
    table = batch.table
    stored = len(batch.rows) - refused
    duplicates = max(0, stored - inserted) + batch.superseded
    dead = len(batch.dead) + refused
    skipped = sum(batch.skipped.values())
    stats.batches += 1
    stats.records += batch.records
    stats.rows_written += inserted
    stats.duplicates += duplicates
    stats.dead_letters += dead
    stats.skipped += skipped
    metrics.rows_written.labels(table).inc(inserted)
    metrics.records.labels(table, "stored").inc(min(inserted, stored))
    metrics.records.labels(table, "duplicate").inc(duplicates)
    metrics.records.labels(table, "dead_letter").inc(dead)
    metrics.records.labels(table, "skipped").inc(skipped)
    for kind, count in batch.dead_kinds.items():
        if count:
            metrics.dead_letters.labels(table, kind).inc(count)
    for code, count in batch.skipped.items():
        metrics.skipped.labels(table, code).inc(count)
    metrics.batch_size.labels(table).observe(batch.records)
    metrics.batch_seconds.labels(table).observe(seconds)


async def caught_up(consumer: AIOKafkaConsumer) -> bool:
    """Every assigned partition's position has reached the high watermark of its last fetch."""
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None or await consumer.position(tp) < high:
            return False
    return True


async def measure_lag(
    consumer: AIOKafkaConsumer, metrics: ConsumerMetrics, table: str, committed: Mapping[TopicPartition, int]
) -> None:
    """Set the lag gauge of every assigned partition whose watermark is known."""
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        done = committed.get(tp)
        if done is None:
            done = await consumer.position(tp)
        metrics.lag.labels(table, tp.topic, str(tp.partition)).set(max(0, high - done))


def lag_by_partition(consumer: AIOKafkaConsumer, committed: Mapping[TopicPartition, int]) -> dict[str, int]:
    """``{"topic:partition": records behind}`` for /health (partitions not yet committed count 0)."""
    out: dict[str, int] = {}
    for tp in sorted(consumer.assignment()):
        high = consumer.highwater(tp)
        if high is not None:
            out[f"{tp.topic}:{tp.partition}"] = max(0, high - committed.get(tp, high))
    return out
