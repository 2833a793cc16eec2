"""Batches out of a Kafka consumer: by size (``BATCH_SIZE``) and by time (``BATCH_MAX_WAIT_MS``).

Records are decoded a fetch at a time as they arrive (at most
:data:`FETCH_CHUNK` at once), yielding to the event loop in between, so the
write in flight gets its replies promptly and decoding overlaps the database's
work. Each batch carries the assignment generation ("epoch") it was fetched
in; :meth:`Collector.reset` moves to a new one at a rebalance and drops what
was fetched before, so nothing fetched for a revoked partition is written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Set
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from consumers.batch import Batch
from tickpipe.settings import Settings


def make_consumer(settings: Settings, bootstrap: str, group: str, table: str, **overrides: Any) -> AIOKafkaConsumer:
    """A group consumer that commits only what it is told to (offsets of stored batches), oldest first."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "client_id": f"tickpipe-consumer-{table}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "fetch_max_bytes": 32 * 1024 * 1024,
        "session_timeout_ms": settings.consumer_session_timeout_ms,
        "heartbeat_interval_ms": settings.consumer_heartbeat_interval_ms,
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


#: Most records taken from the consumer at once: each fetch is decoded (about 1 ms) before the next.
FETCH_CHUNK = 250


class Collector:
    """The batch being built for one table, and the fetches that build it."""

    def __init__(
        self, consumer: AIOKafkaConsumer, table: str, *, batch_size: int, max_wait_s: float, owned: Set[TopicPartition]
    ) -> None:
        self.consumer = consumer
        self.table = table
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        #: The partitions the worker owns now (its own set, updated at each rebalance).
        self.owned = owned
        self.epoch = 0
        self.batch = self._new()
        #: When the first record arrived (monotonic), for rates.
        self.first_fetch: float | None = None

    def _new(self) -> Batch:
        batch = Batch(self.table)
        batch.epoch = self.epoch
        return batch

    async def fill(self, stopping: Callable[[], bool]) -> int:
        """Fetch until the batch is full or its time is up (or nothing came within the wait); records added."""
        added = 0
        deadline: float | None = None
        while self.batch.records < self.batch_size and not stopping():
            if deadline is None:
                timeout = self.max_wait_s
            else:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
            limit = min(FETCH_CHUNK, self.batch_size - self.batch.records)
            got = self.add(await self.consumer.getmany(timeout_ms=max(1, int(timeout * 1000)), max_records=limit))
            await asyncio.sleep(0)  # getmany returns buffered records without suspending: let the write run
            added += got
            if got and deadline is None:
                deadline = time.monotonic() + self.max_wait_s
            elif not got and deadline is None:
                break
        return added

    def add(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> int:
        """Decode fetched records into the batch (only those of owned partitions); how many."""
        count = 0
        for tp, records in fetched.items():
            if records and tp in self.owned:
                self.batch.add(tp, records)
                count += len(records)
        if count and self.first_fetch is None:
            self.first_fetch = time.monotonic()
        return count

    async def poll_paused(self) -> None:
        """Pause every owned partition and poll once: no new records, but the group sees us alive."""
        owned = self.consumer.assignment()
        if owned:
            self.consumer.pause(*owned)
        self.add(await self.consumer.getmany(timeout_ms=0))  # partitions assigned since are not paused

    def resume(self) -> None:
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)

    def take(self) -> Batch:
        """The batch built so far; a new one starts."""
        batch, self.batch = self.batch, self._new()
        return batch

    def reset(self) -> int:
        """A rebalance: a new epoch, and the records fetched so far dropped (how many)."""
        dropped = self.batch.records
        self.epoch += 1
        self.batch = self._new()
        return dropped
