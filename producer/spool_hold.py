"""When the spool takes nothing (a full disk, ``SPOOL_MAX_BYTES``): hold records in memory, up to a bound.

The durable sink keeps records the spool refused where they were (its inbound
queue, or a slot's records) and tries the spool again every ``retry_s``
seconds, or at once when a replayed round frees room. Beyond ``limit``
records held, the newest are dropped: each is counted in
``DurableStats.dropped["spool_full"]`` (``tickpipe_producer_dropped_total``
with ``sink="kafka"``) and logged at ERROR, at most every ``log_every_s``
seconds with what was dropped since. Kafka taking records directly drains the
hold too; nothing else is ever dropped on the durable path.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from producer.errors import describe
from producer.rounds import DurableStats
from producer.spool import Record

log = logging.getLogger(__name__)

#: Why records were dropped: the spool took nothing, or the sink's task died (nothing takes them at all).
SPOOL_FULL = "spool_full"
SINK_FAILED = "sink_failed"


class SpoolHold:
    """The spool's refusal as state: its error, when to try again, and the bound on what waits for it."""

    def __init__(self, limit: int, stats: DurableStats, *, retry_s: float = 1.0, log_every_s: float = 10.0) -> None:
        self.limit = limit
        self.stats = stats
        self.retry_s = retry_s
        self.log_every_s = log_every_s
        self.error: str | None = None  # why the spool (or the sink) takes nothing, while it does not
        self.retry_at = 0.0  # loop time
        self._logged_at = -float("inf")  # monotonic
        self._unlogged = 0
        self._why: str | None = None

    def due(self, now: float) -> bool:
        """Whether to try the spool (it has not refused, or it is time to try again)."""
        return self.error is None or now >= self.retry_at

    def refused(self, exc: OSError, now: float, waiting: int) -> None:
        """The spool refused a write; ``waiting`` records are held in memory for it."""
        first = self.error is None
        self.error = describe(exc)
        self.retry_at = now + self.retry_s
        if first:
            log.error(
                "spool refused %d records (%s): holding them in memory, up to %d (SPOOL_HOLD_EVENTS); beyond, "
                "the newest are dropped and counted; trying the spool again every %g s",
                waiting, self.error, self.limit, self.retry_s,
            )  # fmt: skip

    def room_made(self) -> None:
        """A replayed round freed room in the spool: try it at once."""
        self.retry_at = 0.0

    def cleared(self, written: int) -> None:
        """The spool took a write again."""
        if self.error is not None:
            log.warning("spool writable again (it refused: %s); %d held records written", self.error, written)
            self.error = None
        self.flush_log()

    def drained(self) -> None:
        """Nothing waits for the spool any more: Kafka took what it refused."""
        if self.error is not None:
            log.warning("nothing waits for the spool any more: Kafka took what it held (it refused: %s)", self.error)
            self.error = None
        self.flush_log()

    def bound(self, inbound: deque[Record], others: int = 0, reason: str = SPOOL_FULL) -> None:
        """Drop the newest of ``inbound`` beyond ``limit`` records held (``others`` held elsewhere)."""
        excess = min(len(inbound) + others - self.limit, len(inbound))
        if excess <= 0:
            return
        for _ in range(excess):
            inbound.pop()
        self.dropped(excess, self.error, reason)

    def dropped(self, count: int, why: str | None, reason: str = SPOOL_FULL) -> None:
        """Count ``count`` records lost; log at ERROR (at once, then at most every ``log_every_s``)."""
        if count <= 0:
            return
        self.stats.dropped[reason] += count
        self._unlogged += count
        self._why = f"{reason}: {why}"
        if time.monotonic() - self._logged_at >= self.log_every_s:
            self.flush_log()

    def flush_log(self) -> None:
        """Log the drops not logged yet."""
        if self._unlogged:
            log.error(
                "%d Kafka records dropped (%s): nothing could take them and the memory hold is full "
                "(SPOOL_HOLD_EVENTS=%d); %d dropped in all",
                self._unlogged, self._why, self.limit, sum(self.stats.dropped.values()),
            )  # fmt: skip
            self._unlogged = 0
            self._logged_at = time.monotonic()
