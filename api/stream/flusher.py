"""When each client's outbox is written: at once after a quiet spell, then at most once per interval.

One flusher per API process replaces a sender task and a timer per client.
A client whose last frame left ``interval`` ago or more is written on the
next turn of the event loop (after the whole Redis burst being delivered,
so a burst is one frame); a client written more recently waits until its
interval is up. Waiting clients sit in buckets of ``resolution`` seconds,
and one timer serves the earliest bucket. Each client's writes therefore
keep their own phase: under load the writes of 1,000 clients spread evenly
over the interval instead of arriving as one burst per tick, which would
delay the last client of every tick by the time to write all the others.

``interval`` (``WS_FLUSH_INTERVAL_MS``) trades latency for writes: every
write is a system call, and at 1,000 clients each receiving 100 events a
second, 20 ms means at most 50 frames a second per client instead of 100.

The interval adapts to load (``WS_FLUSH_WRITES_PER_S``): a few busy clients
are written as soon as their data arrives, since their writes cost little,
and only as more clients are busy does each wait, so the process's writes
stay near the budget. With ``A`` clients written in the last window and a
budget of ``B`` writes a second, each client waits ``A / B`` at most
(:func:`adaptive_interval`), never more than ``interval``: 100 busy clients
at 20,000 writes/s wait 5 ms, 2,500 wait the full 20 ms. Budget 0 keeps
``interval`` fixed.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Final

from api.metrics import StreamCounts
from api.stream.outbox import FRAME_EVENTS, Outbox

#: Width of a waiting bucket: the timer's granularity.
RESOLUTION_S: Final = 0.002
#: How often the adaptive interval is worked out again, from the clients written since.
WINDOW_S: Final = 0.5


def adaptive_interval(active: int, writes_per_s: float, ceiling: float) -> float:
    """How long a client waits between writes so that ``active`` busy clients stay within the write budget.

    Each client written at most once per interval ``i`` makes at most ``active / i`` writes a
    second; the budget then gives ``i = active / writes_per_s``, capped at ``ceiling``.
    A budget of 0 (or less) means no adapting: ``ceiling`` always.
    """
    if writes_per_s <= 0:
        return ceiling
    return min(ceiling, active / writes_per_s)


class Flusher:
    def __init__(
        self,
        interval: float,
        counts: StreamCounts,
        *,
        resolution: float = RESOLUTION_S,
        writes_per_s: float = 0.0,
        window: float = WINDOW_S,
    ) -> None:
        """``interval``: the longest a busy client waits; ``writes_per_s``: the budget it adapts to (0: fixed)."""
        self.ceiling = interval
        self.writes_per_s = writes_per_s
        #: The wait between two writes of one client now (the ceiling until the first window is counted).
        self.interval = interval if writes_per_s <= 0 else 0.0
        self.window = window
        self._window_start = -math.inf
        self._active = 0  # clients written at least once since _window_start
        self.resolution = resolution
        self.counts = counts
        self._soon: list[Outbox] = []
        self._soon_handle: asyncio.Handle | None = None
        self._buckets: dict[int, list[Outbox]] = {}
        self._ticks: list[int] = []  # heap of the buckets' numbers
        self._timer: asyncio.Handle | None = None
        #: The bucket the timer is armed for, kept here: uvloop's call_at for a time already past returns a
        #: plain Handle, which has no when() to read it back from.
        self._timer_tick: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def schedule(self, outbox: Outbox, *, urgent: bool = False) -> None:
        """Have ``outbox`` written: soon if urgent or its interval is up, else when it is."""
        loop = self._loop or self._bind()
        due = outbox.last_flush + self.interval
        if urgent or due <= loop.time():
            # An outbox may then be both here and in a bucket; the second flush finds nothing to write.
            outbox.scheduled = True
            self._soon.append(outbox)
            if self._soon_handle is None:
                self._soon_handle = loop.call_soon(self._flush_soon)
            return
        if outbox.scheduled:
            return
        outbox.scheduled = True
        tick = math.ceil(due / self.resolution)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = []
            heapq.heappush(self._ticks, tick)
            if self._timer_tick is None or tick < self._timer_tick:
                self._arm(loop, tick)
        bucket.append(outbox)

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    def close(self) -> None:
        for handle in (self._soon_handle, self._timer):
            if handle is not None:
                handle.cancel()
        self._soon_handle = self._timer = None
        self._timer_tick = None
        self._soon.clear()
        self._buckets.clear()
        self._ticks.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_tick = tick
        self._timer = loop.call_at(tick * self.resolution, self._flush_due)

    def _flush_soon(self) -> None:
        self._soon_handle = None
        outboxes, self._soon = self._soon, []
        self._write(outboxes, asyncio.get_running_loop().time())

    def _flush_due(self) -> None:
        self._timer = self._timer_tick = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        ticks = self._ticks
        while ticks and ticks[0] * self.resolution <= now:
            self._write(self._buckets.pop(heapq.heappop(ticks)), now)
        if ticks:
            self._arm(loop, ticks[0])

    def _write(self, outboxes: list[Outbox], now: float) -> None:
        events = frames = 0
        window_start = self._window_start
        for outbox in outboxes:
            outbox.scheduled = False
            sent = outbox.flush()
            if sent:
                if outbox.last_flush <= window_start:
                    self._active += 1  # its first write of this window
                outbox.last_flush = now
                events += sent
                frames += -(-sent // FRAME_EVENTS)
        if now - window_start >= self.window:
            self._adapt(now)
        counts = self.counts
        counts.messages_sent += events
        counts.frames_sent += frames

    def _adapt(self, now: float) -> None:
        """Start a new window, the interval worked out from the clients written in the one that ends."""
        if self.writes_per_s > 0 and self._window_start != -math.inf:
            self.interval = adaptive_interval(self._active, self.writes_per_s, self.ceiling)
        self._window_start, self._active = now, 0
