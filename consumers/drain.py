"""Burst mode's stopping rule: when a worker's topic is drained by its whole group, and how long to wait for it.

"Drained" is group-wide: every partition of the topic, owned by this worker or
not, has its committed offset at its end offset. A worker that only looked at
its own assignment would stop early when a member that died without leaving
still held partitions in the group (its session not expired).

:class:`BurstDrain` is asked by the worker's loop once several fetches in a
row came back empty. It answers True once this worker's partitions are caught
up (every position at its high watermark) and, group-wide, nothing is behind;
until then the worker keeps consuming, so a rebalance hands it the partitions
left behind. Its wait is bounded: if partitions are still behind when it is
caught up again ``wait_s`` after it first had nothing of its own left to do,
it raises :class:`NotDrained` naming them (``tickpipe consume --burst`` exits 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Set

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from consumers.progress import group_offsets
from tickpipe.errors import TickpipeError

log = logging.getLogger(__name__)


class NotDrained(TickpipeError):
    """Burst mode gave up: partitions of the topic were still behind when its wait ran out."""


async def caught_up(consumer: AIOKafkaConsumer) -> bool:
    """Every assigned partition's position has reached the high watermark of its last fetch."""
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None or await consumer.position(tp) < high:
            return False
    return True


def describe_behind(behind: Mapping[TopicPartition, tuple[int, int]]) -> str:
    """``t.quotes[2] 120/3400, ...``: each partition's committed and end offset."""
    return ", ".join(f"{tp.topic}[{tp.partition}] {done}/{end}" for tp, (done, end) in sorted(behind.items()))


async def undrained(consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, tuple[int, int]]:
    """Every partition of ``topic`` whose group offset is short of its end: ``{tp: (committed, end)}``.

    All of the topic's partitions, not only this consumer's: a partition held by a
    member that died (and is still in the group) or by a slow live one counts too.
    """
    partitions = consumer.partitions_for_topic(topic) or set()
    offsets = await group_offsets(consumer, [TopicPartition(topic, p) for p in partitions], {})
    return {tp: (done, end) for tp, (done, end) in offsets.items() if done < end}


class BurstDrain:
    """Whether one worker's topic is drained by its group; checked at most every ``check_every_s``."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        table: str,
        topic: str,
        group: str,
        owned: Set[TopicPartition],
        wait_s: float,
        check_every_s: float,
    ) -> None:
        self.consumer = consumer
        self.table = table
        self.topic = topic
        self.group = group
        #: The partitions the worker owns now (its own set, updated at each rebalance).
        self.owned = owned
        #: How long to wait for partitions others hold, from when ours were first done.
        self.wait_s = wait_s
        self.check_every_s = check_every_s
        self._check_at = 0.0
        self._wait_until: float | None = None
        self._behind_logged: str | None = None

    async def done(self) -> bool:
        """Whether every partition of the topic is drained by the group (then stop).

        Checked at most every ``check_every_s`` once the worker's own partitions
        are caught up; raises NotDrained when others stay behind past ``wait_s``.
        """
        consumer = self.consumer
        if not await caught_up(consumer):
            return False
        now = time.monotonic()
        if now < self._check_at:
            return False
        self._check_at = now + self.check_every_s
        behind = await undrained(consumer, self.topic)
        if not behind:
            log.info("%s: caught up (burst mode): every partition of %s is drained by group %s, stopping",
                     self.table, self.topic, self.group)  # fmt: skip
            return True
        if self._wait_until is None:
            self._wait_until = now + self.wait_s
        described = describe_behind(behind)
        if now > self._wait_until:
            raise NotDrained(
                f"{self.table}: burst mode waited {self.wait_s:g} s and partitions of {self.topic} are still "
                f"not drained (committed/end offset): {described}; group {self.group} may have another member "
                "holding them (alive, or dead and its session not expired)"
            )
        for tp, (committed, _) in behind.items():
            position = await consumer.position(tp) if tp in self.owned else None
            if position is not None and position > committed:  # ours, read and stored, but its commit failed
                log.info("%s: %s[%d] is committed at %d, behind our position %d; reading it again from there",
                         self.table, tp.topic, tp.partition, committed, position)  # fmt: skip
                consumer.seek(tp, committed)
        if described != self._behind_logged:
            self._behind_logged = described
            log.info("%s: burst mode: my partitions %s are caught up; waiting (up to %g s) for the group to drain "
                     "the rest (committed/end offset): %s", self.table, sorted(tp.partition for tp in self.owned),
                     self.wait_s, described)  # fmt: skip
        return False
