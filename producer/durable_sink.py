"""The durable path: every event to Kafka, keyed by symbol, in order per symbol, never dropped silently.

The read loop hands records to :meth:`DurableSink.offer` (a list append,
nothing awaited). The sink's own task ships them in *rounds*: at most one
batch per partition, all sent together, and the next round only once every
batch of this one is settled. One round in flight means a failed batch can
never be overtaken by a later one of the same partition, so order per symbol
holds through any failure without the idempotent producer.

While Kafka fails, or a round stays unanswered longer than
``spill_after`` (or the queue passes ``queue_limit``), records go to the
:class:`~producer.spool.Spool` instead. As long as the spool holds anything,
new records are appended behind it, and rounds are read from its head
(committed only once acknowledged) until it is empty; then records go
straight to Kafka again. A round that fails after newer records were spooled
fills a slot reserved ahead of them, so it is still replayed first.

After a failed round the topics' partition counts are fetched again (and
missing topics created) before the next round: a broker that came back may
have lost a topic, or someone's metadata request may have re-created it with
the broker's default partitions. Records take their partition from the count
known when their round starts (:class:`~producer.rounds.Partitioner`), so a
change of count never sends a record to a partition that is gone, and the
spool's note of partly sent rounds does not depend on it.

A round refused with an error that sending again cannot fix (see
:func:`~producer.kafka_backend.is_retriable`) is logged at ERROR and tried
``fatal_after`` times in all; then the sink gives up until the process is
restarted: its state is ``failed``, every record goes to the spool and stays
there, and the producer is not ready.

When the spool takes nothing (a full disk, its size cap), records wait in
memory up to ``hold_limit``, then the newest are dropped, counted and logged
(:mod:`producer.spool_hold`); the spool is tried again every second and at
once when a replayed round frees room. Failed records of a direct round whose
slot the spool refuses are held too, and sent from memory before the spool is
replayed, so order per symbol still holds. If the sink's task dies of anything
else, :attr:`DurableSink.task_error` says why, its state is ``failed``, and
the records offered after it are held and dropped the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from producer.errors import describe
from producer.kafka_backend import KafkaBackend, Outcome, Round, is_retriable
from producer.rounds import DurableStats, Flight, Partitioner, abandon, fill_from_memory, fill_from_spool, settle
from producer.spool import Record, Spool
from producer.spool_hold import SINK_FAILED, SpoolHold
from tickpipe.backoff import EqualJitterBackoff

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 1.0


class DurableSink:
    """Kafka with a disk spool behind it; see the module docstring."""

    def __init__(
        self,
        backend: KafkaBackend,
        spool: Spool,
        *,
        queue_limit: int = 200_000,
        spill_after: float = 2.0,
        round_max: int = 100_000,
        linger: float = 0.0,
        retry_max: float = 10.0,
        fatal_after: int = 3,
        hold_limit: int = 200_000,
    ) -> None:
        self.backend = backend
        self.spool = spool
        self.queue_limit = queue_limit
        self.spill_after = spill_after
        self.round_max = round_max
        self.linger = linger  # gather records this long after a round starts before the next one
        self.backoff = EqualJitterBackoff.up_to(retry_max, base=0.5)
        self.fatal_after = fatal_after  # rounds refused with a fatal error before giving up
        self.fatal: str | None = None  # why the sink gave up, once it has
        self.stats = DurableStats()
        self.hold = SpoolHold(hold_limit, self.stats)
        self.task_error: str | None = None  # why the sink's task died, if it did
        self.inbound: deque[Record] = deque()
        #: A failed direct round's records the spool refused, and their reserved slot: sent before the spool.
        self._held: tuple[int, deque[Record]] | None = None
        self._room: list[tuple[int, asyncio.Future[None]]] = []  # (pending at most, waiter): see room()
        self._flight: Flight | None = None
        self._want = True
        self._signal: asyncio.Future[None] | None = None
        self._stopping = False
        self._failures = 0
        self._retry_at = 0.0
        self._last_sync = 0.0
        self._partition = Partitioner()
        self._metadata: asyncio.Future[None] | None = None  # fetching partition counts; rounds wait for it
        self._stale = False  # partition counts must be fetched again before the next round
        self._fatal_rounds = 0  # refusals in a row (start, metadata, round) with a fatal error; see _refused
        self._since = 0.0  # when run() began connecting
        self._last_round = 0.0
        self.connected = asyncio.Event()  # set once Kafka was first reached

    # --- the read loop's side -----------------------------------------------------------------
    def offer(self, records: Sequence[Record]) -> None:
        """Take records for Kafka; never blocks, never drops (unless the spool refuses them; see the module)."""
        self.inbound.extend(records)
        if self._want or len(self.inbound) > self.queue_limit:
            self._poke()
            if self.task_error is not None:  # nothing takes them any more: hold a bounded number
                self.hold.bound(self.inbound, reason=SINK_FAILED)

    # --- state --------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``direct`` or ``replaying`` while Kafka takes records; anything else means it does not.

        ``unknown``: a round has had no answer for ``spill_after`` seconds, so
        whether Kafka is there cannot be told (a killed or frozen broker looks
        like this until the client gives up). ``failed``: see :attr:`fatal`.
        """
        if self.fatal is not None or self.task_error is not None:
            return "failed"
        if not self.backend.connected:
            return "connecting"
        if self._failures:
            return "spooling"
        if self._flight is not None and self._flight.spilling:
            return "unknown"
        return "replaying" if self.spool.depth or self._held else "direct"

    @property
    def writable(self) -> bool:
        """Kafka is taking records (the spool may still be draining)."""
        return self.state in ("direct", "replaying")

    @property
    def partitions(self) -> dict[str, int]:
        """Partition count per topic, as last fetched."""
        return dict(self._partition.counts)

    @property
    def settled(self) -> int:
        """Offered records that are safe: acknowledged by Kafka straight from memory, or on disk.

        Each offered record is counted once (one replayed from the spool was counted when spooled),
        so ``settled >= n`` means the first ``n`` records offered survive a SIGKILL.
        """
        stats = self.stats
        return stats.acked - stats.replayed + stats.spooled

    @property
    def offered(self) -> int:
        """Records ever offered: each one is either settled, pending or dropped (never settled, so a gap state
        taken after a drop is not written: a restart fetches the window again)."""
        return self.settled + self.pending + sum(self.stats.dropped.values())

    @property
    def pending(self) -> int:
        """Records in memory not yet acknowledged by Kafka nor on disk."""
        in_flight = len(self._flight.items) if self._flight and self._flight.kind != "replay" else 0
        return len(self.inbound) + in_flight + self._in_slot_hold

    @property
    def held(self) -> int:
        """Records in memory because the spool refused them (see :mod:`producer.spool_hold`)."""
        if self.hold.error is None and self.task_error is None:
            return 0
        return len(self.inbound) + self._in_slot_hold

    @property
    def _in_slot_hold(self) -> int:
        """Records of a refused slot waiting in memory (see ``_held``)."""
        return len(self._held[1]) if self._held else 0

    async def room(self, limit: int) -> None:
        """Return once at most ``limit`` records wait in memory: backpressure for a bulk writer (the
        backfill), never for the read loop."""
        if self.pending <= limit:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._room.append((limit, waiter))
        self._poke()
        await waiter

    def _wake_room(self) -> None:
        if self._room:
            pending = self.pending
            for limit, waiter in self._room:
                if pending <= limit and not waiter.done():
                    waiter.set_result(None)
            self._room = [(limit, waiter) for limit, waiter in self._room if not waiter.done()]

    def stop(self) -> None:
        """Ask :meth:`run` to finish: flush what it can within its deadline, spool the rest."""
        self._stopping = True
        self._poke()

    # --- the sink's task ----------------------------------------------------------------------
    async def run(self, shutdown_timeout: float = 15.0) -> None:
        """Ship records until :meth:`stop`, then flush or spool within ``shutdown_timeout``."""
        self._since = asyncio.get_running_loop().time()
        connector = asyncio.create_task(self._connect(), name="kafka-connect")
        try:
            while not self._stopping:
                await self._step()
        except Exception as exc:
            self.task_error = self.hold.error = f"the sink's task died: {describe(exc)}"
            self._want = True  # offer() pokes, and so bounds what waits
            raise
        finally:
            connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
            await self._shutdown(asyncio.get_running_loop().time() + shutdown_timeout)

    async def _connect(self) -> None:
        """Start the backend, retrying while Kafka is away; give up after ``fatal_after`` fatal refusals."""
        attempt = 0
        while not self.backend.connected:
            try:
                await self.backend.start()
                log.info("Kafka connected; %d records wait in the spool", self.spool.depth)
                self.connected.set()
                self._poke()
            except Exception as exc:
                attempt += 1
                if not is_retriable(exc):  # e.g. a setting the broker refuses: waiting will not fix it
                    self._refused(f"start: {describe(exc)}", 1)
                    if self.fatal is not None:
                        return
                delay = self.backoff.compute(attempt)
                level = logging.WARNING if attempt == 1 else logging.INFO
                log.log(level, "Kafka unreachable (%s); spooling to disk, retrying in %.1f s", describe(exc), delay)
                await asyncio.sleep(delay)

    async def _step(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        flight = self._flight
        if flight is not None and flight.task.done():
            self._settle(flight, now)
            flight = self._flight = None
        self._wake_room()
        if self._held is not None and flight is None and self.hold.due(now):
            self._fill_held(now)
        elif self.hold.error is not None and not (self.inbound or self._held or self.spool.depth) and self.writable:
            self.hold.drained()  # Kafka took what the spool refused
        wake_at: float | None = None  # when to look again if nothing pokes us first
        if flight is not None:
            self._maybe_spill(flight, now)
        elif not self.backend.connected:
            # Still connecting: hold records in memory for a moment (start-up), then to disk.
            if (
                self.spool.depth
                or len(self.inbound) > self.queue_limit
                or now >= self._since + self.spill_after
                or self.fatal is not None
            ):
                self._spill()
            else:
                wake_at = self._since + self.spill_after
        elif self.spool.depth or self._failures or self.fatal is not None or self._held is not None:
            self._spill()  # behind whatever the spool holds
            if self._metadata is None and self.fatal is None:
                if now < self._retry_at:
                    wake_at = self._retry_at
                elif not self._refreshing() and self._held is not None:
                    self._flight = self._start_held(now)
                elif not self._refreshing() and self.spool.depth:
                    self._flight = self._start_replay(now)
                    wake_at = self._retry_at if self._flight is None else None
        elif self.inbound and self._metadata is None:
            if now >= self._last_round + self.linger or len(self.inbound) >= self.round_max:
                if not self._refreshing():
                    self._flight = self._start_direct(now)
                    self._last_round = now
            else:  # fewer, fuller rounds: less work per record for us and for the broker
                wake_at = self._last_round + self.linger
        if self.spool.depth and now - self._last_sync > SYNC_INTERVAL_S:
            self._sync()
            self._last_sync = now
        flight = self._flight
        if flight is not None and not flight.spilling:
            wake_at = flight.started + self.spill_after
        if self.hold.error is not None and (self.inbound or self._held):  # try the spool again then
            wake_at = self.hold.retry_at if wake_at is None else min(wake_at, self.hold.retry_at)
        self._want = flight is None or flight.spilling
        if self._stopping or (wake_at is not None and wake_at <= now):
            await asyncio.sleep(0)
            return
        self._signal = signal = loop.create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(wake_at):
                await signal

    def _changed(self) -> bool:
        """Whether the client's metadata shows another partition count than ours for a topic (no I/O)."""
        cached = self.backend.cached_partitions
        return any(cached(topic) not in (None, count) for topic, count in self._partition.counts.items())

    def _can_start(self) -> bool:
        return (
            self.backend.connected
            and not self.spool.depth
            and not self._failures
            and self.fatal is None
            and self._held is None
        )

    def _poke(self) -> None:
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    # --- rounds ---------------------------------------------------------------------------------
    def _start_direct(self, now: float) -> Flight | None:
        round_ = self.backend.new_round()
        items, unknown = fill_from_memory(round_, self.inbound, self._partition, self.round_max)
        if unknown is not None:
            self._learn(unknown)
        return Flight("direct", items, self._launch(round_), now) if items else None

    def _start_held(self, now: float) -> Flight | None:
        """A round of the records a refused slot holds: the oldest there are, so they go first."""
        assert self._held is not None
        slot, records = self._held
        round_ = self.backend.new_round()
        items, unknown = fill_from_memory(round_, records, self._partition, self.round_max)
        if unknown is not None:
            self._learn(unknown)
        return Flight("held", items, self._launch(round_), now, slot=slot) if items else None

    def _start_replay(self, now: float) -> Flight | None:
        chunk = self.spool.read(self.round_max)
        if not chunk:  # depth says there is more, the segments do not: never spin on it
            log.error("spool counts %d records but none can be read; retrying in 1 s", self.spool.depth)
            self._retry_at = now + 1.0
            return None
        round_ = self.backend.new_round()
        skip = self.spool.already_sent if self.spool.sent else None
        items, ends, end, covered, unknown = fill_from_spool(round_, chunk, self._partition, skip)
        if unknown is not None:
            self._learn(unknown)
        if not items:
            if covered:  # the whole chunk had reached Kafka before
                self.spool.commit(end, covered)
            return None
        return Flight("replay", items, self._launch(round_), now, end=end, ends=ends, covered=covered)

    def _launch(self, round_: Round) -> asyncio.Task[Outcome]:
        task = asyncio.ensure_future(round_.send())
        task.add_done_callback(lambda _: self._poke())
        return task

    def _learn(self, topic: str) -> None:
        """Fetch an unknown topic's partition count in the background (known since start: no I/O)."""

        async def one() -> dict[str, int]:
            return {topic: await self.backend.partitions(topic)}

        self._fetch([topic], one)

    def _refreshing(self) -> bool:
        """If the partition counts may be stale (see :class:`~producer.rounds.Partitioner`), fetch them again
        (creating missing topics) in the background, and say so: the next round waits for them."""
        if not (self._stale or self._changed()):
            return False
        topics = list(self._partition.counts)

        async def again() -> dict[str, int]:
            return await self.backend.refresh(topics) if topics else {}

        self._fetch(topics, again)
        return True

    def _fetch(self, topics: list[str], counts_of: Callable[[], Awaitable[dict[str, int]]]) -> None:
        async def fetch() -> None:
            try:
                counts = await counts_of()
            except Exception as exc:
                why = f"partitions of {', '.join(topics)}: {describe(exc)}"
                if not is_retriable(exc):  # e.g. topic creation refused: asking again will not help
                    self._refused(why, 1)
                if self.fatal is None:
                    self._fail(why)
            else:
                for topic, (before, now) in self._partition.update(counts).items():
                    log.warning(
                        "Kafka topic %s now has %d partitions, not %d: later records of each symbol go to "
                        "the partition the new count gives (those before it are all acknowledged)",
                        topic, now, before,
                    )  # fmt: skip
                self._stale = False
            finally:
                self._metadata = None
                self._poke()

        if self.backend.connected and self._metadata is None:
            self._metadata = asyncio.ensure_future(fetch())

    def _maybe_spill(self, flight: Flight, now: float) -> None:
        """Newer records go to disk once the round in flight is overdue or the queue is full."""
        if not flight.spilling and (len(self.inbound) > self.queue_limit or now - flight.started >= self.spill_after):
            flight.spilling = True
            why = "queue full" if len(self.inbound) > self.queue_limit else f"no answer in {now - flight.started:.1f} s"
            log.warning("Kafka round of %d records pending (%s): newer records go to the spool", len(flight.items), why)
        if flight.spilling and self.inbound:
            if flight.kind == "direct" and flight.slot is None:
                flight.slot = self.spool.reserve()
            self._spill()

    def _spill(self, force: bool = False) -> None:
        """Everything in memory to the spool's end; if the spool refuses, it stays (within the hold's bound)."""
        if not self.inbound:
            return
        now = asyncio.get_running_loop().time()
        if not force and not self.hold.due(now):
            self.hold.bound(self.inbound, self._in_slot_hold)
            return
        records = list(self.inbound)
        try:
            self.spool.append(records)
        except OSError as exc:
            self.hold.refused(exc, now, len(records))
            self.hold.bound(self.inbound, self._in_slot_hold)
            return
        self.inbound.clear()
        self.stats.spooled += len(records)
        self.hold.cleared(len(records))

    def _keep(self, slot: int | None, records: list[Record], exc: OSError) -> None:
        """A failed direct round's records the spool refused: the oldest of all, so ahead of everything."""
        self.hold.refused(exc, asyncio.get_running_loop().time(), len(records))
        if slot is None:  # nothing was spooled since the round began: the front of the queue
            self.inbound.extendleft(reversed(records))
        else:  # newer records may be spooled behind the slot: send these from memory first
            self._held = (slot, deque(records))

    def _fill_held(self, now: float) -> None:
        """Try once more to write the held records into their slot."""
        assert self._held is not None
        slot, records = self._held
        try:
            self.spool.fill(slot, list(records))
        except OSError as exc:
            self.hold.refused(exc, now, len(records))
            return
        self._held = None
        self.stats.spooled += len(records)
        self.hold.cleared(len(records))

    def _sync(self) -> None:
        try:
            self.spool.sync()
        except OSError as exc:  # the data is written; only its durability against a power cut is in doubt
            log.error("spool: fsync failed (%s); retrying in %g s", describe(exc), SYNC_INTERVAL_S)

    def _settle(self, flight: Flight, now: float) -> None:
        outcome = flight.task.result()
        failed = settle(flight, outcome, self.spool, self.stats, self._keep)
        if flight.kind == "held":
            self._settle_held(flight, failed)
        elif flight.kind == "replay":
            self.hold.room_made()
        if failed:
            self.stats.failed_rounds += 1
            self._stale = True  # the broker may have come back with other topics or partition counts
            fatal = {tp: exc for tp, exc in failed.items() if not is_retriable(exc)}
            self.stats.failed_batches["retriable"] += len(failed) - len(fatal)
            if fatal:
                (topic, partition), exc = next(iter(fatal.items()))
                self._refused(f"{topic} partition {partition}: {describe(exc)}", len(fatal))
            else:
                self._fatal_rounds = 0
            why = f"{len(failed)} of {len(outcome)} batches failed: {describe(next(iter(failed.values())))}"
            if self.fatal is None:
                self._fail(why)
            else:  # given up: no retry to schedule
                self._failures += 1
                self.stats.last_error = why
        else:
            self._fatal_rounds = 0
            if flight.spilling:  # long unanswered: the broker may have been replaced meanwhile
                self._stale = True
            if self._failures:
                log.info("Kafka takes records again after %d failed rounds", self._failures)
                self._failures = 0
                self._retry_at = now
        if flight.kind == "replay" and not self.spool.depth:
            log.info("spool drained: records go straight to Kafka again")

    def _settle_held(self, flight: Flight, failed: dict[tuple[str, int], BaseException]) -> None:
        """Failed records of a held round go back to the front of the hold; an empty hold frees its slot."""
        assert self._held is not None
        slot, records = self._held
        records.extendleft(reversed([record for record, tp in flight.items if tp in failed]))
        if not records:
            self.spool.release(slot)
            self._held = None

    def _refused(self, why: str, requests: int) -> None:
        """Kafka refused requests (a start, a metadata fetch, a round's batches) in a way retrying cannot fix:
        count them, say so loudly; give up after ``fatal_after`` refusals in a row."""
        self.stats.failed_batches["fatal"] += requests
        self._fatal_rounds += 1
        if self._fatal_rounds < self.fatal_after:
            log.error(
                "Kafka refused %d requests with an error that sending again cannot fix (%s); attempt %d of %d",
                requests, why, self._fatal_rounds, self.fatal_after,
            )  # fmt: skip
            return
        self.fatal = why
        log.error(
            "Kafka refused us %d times (%s): giving up until the producer is restarted; every record "
            "not yet in Kafka stays in the spool (%d records now), nothing is dropped",
            self._fatal_rounds, why, self.spool.depth,
        )  # fmt: skip
        self._poke()

    def _fail(self, why: str) -> None:
        self._failures += 1
        delay = self.backoff.compute(self._failures)
        self._retry_at = asyncio.get_running_loop().time() + delay
        self.stats.last_error = why
        level = logging.WARNING if self._failures == 1 else logging.INFO
        log.log(level, "Kafka did not take a round (%s); spool holds %d, retry in %.1f s", why, self.spool.depth, delay)

    # --- shutdown -------------------------------------------------------------------------------
    async def _shutdown(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._metadata is not None:  # a round may start once the partition counts are known
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await asyncio.shield(self._metadata)
            flight = self._flight
            if flight is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await asyncio.shield(flight.task)
                if not flight.task.done():
                    break
                self._settle(flight, loop.time())
                self._flight = None
            if self.inbound and self._can_start() and loop.time() < deadline:
                self._flight = self._start_direct(loop.time())
                if self._flight is not None or self._metadata is not None:
                    continue
            break
        flight, self._flight = self._flight, None
        if flight is not None and flight.kind == "held":
            assert self._held is not None
            self._held[1].extendleft(reversed([record for record, _ in flight.items]))
        elif flight is not None:
            try:
                abandon(flight, self.spool, self.stats, lambda: self._spill(force=True))
            except OSError as exc:
                self.hold.dropped(len(flight.items), f"shutdown: {describe(exc)}")
        if self._held is not None:
            self._fill_held(loop.time())
            if self._held is not None:
                self.hold.dropped(len(self._held[1]), f"shutdown: {self.hold.error}")
                self._held = None
        self._spill(force=True)
        if self.inbound:
            self.hold.dropped(len(self.inbound), f"shutdown: {self.hold.error}")
            self.inbound.clear()
        self.hold.flush_log()
        try:
            self.spool.close()
        except OSError as exc:
            log.error("spool: closing failed (%s)", describe(exc))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, deadline - loop.time())):
                await self.backend.stop()
        if flight is not None:
            flight.task.cancel()
        log.info(
            "Kafka sink closed: %d acknowledged, %d spooled in all, %d left in the spool",
            self.stats.acked, self.stats.spooled, self.spool.depth,
        )  # fmt: skip
