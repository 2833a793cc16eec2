"""The consume loop of one table: Kafka batches into PostgreSQL, offsets committed after the rows.

One worker = one consumer in the table's group (``<prefix>writer.<table>``);
more workers in the group share its partitions. Per batch:

1. fetch until ``BATCH_SIZE`` records or ``BATCH_MAX_WAIT_MS`` after the first;
2. decode (:mod:`consumers.batch`) while earlier batches are being written:
   up to two writes in flight for quotes and trades, each on its own
   connection (their rows do not depend on order), one for bars (an update
   must land after the bar it updates), so decoding overlaps the database;
3. write (:mod:`consumers.writer`); on failure retry with capped exponential
   backoff (:func:`consumers.store.retry_backoff`), forever: PostgreSQL
   coming back is what ends an outage. Meanwhile fetching is paused, but the
   consumer keeps polling so the group keeps it;
4. send the batch's dead letters and wait for the broker's acks;
5. commit exactly the batch's offsets ``{tp: last + 1}``, for partitions still
   owned in the same assignment generation, and only after every earlier
   batch committed: offsets never pass a batch that is not stored.

A rebalance revokes first: the listener waits for the writes in flight (which
commit their offsets), or abandons it if PostgreSQL is down or it takes too
long. Then the generation ("epoch") moves on and everything fetched before it
is dropped uncommitted, to be fetched again by whoever owns it next. A batch
from an older epoch is never written or committed.

``burst=True`` stops once the whole topic is drained, not only this worker's
share of it: several fetches in a row came back empty, and then
:class:`~consumers.drain.BurstDrain` finds every owned partition's position
at its high watermark and, group-wide, every partition of the topic with its
committed offset at its end offset. Until then it keeps consuming, so a
rebalance (a dead member's session expiring) hands it the partitions left
behind; after ``burst_wait_s`` it raises :class:`~consumers.drain.NotDrained`
naming them (``tickpipe consume --burst`` exits 1). ``stop()`` (SIGTERM)
finishes the batch in flight if PostgreSQL is up, abandons it otherwise, and
leaves the group.

Lag (``tickpipe_consumer_lag``, ``/health``) is measured by a task of its own
every ``lag_every_s``: end offsets minus committed offsets, exact on Apache
Kafka (:mod:`consumers.progress`).

Test hook, off by default: with ``TICKPIPE_TEST_SIGKILL_BEFORE_OFFSET_COMMIT=N``
in its environment the process SIGKILLs itself right after a worker's N-th
batch's rows are committed in PostgreSQL and before that batch's offsets are
committed (with ``consume all``, whichever worker gets there first): the one
crash that must leave rows stored but not committed, made deterministic for
the tests that prove redelivery then adds no row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from consumers.batch import Batch
from consumers.collect import Collector, make_consumer
from consumers.dlq import DeadLetterSink
from consumers.drain import BurstDrain
from consumers.metrics import ConsumerMetrics
from consumers.progress import WorkerStats, account, measure_lag
from consumers.store import retry_backoff, store_batch
from consumers.tables import spec
from consumers.writer import WriteError, Writer
from tickpipe.names import topic
from tickpipe.settings import Settings

log = logging.getLogger(__name__)

#: The test hook's variable (see the module docstring): a batch count, unset or empty = off.
SIGKILL_HOOK = "TICKPIPE_TEST_SIGKILL_BEFORE_OFFSET_COMMIT"


def group_id(settings: Settings, table: str) -> str:
    """The consumer group of a table: one group per table, named after the topic prefix."""
    return f"{settings.kafka_topic_prefix}writer.{table}"


class Worker(ConsumerRebalanceListener):
    """Consumes one table's topic into PostgreSQL until stopped (or caught up, in burst mode).

    It is its own rebalance listener: aiokafka awaits its ``on_partitions_*`` during a rebalance.
    """

    def __init__(
        self,
        settings: Settings,
        table: str,
        *,
        bootstrap: str,
        database_url: str,
        sink: DeadLetterSink,
        metrics: ConsumerMetrics,
        group: str | None = None,
        burst: bool = False,
        idle_fetches: int = 3,
        retry_max_s: float | None = None,
        revoke_grace_s: float = 20.0,
        stop_grace_s: float = 20.0,
        burst_wait_s: float = 120.0,
        drain_check_s: float = 1.0,
        lag_every_s: float = 1.0,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        self.table = table
        self.topic = topic(spec(table).topic_word, settings.kafka_topic_prefix)
        self.group = group or group_id(settings, table)
        self.burst = burst
        self.idle_fetches = idle_fetches
        self.backoff = retry_backoff(settings.consumer_retry_max_s if retry_max_s is None else retry_max_s)
        self.revoke_grace_s = revoke_grace_s
        self.stop_grace_s = stop_grace_s
        self.lag_every_s = lag_every_s
        self.sink = sink
        self.metrics = metrics
        #: Writes in flight at once, each on its own connection: two where order does not matter.
        self.depth = 2 if spec(table).optimistic else 1
        self.writers = [Writer(database_url, table) for _ in range(self.depth)]
        self.stats = WorkerStats()
        self.consumer = make_consumer(settings, bootstrap, self.group, table, **(consumer_options or {}))
        self.assigned: set[TopicPartition] = set()
        self.collector = Collector(
            self.consumer, table, batch_size=settings.batch_size, max_wait_s=settings.batch_max_wait_ms / 1000,
            owned=self.assigned,
        )  # fmt: skip
        self.joined = False
        self.database_up = False
        self.running = False
        self._inflight: list[tuple[asyncio.Task[None], Writer]] = []
        self._stopping = False
        self._stop_deadline = float("inf")
        self._committed: dict[TopicPartition, int] = {}
        self._lag: dict[TopicPartition, int] = {}
        #: When the broker last answered the lag round (monotonic), and why the last round failed.
        self._kafka_answered_at: float | None = None
        self._kafka_error: str | None = None
        #: The broker counts as unreachable when no lag round got an answer for this long.
        self._kafka_timeout_s = settings.kafka_request_timeout_ms / 1000
        self.kafka_stale_after_s = 3 * lag_every_s + self._kafka_timeout_s
        self.drain = BurstDrain(
            self.consumer, table=table, topic=self.topic, group=self.group, owned=self.assigned,
            wait_s=burst_wait_s, check_every_s=drain_check_s,
        )  # fmt: skip
        hook = os.environ.get(SIGKILL_HOOK, "").strip()
        #: The test hook: SIGKILL after this many batches stored (None = never).
        self._kill_after: int | None = int(hook) if hook else None
        self._stored_batches = 0

    # --- control ----------------------------------------------------------------------------------

    @property
    def writing(self) -> bool:
        """Whether a batch is being written (or retried) right now."""
        return any(not task.done() for task, _ in self._inflight)

    def stop(self) -> None:
        """Ask the loop to finish: the batch in flight is written (if PostgreSQL is up) or abandoned."""
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.stop_grace_s

    async def run(self) -> WorkerStats:
        """Consume until ``stop()`` (or, in burst mode, until caught up); return what was done."""
        self.consumer.subscribe([self.topic], listener=self)
        await self.consumer.start()
        self.running = True
        try:
            try:
                await self.writers[0].ping()
                self._set_db(True)
            except WriteError as exc:
                self._set_db(False)
                log.warning("%s: PostgreSQL not reachable at start (%s); will retry with the first batch",
                            self.table, exc)  # fmt: skip
            lag_task = asyncio.create_task(self._measure_lag(), name=f"lag-{self.table}")
            try:
                await self._loop()
                await self._drain()
            finally:
                lag_task.cancel()
                await asyncio.wait({lag_task})
        finally:
            self.running = False
            await self._abandon_writes()
            await self.consumer.stop()
            for writer in self.writers:
                await writer.close()
            self.metrics.assigned.labels(self.table).set(0)
        log.info("%s: stopped after %d records, %d rows written", self.table, self.stats.records,
                 self.stats.rows_written)  # fmt: skip
        return self.stats

    # --- the loop ---------------------------------------------------------------------------------

    async def _loop(self) -> None:
        empty = 0
        collector = self.collector
        while not self._stopping:
            added = await collector.fill(lambda: self._stopping)
            if self._stopping:
                break
            if not collector.batch.records:
                empty = 0 if added else empty + 1
                if self.burst and empty >= self.idle_fetches:
                    await self._wait_writes(keep=0)
                    if not collector.batch.records and await self._burst_done():
                        return
                continue
            empty = 0
            batch = collector.take()
            await self._wait_writes(keep=self.depth - 1)
            await self._launch(batch)

    async def _drain(self) -> None:
        """On stop: write what was fetched if PostgreSQL is up, then wait for the writes in flight."""
        if self.collector.batch.records and self.database_up:
            batch = self.collector.take()
            await self._wait_writes(keep=self.depth - 1)
            await self._launch(batch)
        await self._wait_writes(keep=0)

    async def _launch(self, batch: Batch) -> None:
        if batch.epoch != self.collector.epoch:  # fetched before a rebalance: its partitions may be someone else's
            self._count_abandoned(batch)
            return
        busy = {id(writer) for _, writer in self._inflight}
        writer = next(writer for writer in self.writers if id(writer) not in busy)
        previous = self._inflight[-1][0] if self._inflight else None
        task = asyncio.create_task(self._write(batch, writer, previous), name=f"write-{self.table}")
        self._inflight.append((task, writer))
        await asyncio.sleep(0)  # let it send its first request before the loop goes back to decoding

    async def _wait_writes(self, keep: int) -> None:
        """Wait until at most ``keep`` writes are in flight; while one takes long, pause fetching, keep polling."""
        while len(self._inflight) > keep:
            task, _ = self._inflight[0]
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=1.0)
                if done:
                    break
                if self._stopping and (not self.database_up or time.monotonic() > self._stop_deadline):
                    await self._abandon_writes()
                    return
                await self.collector.poll_paused()  # fetching stops, but the group must not drop us
            self._inflight.pop(0)
            self.collector.resume()
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]  # a bug, not an outage: let it be seen

    async def _abandon_writes(self) -> None:
        tasks = [task for task, _ in self._inflight]
        self._inflight.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.collector.resume()

    # --- one batch --------------------------------------------------------------------------------

    async def _write(self, batch: Batch, writer: Writer, previous: asyncio.Task[None] | None) -> None:
        began = time.monotonic()
        try:
            result = await store_batch(batch, writer, self.sink, backoff=self.backoff, on_write_failure=self._retrying)
            self._set_db(True)
            self._stored_batches += 1
            if self._kill_after is not None and self._stored_batches >= self._kill_after:
                log.warning("%s: %s=%d: SIGKILL after the rows, before the offsets", self.table, SIGKILL_HOOK,
                            self._kill_after)  # fmt: skip
                os.kill(os.getpid(), signal.SIGKILL)
            if previous is not None:  # offsets in order: never past an earlier batch not stored yet
                await asyncio.wait({previous})
            if previous is None or (not previous.cancelled() and previous.exception() is None):
                await self._commit(batch)
        except asyncio.CancelledError:
            self._count_abandoned(batch)
            raise
        account(self.metrics, self.stats, batch, result.inserted, len(result.refused), time.monotonic() - began)

    async def _commit(self, batch: Batch) -> None:
        """Commit exactly the batch's offsets, for partitions still owned in the epoch it was fetched in."""
        if batch.epoch != self.collector.epoch:
            return
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in batch.offsets.items() if tp in self.assigned}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            self.stats.commit_failures += 1
            self.metrics.commit_failures.labels(self.table).inc()
            log.warning("%s: offsets not committed (%s); the rows are stored, redelivery is a no-op",
                        self.table, exc)  # fmt: skip
            return
        for tp, meta in offsets.items():
            self._committed[tp] = meta.offset
        if self.collector.first_fetch is not None:
            self.stats.busy_seconds = time.monotonic() - self.collector.first_fetch

    def _count_abandoned(self, batch: Batch) -> None:
        self.stats.abandoned += 1
        self.metrics.abandoned.labels(self.table).inc()
        log.info("%s: abandoned an uncommitted batch of %d records; they will be delivered again",
                 self.table, batch.records)  # fmt: skip

    def _retrying(self, attempt: int, exc: WriteError) -> None:
        self._set_db(False)
        self.stats.write_retries += 1
        self.metrics.write_retries.labels(self.table).inc()
        if attempt == 1 or attempt % 20 == 0:
            log.warning("%s: write failed (attempt %d), retrying with backoff: %s", self.table, attempt, exc)

    def _set_db(self, up: bool) -> None:
        if up and not self.database_up and self.stats.write_retries:
            log.info("%s: PostgreSQL is back; writing again", self.table)
        self.database_up = up
        self.metrics.db_up.labels(self.table).set(1 if up else 0)

    # --- rebalances -------------------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish (and commit) or abandon the write in flight, then drop what was fetched."""
        revoked = set(revoked)
        if revoked:  # the first join "revokes" nothing
            self.stats.rebalances += 1
            self.metrics.rebalances.labels(self.table).inc()
        tasks = [task for task, _ in self._inflight if not task.done()]
        if tasks and self.database_up:  # finish them: they commit their offsets while the partitions are ours
            await asyncio.wait(tasks, timeout=self.revoke_grace_s)
        for task in tasks:
            task.cancel()  # a no-op for those done
        if tasks:
            await asyncio.wait(tasks)
        dropped = self.collector.reset()
        if dropped:
            log.info("%s: dropped %d fetched records at a rebalance", self.table, dropped)
        for tp in revoked:
            self._committed.pop(tp, None)
            try:
                self.metrics.lag.remove(self.table, tp.topic, str(tp.partition))
            except KeyError:
                pass
        self.assigned -= revoked  # in place: the collector holds this very set
        self.metrics.assigned.labels(self.table).set(len(self.assigned))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned.clear()
        self.assigned.update(assigned)
        self.joined = True
        self.metrics.assigned.labels(self.table).set(len(assigned))
        log.info("%s: assigned %s", self.table, sorted(tp.partition for tp in assigned))

    # --- progress ---------------------------------------------------------------------------------

    async def _burst_done(self) -> bool:
        """Burst mode: whether every partition of the topic is drained by the group (then stop)."""
        return self.joined and await self.drain.done()

    async def _measure_lag(self) -> None:
        """Every ``lag_every_s``: each owned partition's lag into the gauge (and for /health)."""
        while True:
            await asyncio.sleep(self.lag_every_s)
            epoch = self.collector.epoch
            try:
                async with asyncio.timeout(self._kafka_timeout_s):  # a hung broker answers nothing, ever
                    lag = await measure_lag(self.consumer, self._committed, set(self.assigned))
                    if not lag:  # nothing owned, so nothing was asked: ask for metadata to know the broker answers
                        await self.consumer.topics()
            except TimeoutError:
                if self._kafka_error is None:
                    log.warning("%s: Kafka did not answer the lag round within %g s", self.table, self._kafka_timeout_s)
                self._kafka_error = f"no answer within {self._kafka_timeout_s:g} s"
                continue
            except (KafkaError, OSError) as exc:
                if self._kafka_error is None:
                    log.warning("%s: Kafka did not answer the lag round: %s", self.table, exc)
                self._kafka_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if self._kafka_error is not None:
                log.info("%s: Kafka answers again", self.table)
            self._kafka_answered_at = time.monotonic()
            self._kafka_error = None
            if epoch != self.collector.epoch:  # a rebalance while we asked: the next round measures the new set
                continue
            self._lag = lag
            for tp, behind in lag.items():
                self.metrics.lag.labels(self.table, tp.topic, str(tp.partition)).set(behind)

    @property
    def kafka_state(self) -> str:
        """``up``, ``unknown`` (no answer yet) or ``unreachable``: lag and progress are only known while up."""
        if self._kafka_answered_at is None:
            return "unreachable" if self._kafka_error else "unknown"
        if time.monotonic() - self._kafka_answered_at > self.kafka_stale_after_s:
            return "unreachable"
        return "up"

    @property
    def kafka_error(self) -> str | None:
        return self._kafka_error

    def lag(self) -> dict[str, int]:
        """Records not yet written per owned partition (``"topic:partition"``), as last measured: exact."""
        return {f"{tp.topic}:{tp.partition}": n for tp, n in sorted(self._lag.items()) if tp in self.assigned}
