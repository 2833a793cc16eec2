"""Batches out of a Kafka consumer: by size (``BATCH_SIZE``) and by time (``BATCH_MAX_WAIT_MS``).

Records are decoded a fetch at a time as they arrive (at most
:data:`FETCH_CHUNK` at once), yielding to the event loop in between, so the
write in flight gets its replies promptly and decoding overlaps the database's
work. Each batch carries the assignment generation ("epoch") it was fetched
in; :meth:`Collector.reset` moves to a new one at a rebalance and drops what
was fetched before, so nothing fetched for a revoked partition is written.

Topics: the consumers never create one by asking about it. The service creates
the pipeline's topics with ``KAFKA_PARTITIONS`` before anyone subscribes
(:func:`tickpipe.kafka.ensure_topics`). Kafka's Metadata request (v4 and later)
carries ``allow_auto_topic_creation``, and a broker with
``auto.create.topics.enable=true`` (the embedded one, many deployments)
creates a missing topic it is asked about with its own default partition count
(``num.partitions``, 1 unless configured). The Java consumer sends false
(``allow.auto.create.topics``); aiokafka 0.14 has no such option and always
sends true, so :func:`make_consumer` gives each consumer's client a metadata
update that sends false (:func:`forbid_topic_creation`). A topic deleted while
consumers run is then not re-created by them with the wrong partitioning:
they lose its partitions and, within ``metadata_max_age_ms`` (:data:`METADATA_MAX_AGE_MS`)
of its being created again (with ``KAFKA_PARTITIONS``, by whoever ensures topics),
are assigned the new ones.
"""

from __future__ import annotations

import asyncio
import functools
import time
import types
from collections.abc import Callable, Set
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import ConsumerRecord, TopicPartition

from consumers.batch import Batch
from tickpipe.settings import Settings

#: How often a consumer refreshes its metadata unasked (aiokafka's default is 5 minutes): it bounds
#: how long a topic created again after a deletion goes unnoticed.
METADATA_MAX_AGE_MS = 30_000

# aiokafka's own metadata update, its request class swapped for one that says "do not create".
# Its code object is reused as is; only the global name ``MetadataRequest`` it looks up differs.
_UPDATE = AIOKafkaClient._metadata_update
if "MetadataRequest" not in _UPDATE.__code__.co_names:  # pragma: no cover - an aiokafka we do not know
    raise ImportError("aiokafka's AIOKafkaClient._metadata_update no longer builds a MetadataRequest")
_UPDATE_NO_CREATE = types.FunctionType(
    _UPDATE.__code__,
    {**_UPDATE.__globals__, "MetadataRequest": functools.partial(MetadataRequest, allow_auto_topic_creation=False)},
    _UPDATE.__name__,
    _UPDATE.__defaults__,
    _UPDATE.__closure__,
)


def forbid_topic_creation(consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """Make ``consumer``'s metadata requests say ``allow_auto_topic_creation=false``; the consumer.

    What Java's ``allow.auto.create.topics=false`` does, which aiokafka lacks:
    asking about a missing topic must not create it with the broker's default
    partition count. Only this consumer's client changes, not aiokafka's class.
    """
    client = consumer._client
    client._metadata_update = types.MethodType(_UPDATE_NO_CREATE, client)
    return consumer


def make_consumer(settings: Settings, bootstrap: str, group: str, table: str, **overrides: Any) -> AIOKafkaConsumer:
    """A group consumer that commits only what it is told to (offsets of stored batches), oldest first.

    It never creates a topic by asking about it (:func:`forbid_topic_creation`).
    """
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
        "metadata_max_age_ms": METADATA_MAX_AGE_MS,
    }
    options.update(overrides)
    return forbid_topic_creation(AIOKafkaConsumer(**options))


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
