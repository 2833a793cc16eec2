"""Kafka -> PostgreSQL writers: one consumer group per table, batches, dead letters, exactly-once in effect.

Modules: ``tables`` (how each table is staged and upserted), ``batch`` (records
to rows and dead letters, pure), ``writer`` (COPY + upsert in one transaction),
``worker`` (the consume loop), ``dlq`` (dead letters out, back in), ``metrics``,
``service`` (workers + admin endpoints), ``cli`` / ``dlq_cli`` (the commands).
"""

from consumers.batch import Batch, build_batch
from consumers.dlq import DeadLetterSink, read_dead_letters, replay_dead_letters
from consumers.metrics import ConsumerMetrics
from consumers.service import ConsumerService
from consumers.worker import Worker, WorkerStats, group_id
from consumers.writer import WriteError, Writer, WriteResult

__all__ = [
    "Batch",
    "ConsumerMetrics",
    "ConsumerService",
    "DeadLetterSink",
    "Worker",
    "WorkerStats",
    "WriteError",
    "WriteResult",
    "Writer",
    "build_batch",
    "group_id",
    "read_dead_letters",
    "replay_dead_letters",
]
