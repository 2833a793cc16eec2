"""The dead-letter topic from the consumers' side: send letters, read them back, replay them.

- :class:`DeadLetterSink` sends a batch's letters and waits for the broker's
  acknowledgement, so the batch's offsets are committed only once its dead
  letters are safe (a crash in between repeats a letter; it never loses one).
- :func:`stream_dead_letters` reads the topic from the start (or from a group's
  committed offsets) until it is caught up, one fetch at a time, so a topic of
  any size is read in the memory of one fetch (:func:`read_dead_letters`
  gathers it, for small topics and tests). Caught up means every partition's
  position reached the high watermark of its last fetch *and* a few fetches in
  a row came back empty, because Tansu's end offsets undercount.
- :func:`replay_dead_letters` sends each consumer letter's original bytes, with
  its key, back to its source topic, fetch by fetch: once a fetch's letters are
  acknowledged it commits them under the replay group, so a second replay (or
  one after an interruption) sends only letters that came after.
  Producer letters (bad upstream messages, whose source is the upstream URL,
  not a topic) are listed but never replayed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from consumers.collect import forbid_topic_creation
from tickpipe.dlq import DeadLetter, decode_dead_letter, encode_dead_letter

#: The most one fetch of the dead-letter topic holds, in bytes and in records.
FETCH_MAX_BYTES: Final = 4 << 20
FETCH_MAX_RECORDS: Final = 2_000


class DeadLetterSink:
    """Sends dead letters to one topic over a producer it does not own."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.sent = 0

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Send and wait until the broker has every letter; raise the producer's error if it has not."""
        if not letters:
            return
        futures = [
            await self.producer.send(self.topic, encode_dead_letter(letter), key=letter.key) for letter in letters
        ]
        await asyncio.gather(*futures)
        self.sent += len(letters)


@dataclass(frozen=True)
class StoredLetter:
    """One record of the dead-letter topic; ``letter`` is None if the record is not a dead letter."""

    partition: int
    offset: int
    letter: DeadLetter | None
    raw: bytes = b""
    error: str = ""


@dataclass
class ReplayResult:
    sent: int = 0
    #: Letters not replayed, by why: ``producer`` (no Kafka source), ``filtered``, ``unreadable``.
    skipped: Counter[str] = field(default_factory=Counter)
    #: Replayed letters by source topic.
    by_topic: Counter[str] = field(default_factory=Counter)


async def stream_dead_letters(
    bootstrap: str,
    topic: str,
    *,
    group_id: str | None = None,
    from_start: bool = True,
    idle_fetches: int = 3,
    fetch_ms: int = 200,
) -> AsyncIterator[StoredLetter]:
    """Every record of ``topic`` (or, with ``group_id`` and not ``from_start``, those after its commit), in order."""
    consumer = dlq_consumer(bootstrap, group_id)
    await consumer.start()
    try:
        async for fetched, _ in _fetches(consumer, topic, from_start=from_start, idle_fetches=idle_fetches,
                                         fetch_ms=fetch_ms):  # fmt: skip
            for item in fetched:
                yield item
    finally:
        await consumer.stop()


async def read_dead_letters(bootstrap: str, topic: str, **options: Any) -> list[StoredLetter]:
    """:func:`stream_dead_letters` gathered in a list: for a topic known to be small (tests, a glance)."""
    return [item async for item in stream_dead_letters(bootstrap, topic, **options)]


def dlq_consumer(bootstrap: str, group_id: str | None) -> AIOKafkaConsumer:
    """A consumer that reads the topic by manual assignment (no group join); a group only stores offsets."""
    return forbid_topic_creation(
        AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            client_id=f"tickpipe-dlq-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # what one fetch may hold: the memory a listing or replay needs, whatever the topic's size
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=min(FETCH_MAX_BYTES, 1 << 20),
        )
    )


async def _fetches(
    consumer: AIOKafkaConsumer, topic: str, *, from_start: bool, idle_fetches: int, fetch_ms: int
) -> AsyncIterator[tuple[list[StoredLetter], dict[TopicPartition, int]]]:
    """Each fetch's letters, with the offsets to commit once they are dealt with, until caught up."""
    if topic not in await consumer.topics():  # fresh metadata: a topic created a moment ago must be seen
        return
    # Track the topic in the consumer's own metadata (topics() filled a copy): on Apache Kafka the
    # bootstrap metadata names no topic. Its metadata requests never create one (make_consumer's rule).
    await consumer._client.add_topic(topic)
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        return
    tps = [TopicPartition(topic, number) for number in sorted(numbers)]
    consumer.assign(tps)
    if from_start:
        await consumer.seek_to_beginning(*tps)
    empty = 0
    while True:
        batches = await consumer.getmany(*tps, timeout_ms=fetch_ms, max_records=FETCH_MAX_RECORDS)
        if batches:
            empty = 0
            yield (
                [_stored(record.partition, record.offset, record.value or b"") for records in batches.values()
                 for record in records],
                {tp: records[-1].offset + 1 for tp, records in batches.items()},
            )  # fmt: skip
            continue
        empty += 1
        if empty >= idle_fetches and await _caught_up(consumer, tps):
            return


async def _caught_up(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> bool:
    """Every partition read up to its end offset (asked of the broker) and its last fetch's high watermark.

    The end offset is what counts on Apache Kafka: empty fetches alone prove nothing when the broker
    answers a first fetch slower than ``fetch_ms`` (the watermark is then still unknown). Tansu's end
    offsets undercount, so the watermark, once known, must be reached too.
    """
    ends = await consumer.end_offsets(list(tps))
    for tp in tps:
        position = await consumer.position(tp)
        high = consumer.highwater(tp)
        if position < ends[tp] or (high is not None and position < high):
            return False
    return True


def _stored(partition: int, offset: int, raw: bytes) -> StoredLetter:
    try:
        return StoredLetter(partition, offset, decode_dead_letter(raw))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return StoredLetter(partition, offset, None, raw, f"not a dead letter: {exc}")


async def replay_dead_letters(
    bootstrap: str,
    topic: str,
    producer: AIOKafkaProducer,
    *,
    group_id: str,
    source_topic: str | None = None,
    from_start: bool = False,
    dry_run: bool = False,
) -> ReplayResult:
    """Send consumer dead letters back to their source topics; commit what was read unless ``dry_run``."""
    consumer = dlq_consumer(bootstrap, group_id)
    await consumer.start()
    try:
        result = ReplayResult()
        async for fetched, offsets in _fetches(consumer, topic, from_start=from_start, idle_fetches=3, fetch_ms=200):
            futures = []
            for item in fetched:
                letter = item.letter
                if letter is None:
                    result.skipped["unreadable"] += 1
                elif letter.stage != "consumer" or not letter.source_topic:
                    result.skipped["producer"] += 1
                elif source_topic is not None and letter.source_topic != source_topic:
                    result.skipped["filtered"] += 1
                else:
                    result.by_topic[letter.source_topic] += 1
                    result.sent += 1
                    if not dry_run:
                        futures.append(await producer.send(letter.source_topic, letter.original, key=letter.key))
            await asyncio.gather(*futures)  # this fetch's letters are safe in their topics: commit past them
            if not dry_run:
                await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
        return result
    finally:
        await consumer.stop()
