"""Per-instance fan-out: Redis channels subscribed on demand, counted, and released when unused.

Registrations are kept as ``redis name -> event type -> outboxes``: the name
is a channel (``quotes:AAPL``) or, for the ``*`` wildcard, a pattern
(``quotes:*``); the event type separates minute, updated and daily bars,
which share ``bars:{SYMBOL}``. The first registration of a name subscribes it
in Redis, the last one leaving unsubscribes it, so an instance only receives
what its own clients want.

A client subscribed to both ``AAPL`` and ``*`` would get each AAPL event
twice (once per Redis subscription); plain-channel deliveries skip clients
that also hold the family's wildcard. A news story is published once on the
channel of each symbol it names (``news:AAPL``, ``news:TSLA``), so it reaches
a client by as many channels as it names of the client's symbols (and a ``*``
client once per channel): the hub remembers which outboxes got each of the
last :data:`ROUTED_MEMORY` such payloads and gives every client a story once,
as Alpaca does. Only families published on several channels pay for this
(``Family.channels``); the others are delivered as before.

Payloads travel as the bytes Redis gave: one shared ``bytes`` object per
event, whatever the number of clients.

Bounded: at most ``max_channels`` Redis names per process (a subscribe that
would need more raises :class:`ChannelLimit`, and the client gets 405).
Symbols the :class:`~api.stream.directory.Directory` does not know (never
traded or quoted) take no Redis name and no slot: they are *parked*, and a
watcher moves them to Redis once they appear (checking again only when the
snapshot hashes grew), so made-up symbols cost a set entry until they trade.
Each feed has its own directory (``Stream.feed``): a stock ticker and a crypto
pair are looked up where their own producer writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Final

import orjson
import redis.exceptions

from api.metrics import ApiMetrics
from api.stream.directory import Directory
from api.stream.flusher import Flusher
from api.stream.outbox import Outbox
from api.stream.protocol import WILDCARD, Stream
from api.stream.pubsub import RedisSubscriber
from tickpipe.feeds import FEEDS, STOCK
from tickpipe.names import channel

log = logging.getLogger(__name__)

_PREFIX = b'{"T":"'
#: How often parked symbols are looked for (only a length check unless a new symbol appeared).
PARK_CHECK_S: Final = 1.0
#: Channel families whose events are published on several channels (news: each symbol a story names).
ROUTED_FAMILIES: Final = frozenset(
    feed.word(family.name).encode() for feed in FEEDS for family in feed.families if family.channels is not None
)
#: Their event codes: a cheap first test, so that other deliveries never slice their channel name.
ROUTED_CODES: Final = frozenset(
    kind.code.encode() for feed in FEEDS for family in feed.families if family.channels is not None
    for kind in family.types
)  # fmt: skip
#: How many such payloads the hub remembers the recipients of: a story's channels are published in one
#: pipeline, so its copies arrive together; this covers any interleaving of other publishers by far.
ROUTED_MEMORY: Final = 1024


class ChannelLimit(Exception):
    """A subscribe would take this process past its Redis channel bound (WS_MAX_REDIS_CHANNELS)."""

    def __init__(self, limit: int, needed: int) -> None:
        super().__init__(
            f"this API instance carries at most {limit} Redis channels for all its clients; "
            f"this subscribe needs {needed} more than are free"
        )


def redis_name(stream: Stream, symbol: str) -> bytes:
    """Channel of one symbol, or the family's pattern for ``*`` (symbols are validated before this)."""
    return channel(stream.family, symbol).encode()


def event_code(payload: bytes) -> bytes:
    """The ``T`` of an encode_live payload: read from its first bytes, parsed only if it is not there."""
    if payload[:6] == _PREFIX:
        return payload[6:7]
    try:
        data = orjson.loads(payload)
    except ValueError:
        return b""
    kind = data.get("T") if isinstance(data, dict) else None
    return kind.encode() if isinstance(kind, str) else b""


