"""What a worker did and how far behind it is: its counters, the metrics they feed, lag.

Lag is the records of a partition not yet written: its end offset, asked of
the broker (``ListOffsets``), minus the group's committed offset (ours once we
commit; before that the one the broker holds, from an earlier run or another
member; with none, the partition's first offset). Offsets are committed only
after the rows are in PostgreSQL, so on Apache Kafka this is exact. It is not
the distance from the consumer's position: records fetched but not yet stored
are still lag. Tansu's end offsets undercount (they stop at the last batch's
base offset), so there it is low. When a topic counts as drained (burst
mode) is :mod:`consumers.drain`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


async def group_offsets(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], committed: Mapping[TopicPartition, int]
) -> dict[TopicPartition, tuple[int, int]]:
    """Each partition's ``(done, end)``: the group's committed offset and the partition's end offset.

    ``committed`` holds the offsets this worker committed; for a partition not
    in it the broker is asked for the group's, and with none there either the
    partition's first offset counts as done.
    """
    tps = sorted(partitions)
    if not tps:
        return {}
    ends = await consumer.end_offsets(tps)
    done: dict[TopicPartition, int] = {}
    for tp in tps:
        mine = committed.get(tp)
        if mine is None:
            mine = await consumer.committed(tp)
        if mine is not None:
            done[tp] = int(mine)
    never = [tp for tp in tps if tp not in done]
    if never:  # one request for all: each offsets lookup waits for fresh metadata (about 0.5 s)
        done.update({tp: int(offset) for tp, offset in (await consumer.beginning_offsets(never)).items()})
    return {tp: (done[tp], int(ends[tp])) for tp in tps}


async def measure_lag(
    consumer: AIOKafkaConsumer, committed: Mapping[TopicPartition, int], partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """Records not yet written per partition: end offset minus committed offset (:func:`group_offsets`)."""
    offsets = await group_offsets(consumer, partitions, committed)
    return {tp: max(0, end - done) for tp, (done, end) in offsets.items()}
