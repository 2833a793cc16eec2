"""What waits to be sent to one WebSocket client: bounded, never blocking whoever fills it.

The hub appends event payloads from the Redis reader (``push``, O(1), no
await) and asks its :class:`Scheduler` (the process's
:class:`~api.stream.flusher.Flusher`) to write the client soon; when it
does (``flush``), everything pending goes out as one frame per at most
``FRAME_EVENTS`` events, through the client's sink. Under load a
frame simply holds more events, so the number of writes adapts to what the
machine can do instead of one write per event.

A client whose backlog reaches ``limit`` is over: ``push`` stops accepting,
frees the backlog and calls ``on_overflow`` once (the handler then sends 407
and closes). The backlog grows when the client's sink is not writable (its
socket buffer is full: the client reads too slowly), so a slow client costs
the others nothing but one list append per message until it is cut.

``held``: while a subscribe is being answered, new events wait behind the
subscription message and the snapshots (``front``), so a client always sees
the snapshot of a symbol before its updates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

#: Most events in one frame (a frame stays well under alpaca-py's 1 MiB limit).
FRAME_EVENTS: Final = 1_000


class Sink(Protocol):
    """Where a client's frames go: its socket directly, or ASGI sends."""

    @property
    def writable(self) -> bool: ...

    def write(self, frame: bytes) -> None: ...


class Scheduler(Protocol):
    """What an outbox needs of whoever writes it (the process's flusher): to be written, soon or at once."""

    def schedule(self, outbox: Outbox, *, urgent: bool = False) -> None: ...


class AsgiSink:
    """Frames sent one at a time through ASGI by :meth:`run`, a task of the session (the fallback)."""

    __slots__ = ("_binary", "_frames", "_send", "_wake", "on_writable")

    def __init__(self, send: Callable[[dict[str, object]], Awaitable[None]], *, binary: bool) -> None:
        self._send = send
        self._binary = binary
        self._frames: list[bytes] = []
        self._wake = asyncio.Event()
        self.on_writable: Callable[[], None] | None = None

    @property
    def writable(self) -> bool:
        return not self._frames

    def write(self, frame: bytes) -> None:
        self._frames.append(frame)
        self._wake.set()

    async def run(self) -> None:
        """Send until cancelled; a failed send (the client left) ends it with that error."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._frames:
                frame = self._frames[0]
                if self._binary:
                    await self._send({"type": "websocket.send", "bytes": frame})
                else:
                    await self._send({"type": "websocket.send", "text": frame.decode()})
                del self._frames[0]
            if self.on_writable is not None:
                self.on_writable()


class Outbox:
    __slots__ = (
        "closed",
        "encode",
        "flusher",
        "front",
        "held",
        "last_flush",
        "limit",
        "on_overflow",
        "pending",
        "scheduled",
        "sink",
    )

    def __init__(
        self,
        limit: int,
        on_overflow: Callable[[], None],
        flusher: Scheduler,
        encode: Callable[[list[bytes]], bytes],
    ) -> None:
        self.limit = limit
        self.on_overflow = on_overflow
        self.flusher = flusher
        self.encode = encode
        self.sink: Sink | None = None  # nothing is written until the session attaches one
        self.pending: list[bytes] = []
        self.front: list[bytes] = []  # encoded frames that go before any pending event
        self.held = False
        self.closed = False
        self.scheduled = False  # waiting in the flusher
        self.last_flush = float("-inf")

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
        if not self.scheduled and not self.held:
            self.flusher.schedule(self)

    def push_front(self, frame: bytes) -> None:
        """A control frame (a reply, a subscription list, snapshots): written at once, before events."""
        self.front.append(frame)
        self.flusher.schedule(self, urgent=True)

    def release(self) -> None:
        self.held = False
        self.flusher.schedule(self, urgent=True)

    def writable_again(self) -> None:
        """The sink drained: what piled up meanwhile goes now."""
        if self.front or self.pending:
            self.flusher.schedule(self, urgent=True)

    def flush(self) -> int:
        """Write what can be written now; how many events went. Called by the flusher only."""
        sink = self.sink
        if sink is None or self.closed or not sink.writable:
            return 0
        if self.front:
            front, self.front = self.front, []
            for frame in front:
                sink.write(frame)
        batch = self.pending
        if self.held or not batch:
            return 0
        self.pending = []
        if len(batch) <= FRAME_EVENTS:
            sink.write(self.encode(batch))
        else:
            for first in range(0, len(batch), FRAME_EVENTS):
                sink.write(self.encode(batch[first : first + FRAME_EVENTS]))
        return len(batch)
