"""The live path: every event PUBLISHed on its Redis channel, and the latest per symbol in a hash.

Fire and forget: the read loop appends to a bounded queue and returns; the
sink's own task sends pipelined batches (the snapshot ``HSET`` first, then
one ``PUBLISH`` per event, so a reader that subscribes and then reads the
snapshot misses nothing). A stale quote is worthless, so under pressure the
*oldest* updates are dropped, each counted by reason:

- ``queue_full``: Redis too slow or away, the queue overflowed;
- ``redis_down``: the batch being written when the connection failed;
- ``redis_error``: Redis refused a command (counted per refused command).

When Redis comes back the sink reconnects by itself and carries on.

A feed's sink names its channels and hashes by the feed's words (``quotes``; ``crypto.quotes``).
A news story (``Transcoded.channels``) is published once on the channel of each symbol it names
(``news:AAPL``, ``news:TSLA``; ``news:`` when it names none, which only ``*`` reaches), with no
snapshot hash: Alpaca sends no last story on subscribe.
Order books (crypto ``o``): every message is published as it came, and the snapshot hash holds the
latest *full* book per pair, the last snapshot (``r``) with every update since applied (:class:`Books`;
applied as events are offered, so a dropped live update does not corrupt it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from producer.errors import describe
from producer.redis_wire import RespConnection, pack
from producer.transcode import Transcoded
from tickpipe.backoff import EqualJitterBackoff
from tickpipe.names import FAMILY_OF, channel, latest_hash

log = logging.getLogger(__name__)

Connect = Callable[[str], Awaitable[RespConnection]]


class Books:
    """The latest full order book per symbol: a snapshot (``r`` true) replaces it, an update's levels
    change it (size 0 removes the price); updates before a symbol's first snapshot are ignored."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
        self.stamps: dict[str, Any] = {}

    def apply(self, live: bytes) -> None:
        message = orjson.loads(live)
        symbol = message["S"]
        if message.get("r"):
            book = self.books[symbol] = ({}, {})
        else:
            found = self.books.get(symbol)
            if found is None:
                return
            book = found
        for side, levels in zip(book, (message.get("b") or (), message.get("a") or ()), strict=True):
            for level in levels:
                if level["s"] == 0:
                    side.pop(level["p"], None)
                else:
                    side[level["p"]] = level["s"]
        self.stamps[symbol] = message["t"]

    def full(self, symbol: str) -> bytes | None:
        """The symbol's whole book as a snapshot message (bids best first, then asks best first)."""
        book = self.books.get(symbol)
        if book is None:
            return None
        bids, asks = book
        return orjson.dumps(
            {
                "T": "o",
                "S": symbol,
                "t": self.stamps[symbol],
                "b": [{"p": p, "s": bids[p]} for p in sorted(bids, reverse=True)],
                "a": [{"p": p, "s": asks[p]} for p in sorted(asks)],
                "r": True,
            }
        )


