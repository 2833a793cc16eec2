"""Kafka -> PostgreSQL writers: one consumer group per table, batches, dead letters, exactly-once in effect.

Modules, in the order a record meets them: ``collect`` (batches by size and
time out of the consumer), ``batch`` (records to rows and dead letters, pure),
``staging`` (an event's checked staging row), ``tables`` (each stored
family's staging table and upsert, derived from :mod:`tickpipe.feeds`),
``writer`` (COPY + upsert in one transaction), ``store`` (rows and dead
letters, retried until done), ``worker`` (the consume loop, commits,
rebalances), ``drain`` (burst mode's "the group drained the topic"),
``progress`` (counters, lag), ``dlq`` (dead letters out, read back, replayed),
``metrics``, ``service`` (workers + admin endpoints), ``cli`` / ``dlq_cli``
(the commands).
"""

from consumers.batch import Batch, build_batch
from consumers.dlq import DeadLetterSink, read_dead_letters, replay_dead_letters
from consumers.metrics import ConsumerMetrics
from consumers.progress import WorkerStats
from consumers.service import ConsumerService
from consumers.worker import Worker, group_id
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
