"""Rounds: what one trip to Kafka carries, filled from memory or from the spool's head.

A round holds at most one batch per partition. Filling stops at the first
record that does not fit (its partition's batch is full) or whose topic's
partition count is not known yet, so a round is always a prefix of what was
waiting: nothing behind a record that stays can go before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from producer.kafka_backend import Outcome, Round, TopicPartition
from producer.spool import Position, Record, Spool, Spooled

log = logging.getLogger(__name__)

Item = tuple[Record, TopicPartition]


@dataclass
class DurableStats:
    acked: int = 0  # records Kafka acknowledged (replayed ones included)
    spooled: int = 0  # records written to the spool
    replayed: int = 0  # records sent from the spool and acknowledged
    failed_rounds: int = 0
    failed_batches: Counter[str] = field(default_factory=Counter)  # by kind: "retriable", "fatal" (start-ups too)
    last_error: str | None = None
    #: Records dropped, by reason: "spool_full" (the spool took nothing and the memory hold was full).
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class Flight:
    """One round on its way to Kafka."""

    kind: str  # "direct" (from memory), "replay" (from the spool) or "held" (a slot's records the spool refused)
    items: list[Item]
    task: asyncio.Task[Outcome]
    started: float
    end: Position | None = None  # replay: commit here once acknowledged
    ends: list[Position] = field(default_factory=list)  # replay: where each of ``items`` ends in the spool
    covered: int = 0  # replay: spool records this round accounts for (skipped ones included)
    slot: int | None = None  # direct: reserved spool slot, if newer records were spooled meanwhile
    spilling: bool = False  # newer records go to the spool while this round is out


class Partitioner:
    """Kafka's default partitioner (murmur2 of the key) over the topic's *current* partition count.

    Any producer keyed by symbol agrees with us, and all of a symbol's records
    go to one partition for as long as the count holds. When it changes (the
    topic re-created, or grown), a symbol's later records go where the new
    count puts them; its earlier ones are already acknowledged by then,
    because one round is in flight at a time and a round is built from the
    count known when it starts, so per symbol Kafka still receives them in order.

    The count is fetched again after any failed round, after a round that stayed
    unanswered past ``spill_after``, and whenever the client's own metadata shows
    another one. Until one of those happens nothing says a topic was replaced:
    a round may still place records by the old count in partitions the new topic
    also has (10 of 600 records in ``test_a_topic_re_created_with_fewer_partitions``).
    They are acknowledged before any later record of their symbol is sent, so a
    consumer that reads a symbol's old partition before its new one sees them in order.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}  # partitions per topic
        self._cache: dict[tuple[str, bytes | None], int] = {}

    def update(self, counts: dict[str, int]) -> dict[str, tuple[int, int]]:
        """Take freshly fetched counts; return the topics whose count changed, as (before, now)."""
        changed = {t: (self.counts[t], n) for t, n in counts.items() if t in self.counts and self.counts[t] != n}
        self.counts.update(counts)
        if changed:
            self._cache.clear()
        return changed

    def __call__(self, topic: str, key: bytes | None) -> int:
        cached = self._cache.get((topic, key))
        if cached is not None:
            return cached
        partition = 0 if key is None else (murmur2(key) & 0x7FFFFFFF) % self.counts[topic]
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[(topic, key)] = partition
        return partition


def fill_from_memory(
    round_: Round, inbound: deque[Record], partition: Partitioner, limit: int
) -> tuple[list[Item], str | None]:
    """Move records from the head of ``inbound`` into the round; also return a topic to learn, if any."""
    items: list[Item] = []
    counts = partition.counts
    while inbound and len(items) < limit:
        record = inbound.popleft()
        topic, key, value = record
        if topic not in counts:
            inbound.appendleft(record)
            return items, topic
        tp = (topic, partition(topic, key))
        if not round_.add(topic, tp[1], key, value):
            inbound.appendleft(record)
            break
        items.append((record, tp))
    return items, None


def fill_from_spool(
    round_: Round,
    chunk: list[Spooled],
    partition: Partitioner,
    already_sent: Callable[[Position], bool] | None,
) -> tuple[list[Item], list[Position], Position, int, str | None]:
    """Records of a spool chunk into the round, skipping those a partly failed round delivered.

    Returns the items, where each of them ends in the spool, where the covered
    part of the chunk ends, how many spool records it covers (skipped ones
    included) and a topic to learn, if any.
    """
    items: list[Item] = []
    ends: list[Position] = []
    end, covered, counts = chunk[0].end, 0, partition.counts
    for record, record_end in chunk:
        topic, key, value = record
        if already_sent is not None and already_sent(record_end):
            end, covered = record_end, covered + 1
            continue
        if topic not in counts:
            return items, ends, end, covered, topic
        tp = (topic, partition(topic, key))
        if not round_.add(topic, tp[1], key, value):
            break
        items.append((record, tp))
        ends.append(record_end)
        end, covered = record_end, covered + 1
    return items, ends, end, covered, None


#: Given the records a full spool refused (with the slot they were for, if any) and why.
Keep = Callable[[int | None, list[Record], OSError], None]


def settle(
    flight: Flight, outcome: Outcome, spool: Spool, stats: DurableStats, keep: Keep
) -> dict[TopicPartition, BaseException]:
    """Book a finished round: count what Kafka took, put back in the spool what it did not; return the failures.

    A direct round's failed records go to its reserved slot (ahead of anything
    spooled meanwhile) or to the spool's end, or, if the spool refuses them,
    to ``keep``; a replayed round commits its chunk, or, if some partitions
    failed, remembers which of its records got through. A held round's
    records are the sink's to book (:meth:`~producer.durable_sink.DurableSink`).
    """
    failed = {tp: exc for tp, exc in outcome.items() if exc is not None}
    good = [record for record, tp in flight.items if tp not in failed]
    stats.acked += len(good)
    if flight.kind == "held":
        return failed
    if flight.kind == "direct":
        bad = [record for record, tp in flight.items if tp in failed]
        try:
            if flight.slot is not None:
                spool.fill(flight.slot, bad)
            else:
                spool.append(bad)
        except OSError as exc:
            keep(flight.slot, bad, exc)
        else:
            stats.spooled += len(bad)
        return failed
    assert flight.end is not None
    stats.replayed += len(good)
    if failed:
        spool.mark_sent(end for (_, tp), end in zip(flight.items, flight.ends, strict=True) if tp not in failed)
    else:
        spool.commit(flight.end, flight.covered)
    return failed


def abandon(flight: Flight, spool: Spool, stats: DurableStats, spill: Callable[[], None]) -> None:
    """Shutdown with a round still unanswered: make sure its records are on disk, ahead of newer ones.

    OSError if the spool refuses them (the caller counts them lost)."""
    if flight.kind == "replay":  # still in the spool: the cursor only moves on acknowledgement
        log.warning("shutdown: a replayed round was unanswered; it stays in the spool for the next start")
        return
    slot = flight.slot if flight.slot is not None else spool.reserve()
    spill()  # whatever waits in memory goes behind the slot
    spool.fill(slot, [record for record, _ in flight.items])
    stats.spooled += len(flight.items)
    log.warning(
        "shutdown: %d records were still unanswered by Kafka; they are spooled and will be sent again "
        "on the next start (Kafka may then hold them twice)",
        len(flight.items),
    )