class LiveSink:
    """Redis channels and snapshot hashes behind a drop-oldest queue; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 50_000,
        batch_max: int = 5_000,
        write_timeout: float = 5.0,
        retry_max: float = 2.0,
        connect: Connect = RespConnection.open,
        words: Mapping[str, str] = FAMILY_OF,
        book_codes: frozenset[str] = frozenset(),
        routed: bool = False,
    ) -> None:
        """``routed``: the feed's events carry channels of their own (``Transcoded.channels``, a news story's
        symbols), packed by :meth:`_pack_routed`; the others by :meth:`_pack`, untouched by that."""
        self.url = url
        #: Type code -> its family's word in channels and hashes (the feed's ``Feed.word_of``).
        self.words = dict(words)
        self.book_codes = book_codes
        self.books: Books | None = Books() if book_codes else None
        self.queue: deque[Transcoded] = deque(maxlen=queue_size)
        self.batch_max = batch_max
        self.write_timeout = write_timeout
        self.backoff = EqualJitterBackoff.up_to(retry_max, base=0.05)
        self.connect = connect
        self.published = 0
        self.dropped: Counter[str] = Counter()
        self.connected = False
        self.last_error: str | None = None
        self._conn: RespConnection | None = None
        self._signal: asyncio.Future[None] | None = None
        self._stopping = False
        self._publish_heads: dict[tuple[str, str], bytes] = {}
        self._packer: Callable[[list[Transcoded]], tuple[bytes, int]] = self._pack_routed if routed else self._pack

    # --- the read loop's side -----------------------------------------------------------------
    def offer(self, events: Sequence[Transcoded]) -> None:
        """Queue events for Redis; the oldest fall out (and are counted) when the queue is full."""
        queue = self.queue
        before = len(queue)
        queue.extend(events)
        books = self.books
        if books is not None:
            codes = self.book_codes
            for event in events:
                if event.type_code in codes:
                    books.apply(event.live)
        overflow = before + len(events) - len(queue)
        if overflow:
            self.dropped["queue_full"] += overflow
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    def stop(self) -> None:
        self._stopping = True
        if self._signal is not None and not self._signal.done():
            self._signal.set_result(None)

    # --- the sink's task ----------------------------------------------------------------------
    async def run(self, shutdown_timeout: float = 5.0) -> None:
        """Publish until :meth:`stop`, then flush what is queued within ``shutdown_timeout``."""
        attempt = 0
        try:
            while not self._stopping:
                if not self.queue:
                    await self._wait()
                    continue
                if self._conn is None:
                    attempt += 1
                    if not await self._reconnect(attempt):
                        await self._pause(self.backoff.compute(attempt))
                        continue
                    attempt = 0
                await self._send_batch()
        finally:
            await self._flush(asyncio.get_running_loop().time() + shutdown_timeout)

    async def _wait(self) -> None:
        self._signal = signal = asyncio.get_running_loop().create_future()
        if not self.queue and not self._stopping:
            await signal

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if stopped (new events do not cut it short)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                while not self._stopping:
                    self._signal = loop.create_future()
                    await self._signal

    async def _reconnect(self, attempt: int) -> bool:
        try:
            self._conn = await self.connect(self.url)
        except (OSError, TimeoutError, Exception) as exc:
            self.last_error = describe(exc)
            level = logging.WARNING if attempt == 1 else logging.DEBUG
            log.log(level, "Redis unreachable (%s); live updates are dropped oldest-first meanwhile", self.last_error)
            return False
        self.connected = True
        log.info("Redis connected (%s)", self.url.split("@")[-1])
        return True

    async def _send_batch(self) -> None:
        assert self._conn is not None
        queue = self.queue
        batch = [queue.popleft() for _ in range(min(len(queue), self.batch_max))]
        payload, commands = self._packer(batch)
        try:
            async with asyncio.timeout(self.write_timeout):
                errors = await self._conn.execute(payload, commands)
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.dropped["redis_down"] += len(batch)
            self.last_error = describe(exc)
            log.warning(
                "Redis connection lost (%s): %d live updates dropped; reconnecting", self.last_error, len(batch)
            )
            await self._disconnect()
            return
        if errors:
            self.dropped["redis_error"] += errors
            log.error("Redis refused %d commands (%s)", errors, self._conn.last_error)
        self.published += len(batch)

    def _pack(self, batch: list[Transcoded]) -> tuple[bytes, int]:
        """HSET of each family's latest per symbol, then one PUBLISH per event: one buffer."""
        heads = self._publish_heads
        parts: list[bytes] = []
        add = parts.append
        latest: dict[str, dict[str, bytes]] = {}  # family -> symbol -> its last event
        family_of = self.words
        for event in batch:
            code, symbol, live = event.type_code, event.symbol, event.live
            head = heads.get((code, symbol))
            if head is None:
                if len(heads) > 50_000:
                    heads.clear()
                name = channel(family_of[code], symbol).encode()
                head = heads[(code, symbol)] = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(name), name)
            add(head)
            add(b"$%d\r\n%s\r\n" % (len(live), live))
            family = latest.get(family_of[code])
            if family is None:
                family = latest[family_of[code]] = {}
            family[symbol] = live
        if self.books is not None:  # a book's hash holds its whole book, not the last message
            for code in self.book_codes:
                last_books = latest.get(family_of[code], {})
                for symbol in last_books:
                    whole = self.books.full(symbol)
                    if whole is not None:
                        last_books[symbol] = whole
        hsets = [
            pack(b"HSET", latest_hash(name).encode(), *(x for s, v in last.items() for x in (s.encode(), v)))
            for name, last in latest.items()
        ]
        return b"".join(hsets) + b"".join(parts), len(hsets) + len(batch)

    def _pack_routed(self, batch: list[Transcoded]) -> tuple[bytes, int]:
        """A sink of events with channels of their own (``routed``, news): one PUBLISH of each event on the
        channel of each of its suffixes (a story on each of its symbols'), in order; no snapshot hash."""
        parts: list[bytes] = []
        words = self.words
        for event in batch:
            word, live = words[event.type_code], event.live
            body = b"$%d\r\n%s\r\n" % (len(live), live)
            for suffix in (event.symbol,) if event.channels is None else event.channels:
                name = channel(word, suffix).encode()
                parts.append(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(name), name))
                parts.append(body)
        return b"".join(parts), len(parts) // 2

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self.connected = False
        if conn is not None:
            await conn.close()

    async def _flush(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while self.queue and self._conn is not None and loop.time() < deadline:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._send_batch()
            except TimeoutError:
                break
        if self.queue:
            self.dropped["shutdown"] += len(self.queue)
            log.warning("shutdown: %d live updates not sent to Redis", len(self.queue))
            self.queue.clear()
        await self._disconnect()
