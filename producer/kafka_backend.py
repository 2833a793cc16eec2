"""The seam between the durable sink and Kafka: start, partition counts, and one round of batches.

The sink decides *what* goes to Kafka and in which order; a backend only
knows how to ship one round (at most one batch per partition) and report,
per partition, whether Kafka acknowledged it. :class:`AiokafkaBackend` is the
real one; tests of the sink's ordering logic may pass their own.

Batches are built with aiokafka's ``create_batch``/``send_batch``: appending a
record costs about a microsecond, several times less than a ``send()`` per record.

Why a batch failed decides what the sink does next (:func:`is_retriable`):

- *retriable*: the broker is away or busy, a leader moved, the request timed
  out, or the partition is not in the metadata the round was built from
  (:class:`PartitionsChanged`). Sending again after a metadata refresh can succeed.
- *fatal*: everything else, e.g. a record larger than the broker takes, a
  refused authorisation, a setting the broker does not know, a bug of ours
  (``AssertionError``, ``TypeError``). Sending the same bytes again cannot
  succeed; the sink tries a few times, then stops and reports itself unhealthy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, KafkaUnavailableError, ProducerClosed

from tickpipe.kafka import ensure_topics, make_producer
from tickpipe.settings import Settings

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
#: Per partition of a round: None if Kafka acknowledged its batch, else why not.
Outcome = dict[TopicPartition, BaseException | None]


class PartitionsChanged(KafkaConnectionError):
    """A batch's partition is not in the topic's current metadata: the partition count changed under us.

    Retriable, and a reason to fetch metadata again, as every :class:`KafkaConnectionError` is.
    """


#: aiokafka errors that mean "not now" although their class says ``retriable = False``.
_AWAY = (KafkaTimeoutError, KafkaUnavailableError, ProducerClosed)


def is_retriable(exc: BaseException) -> bool:
    """Whether sending the same batch again may succeed (see the module docstring)."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, _AWAY)
    return isinstance(exc, (OSError, TimeoutError))  # connection refused or reset, a timeout of ours


class Round(Protocol):
    def add(self, topic: str, partition: int, key: bytes | None, value: bytes) -> bool:
        """Append to the partition's batch; False (and nothing added) when that batch is full."""

    async def send(self) -> Outcome:
        """Ship every batch at once and wait for each one's acknowledgement or failure. Never raises."""


class KafkaBackend(Protocol):
    @property
    def connected(self) -> bool: ...

    async def start(self) -> None:
        """Connect (and create missing topics); raise if Kafka cannot be reached."""

    async def stop(self) -> None: ...

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has."""

    async def refresh(self, topics: Iterable[str]) -> dict[str, int]:
        """Create any of ``topics`` that is missing and return each one's partition count as Kafka has it now.

        Called after a failed round: the broker may have come back without
        the topics, or with them re-created under another partition count.
        """

    def cached_partitions(self, topic: str) -> int | None:
        """The partition count the client's own metadata holds now (None if unknown); no I/O.

        The client refreshes its metadata by itself (after errors, and every few
        minutes); a count that differs from the sink's means the topic changed.
        """

    def new_round(self) -> Round: ...


class AiokafkaRound:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._batches: dict[TopicPartition, Any] = {}

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes) -> bool:
        tp = (topic, partition)
        batch = self._batches.get(tp)
        if batch is None:
            batch = self._batches[tp] = self._producer.create_batch()
        return batch.append(key=key, value=value, timestamp=None) is not None

    async def send(self) -> Outcome:
        outcome: Outcome = {}
        pending: dict[TopicPartition, asyncio.Future[Any]] = {}
        for (topic, partition), batch in self._batches.items():
            batch.close()  # complete: aiokafka sends it at once rather than lingering for more
            try:
                pending[(topic, partition)] = await self._producer.send_batch(batch, topic, partition=partition)
            except AssertionError as exc:  # aiokafka's own check that the partition exists
                gone = "Unrecognized partition" in str(exc)
                error = PartitionsChanged(f"{topic} has no partition {partition}") if gone else exc
                outcome[(topic, partition)] = error
            except Exception as exc:  # metadata timeout, producer closed...: this batch failed
                outcome[(topic, partition)] = exc
        results = await asyncio.gather(*pending.values(), return_exceptions=True)
        for tp, result in zip(pending, results, strict=True):
            outcome[tp] = result if isinstance(result, BaseException) else None
        return outcome


class AiokafkaBackend:
    """aiokafka against a real broker: acks from all in-sync replicas, lz4, batching per settings."""

    def __init__(self, settings: Settings, bootstrap: str, topics: Iterable[str]) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        timeout_ms = self.settings.kafka_request_timeout_ms
        producer = make_producer(
            self.settings, self.bootstrap, request_timeout_ms=timeout_ms, client_id="tickpipe-producer"
        )
        try:
            await producer.start()  # fails fast, and cleanly, when the broker is unreachable
            await asyncio.wait_for(
                ensure_topics(self.bootstrap, self.topics, self.settings.kafka_partitions), timeout_ms / 1000
            )
            for topic in self.topics:
                self._partitions[topic] = len(await producer.partitions_for(topic))
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def partitions(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = (await self.refresh([topic]))[topic]
        return count

    async def refresh(self, topics: Iterable[str]) -> dict[str, int]:
        producer = self._producer
        assert producer is not None, "refresh() before start()"
        topics = list(topics)
        timeout = self.settings.kafka_request_timeout_ms / 1000
        async with asyncio.timeout(timeout):
            await ensure_topics(self.bootstrap, topics, self.settings.kafka_partitions)
            if not await producer.client.force_metadata_update():
                raise KafkaConnectionError("no broker answered the metadata request")
            counts = {topic: len(await producer.partitions_for(topic)) for topic in topics}
        if empty := [topic for topic, count in counts.items() if not count]:
            raise KafkaConnectionError(f"no partitions known yet for {', '.join(empty)}")
        self._partitions.update(counts)
        return counts

    def cached_partitions(self, topic: str) -> int | None:
        if self._producer is None:
            return None
        partitions = self._producer.client.cluster.partitions_for_topic(topic)
        return len(partitions) if partitions else None

    def new_round(self) -> AiokafkaRound:
        assert self._producer is not None, "new_round() before start()"
        return AiokafkaRound(self._producer)
