"""What waits to be sent to one WebSocket client: bounded, never blocking whoever fills it.

The hub appends event payloads from the Redis reader (``push``, O(1), no
await) and asks its :class:`Scheduler` (the process's
:class:`~api.stream.flusher.Flusher`) to write the client soon; when it
does (``flush``), everything pending goes out as one frame per at most
``FRAME_EVENTS`` events, through the client's sink. Under load a
frame simply holds more events, so the number of writes adapts to what the
machine can do instead of one write per event.

A client whose backlog reaches ``limit`` events, or ``max_bytes`` bytes, is
over: the outbox stops accepting, frees the backlog and calls ``on_overflow``
once (the handler then sends 407 and closes). The backlog grows when the
client's sink is not writable (its socket buffer is full: the client reads
too slowly), so a slow client costs the others nothing but one list append
per message until it is cut.

Bytes, not only events, and control frames too: a client can make the server
write without any market data at all (every ``unsubscribe`` is answered with
the whole subscription list, every malformed message with an error). Counted
only in events, a client that stopped reading and kept asking grew the
server's memory without limit and was never cut. Everything queued here, of
any kind, counts toward ``max_bytes``; since a flush hands at most that much
to a sink that was writable, what one client holds in the server is bounded
by about twice ``max_bytes`` plus the transport's high-water mark.

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
#: Bytes an outbox holds at most unless told otherwise (WS_CLIENT_QUEUE_BYTES's default).
MAX_BYTES: Final = 8 * 1024 * 1024


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
        "max_bytes",
        "on_overflow",
        "pending",
        "queued_bytes",
        "scheduled",
        "sink",
    )

    def __init__(
        self,
        limit: int,
        on_overflow: Callable[[], None],
        flusher: Scheduler,
        encode: Callable[[list[bytes]], bytes],
        *,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.on_overflow = on_overflow
        self.flusher = flusher
        self.encode = encode
        self.sink: Sink | None = None  # nothing is written until the session attaches one
        self.pending: list[bytes] = []
        self.front: list[bytes] = []  # encoded frames that go before any pending event
        self.queued_bytes = 0  # of pending and front together
        self.held = False
        self.closed = False
        self.scheduled = False  # waiting in the flusher
        self.last_flush = float("-inf")

    def _overflow(self) -> None:
        """Over a bound: free everything queued, accept nothing more, tell the session once."""
        self.closed = True
        self.pending.clear()
        self.front.clear()
        self.queued_bytes = 0
        self.on_overflow()

    def push(self, payload: bytes) -> None:
        """One event payload from Redis; never blocks, never raises."""
        if self.closed:
            return
        size = self.queued_bytes + len(payload)
        if len(self.pending) >= self.limit or size > self.max_bytes:
            self._overflow()
            return
        self.pending.append(payload)
        self.queued_bytes = size
        if not self.scheduled and not self.held:
            self.flusher.schedule(self)

    def push_front(self, frame: bytes) -> None:
        """A control frame (a reply, a subscription list, snapshots): written at once, before events.

        Counted like events: a client that stops reading and keeps sending
        actions is cut when its replies pass ``max_bytes``.
        """
        if self.closed:
            return
        size = self.queued_bytes + len(frame)
        if size > self.max_bytes:
            self._overflow()
            return
        self.front.append(frame)
        self.queued_bytes = size
        self.flusher.schedule(self, urgent=True)

    def retain(self, keep: list[bytes]) -> None:
        """Replace the pending events by ``keep`` (a subset of them), keeping the byte count right."""
        self.pending = keep
        self.queued_bytes = sum(map(len, self.front)) + sum(map(len, keep))

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
                self.queued_bytes -= len(frame)
                sink.write(frame)
        batch = self.pending
        if self.held or not batch:
            return 0
        self.pending = []
        self.queued_bytes = 0  # the front went just before
        if len(batch) <= FRAME_EVENTS:
            sink.write(self.encode(batch))
        else:
            for first in range(0, len(batch), FRAME_EVENTS):
                sink.write(self.encode(batch[first : first + FRAME_EVENTS]))
        return len(batch)
