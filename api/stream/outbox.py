"""What waits to be sent to one WebSocket client: bounded, never blocking whoever fills it.

The hub appends event payloads from the Redis reader (``push``, O(1), no
await); the client's own sender task takes everything pending and sends it as
one frame (``drain``). Under load frames simply grow, so the number of sends
adapts to what the machine can do instead of one send per event.

A client whose backlog reaches ``limit`` is over: ``push`` stops accepting,
frees the backlog and calls ``on_overflow`` once (the handler then sends 407
and closes). A slow client therefore costs the others nothing but that one
list append per message until it is cut.

``held``: while a subscribe is being answered, new events wait behind the
subscription message and the snapshots (``front``), so a client always sees
the snapshot of a symbol before its updates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

#: Most events in one frame (a frame stays well under alpaca-py's 1 MiB limit).
FRAME_EVENTS: Final = 1_000

Frame = str | bytes


class Outbox:
    __slots__ = ("closed", "flush_at", "front", "held", "limit", "on_overflow", "pausing", "pending", "wake")

    def __init__(self, limit: int, on_overflow: Callable[[], None]) -> None:
        self.limit = limit
        #: While pausing between frames, this many events end the pause (far from the limit).
        self.flush_at = max(1, min(FRAME_EVENTS, limit // 2))
        self.pausing = False
        self.on_overflow = on_overflow
        self.pending: list[bytes] = []
        self.front: list[Frame] = []  # encoded frames that go before any pending event
        self.held = False
        self.closed = False
        self.wake = asyncio.Event()

    def push(self, payload: bytes) -> None:
        """One event payload from Redis; never blocks, never raises."""
        if self.closed:
            return
        if len(self.pending) >= self.limit:
            self.closed = True
            self.pending.clear()
            self.on_overflow()
            return
        self.pending.append(payload)
        if not self.held and (not self.pausing or len(self.pending) >= self.flush_at):
            self.wake.set()

    def push_front(self, frame: Frame) -> None:
        self.front.append(frame)
        self.wake.set()

    def release(self) -> None:
        self.held = False
        self.wake.set()

    async def drain(
        self,
        send: Callable[[Frame], Awaitable[None]],
        encode: Callable[[list[bytes]], Frame],
        sent: Callable[[int], None],
        interval: float = 0.0,
    ) -> None:
        """Send forever: front frames first, then pending events in frames of at most FRAME_EVENTS.

        At most one frame of events per ``interval`` seconds: a busy client's
        events are gathered into fewer, larger frames (each send is a system
        call and a wake-up of the client), while the first event after a quiet
        spell goes out at once.
        """
        loop = asyncio.get_running_loop()
        last = float("-inf")
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.front:
                await send(self.front.pop(0))
            if not self.pending or self.held or self.closed:
                continue
            pause = last + interval - loop.time()
            if pause > 0:  # gather until the pause ends, a control frame comes or the backlog grows
                self.pausing = True
                timer = loop.call_later(pause, self.wake.set)
                try:
                    await self.wake.wait()
                finally:
                    timer.cancel()
                    self.pausing = False
                self.wake.clear()
                while self.front:
                    await send(self.front.pop(0))
            while self.pending and not self.held and not self.closed and not self.front:
                batch = self.pending
                if len(batch) > FRAME_EVENTS:
                    batch, self.pending = batch[:FRAME_EVENTS], batch[FRAME_EVENTS:]
                else:
                    self.pending = []
                await send(encode(batch))
                sent(len(batch))
            last = loop.time()
            if self.front or self.pending:
                self.wake.set()