class Hub:
    def __init__(
        self,
        redis_url: str,
        metrics: ApiMetrics,
        *,
        flush_interval: float = 0.02,
        flush_writes_per_s: float = 0.0,
        ping_interval: float = 5.0,
        directory: Directory | None = None,
        max_channels: int = 20_000,
        directories: Mapping[str, Directory] | None = None,
    ) -> None:
        """``directories``: which symbols of each feed (by name) exist; a feed without one has every symbol
        (nothing parked). ``directory``: the stock feed's, when ``directories`` does not name it."""
        self.metrics = metrics
        self.flusher = Flusher(flush_interval, metrics.stream, writes_per_s=flush_writes_per_s)
        self.directories: dict[str, Directory] = dict(directories or {})
        if directory is not None:
            self.directories.setdefault(STOCK.name, directory)
        self.max_channels = max_channels
        self._subs: dict[bytes, dict[bytes, set[Outbox]]] = {}
        #: (feed, unknown symbol) -> what waits for it
        self._parked: dict[tuple[str, str], dict[Stream, set[Outbox]]] = {}
        self._wildcards = 0  # registered patterns: plain deliveries check for duplicates only when > 0
        #: hash of a payload of a ROUTED_FAMILIES channel -> the outboxes it was given to
        self._routed: OrderedDict[int, set[Outbox]] = OrderedDict()
        self.subscriber = RedisSubscriber(redis_url, self.deliver, on_state=self._on_state, ping_interval=ping_interval)
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.subscriber.start()
        if self.directories:
            self._watcher = asyncio.create_task(self._watch_parked(), name="parked-symbols")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.subscriber.stop()
        self.flusher.close()

    @property
    def redis_names(self) -> set[bytes]:
        """Channels and patterns registered (what this instance wants from Redis)."""
        return set(self._subs)

    @property
    def parked_symbols(self) -> set[str]:
        """Symbols some client wants that do not exist yet (no Redis channel taken for them), of any feed."""
        return {symbol for _, symbol in self._parked}

    def outboxes_of(self, symbol: str) -> set[Outbox]:
        """Every client outbox registered for ``symbol``, in Redis or parked (a diagnostic: it walks every name)."""
        found: set[Outbox] = set()
        for (_, parked), waiting in self._parked.items():
            if parked == symbol:
                for members in waiting.values():
                    found |= members
        for name, codes in self._subs.items():
            if name.endswith(b":" + symbol.encode()):
                for members in codes.values():
                    found |= members
        return found

    def clients_of(self, stream: Stream, symbol: str) -> int:
        return len(self._subs.get(redis_name(stream, symbol), {}).get(stream.code.encode(), ()))

    async def add(self, outbox: Outbox, pairs: Iterable[tuple[Stream, str]]) -> bool:
        """Register the outbox; True once Redis confirmed every channel it needs (False while Redis is down).

        Raises :class:`ChannelLimit`, registering nothing, if the new channels would not fit.
        """
        pairs = list(pairs)
        unknown = await self._unknown(pairs)
        live = [(stream, symbol) for stream, symbol in pairs if (stream.feed, symbol) not in unknown]
        over = self._over({redis_name(stream, symbol) for stream, symbol in live})
        if over > 0:
            raise ChannelLimit(self.max_channels, over)
        for stream, symbol in pairs:
            if (stream.feed, symbol) in unknown:
                self._parked.setdefault((stream.feed, symbol), {}).setdefault(stream, set()).add(outbox)
        return await self._confirm(*self._enlist(outbox, live))

    def _over(self, names: set[bytes]) -> int:
        """How many Redis names past ``max_channels`` registering ``names`` would take (0 or less: they fit)."""
        return len(self._subs) + len(names - self._subs.keys()) - self.max_channels

    async def _unknown(self, pairs: list[tuple[Stream, str]]) -> set[tuple[str, str]]:
        """(feed, symbol) of ``pairs`` that exist nowhere yet; none of a feed with no directory, or one that cannot
        say."""
        asked: dict[str, set[str]] = {}
        for stream, symbol in pairs:
            if symbol != WILDCARD and stream.feed in self.directories and redis_name(stream, symbol) not in self._subs:
                asked.setdefault(stream.feed, set()).add(symbol)
        unknown: set[tuple[str, str]] = set()
        for feed, symbols in asked.items():
            try:
                missing = symbols - await self.directories[feed].known(sorted(symbols))
            except (redis.exceptions.RedisError, OSError) as exc:  # the bound on channels still holds
                log.warning("cannot tell which of %d symbols exist (%s); subscribing them all", len(symbols), exc)
                continue
            unknown.update((feed, symbol) for symbol in missing)
        return unknown

    def _enlist(self, outbox: Outbox, pairs: list[tuple[Stream, str]]) -> tuple[list[bytes], list[bytes]]:
        """Register at once (no await, so no removal can come between); the channels and patterns to confirm."""
        channels: list[bytes] = []
        patterns: list[bytes] = []
        for stream, symbol in pairs:
            name = redis_name(stream, symbol)
            codes = self._subs.get(name)
            if codes is None:
                codes = self._subs[name] = {}
                if symbol == WILDCARD:
                    self._wildcards += 1
            codes.setdefault(stream.code.encode(), set()).add(outbox)
            (patterns if symbol == WILDCARD else channels).append(name)
        self.metrics.redis_subscriptions.set(len(self._subs))
        return channels, patterns

    async def _confirm(self, channels: list[bytes], patterns: list[bytes]) -> bool:
        """Subscribe in Redis; True once Redis confirmed them all."""
        ok = True
        if channels:
            ok = await self.subscriber.subscribe(channels)
        if patterns:
            ok = await self.subscriber.subscribe(patterns, pattern=True) and ok
        return ok

    def remove(self, outbox: Outbox, pairs: Iterable[tuple[Stream, str]]) -> None:
        """Unregister; names nobody wants any more are unsubscribed in Redis."""
        channels: list[bytes] = []
        patterns: list[bytes] = []
        for stream, symbol in pairs:
            parked = self._parked.get((stream.feed, symbol))
            if parked is not None and stream in parked:
                parked[stream].discard(outbox)
                if not parked[stream]:
                    del parked[stream]
                if not parked:
                    del self._parked[(stream.feed, symbol)]
            name = redis_name(stream, symbol)
            codes = self._subs.get(name)
            if codes is None:
                continue
            code = stream.code.encode()
            members = codes.get(code)
            if members is not None:
                members.discard(outbox)
                if not members:
                    del codes[code]
            if not codes:
                del self._subs[name]
                if symbol == WILDCARD:
                    self._wildcards -= 1
                    patterns.append(name)
                else:
                    channels.append(name)
        self.metrics.redis_subscriptions.set(len(self._subs))
        if channels:
            self.subscriber.unsubscribe(channels)
        if patterns:
            self.subscriber.unsubscribe(patterns, pattern=True)

    async def _watch_parked(self) -> None:
        """Move parked symbols to Redis once they exist; look at a feed's only when its producer's set or a
        hash of it grew."""
        seen: dict[str, tuple[int, ...]] = {}
        while True:
            await asyncio.sleep(PARK_CHECK_S)  # a poll, not a synchronisation: Redis has no event for this
            for feed, directory in self.directories.items():
                parked = sorted(symbol for of, symbol in self._parked if of == feed)
                if not parked:
                    continue
                try:
                    version = await directory.version()
                    if version == seen.get(feed):
                        continue
                    seen[feed] = version
                    found = await directory.known(parked)
                    for symbol in sorted(found):
                        await self._unpark(feed, symbol, directory)
                except (redis.exceptions.RedisError, OSError) as exc:
                    log.debug("parked %s symbols not checked (%s)", feed, exc)
                    seen.pop(feed, None)

    async def _unpark(self, feed: str, symbol: str, directory: Directory) -> None:
        """Subscribe a parked symbol that exists now; its waiting clients first get its snapshots.

        The snapshots are read before the channels are subscribed, so none of
        them is older than an event a client gets: what trades in between is
        missed, as around any Redis subscribe, but the last state is not.
        """
        snapshots = await directory.snapshots(symbol)
        waiting = self._parked.get((feed, symbol))  # read again: clients may have left during the await
        if not waiting:
            return
        if self._over({redis_name(stream, symbol) for stream in waiting}) > 0:
            log.warning("%s exists now, but its channels would pass WS_MAX_REDIS_CHANNELS; it stays parked", symbol)
            return
        del self._parked[(feed, symbol)]
        channels: list[bytes] = []
        for stream, outboxes in waiting.items():
            wanted = [payload for payload in snapshots if event_code(payload) == stream.code.encode()]
            for outbox in outboxes:
                for payload in wanted:
                    outbox.push(payload)
                channels += self._enlist(outbox, [(stream, symbol)])[0]
        await self._confirm(list(dict.fromkeys(channels)), [])

    def deliver(self, name: bytes, payload: bytes, pattern: bytes | None) -> None:
        """Called by the subscriber for each Redis message: append it to every interested outbox."""
        self.metrics.stream.redis_messages += 1
        codes = self._subs.get(name if pattern is None else pattern)
        if not codes:
            return
        code = event_code(payload)
        targets = codes.get(code)
        if not targets:
            return
        if pattern is None and self._wildcards:
            wild = self._subs.get(name[: name.find(b":") + 1] + b"*")
            if wild and code in wild:
                targets = targets - wild[code]
        if code in ROUTED_CODES and name[: name.find(b":")] in ROUTED_FAMILIES:
            targets = self._once(payload, targets)
        for outbox in targets:
            outbox.push(payload)

    def _once(self, payload: bytes, targets: set[Outbox]) -> set[Outbox]:
        """The outboxes of ``targets`` that have not had this payload yet (an event of several channels)."""
        key = hash(payload)
        given = self._routed.get(key)
        if given is None:
            given = self._routed[key] = set()
            if len(self._routed) > ROUTED_MEMORY:
                self._routed.popitem(last=False)
        fresh = targets - given
        given |= fresh
        return fresh

    def _on_state(self, connected: bool) -> None:
        self.metrics.redis_connected.set(1 if connected else 0)
        if connected and self.subscriber.connections > 1:
            self.metrics.redis_reconnects.inc()
