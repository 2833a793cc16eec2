"""Per-instance fan-out: Redis channels subscribed on demand, counted, and released when unused.

Registrations are kept as ``redis name -> event type -> outboxes``: the name
is a channel (``quotes:AAPL``) or, for the ``*`` wildcard, a pattern
(``quotes:*``); the event type separates minute, updated and daily bars,
which share ``bars:{SYMBOL}``. The first registration of a name subscribes it
in Redis, the last one leaving unsubscribes it, so an instance only receives
what its own clients want.

A client subscribed to both ``AAPL`` and ``*`` would get each AAPL event
twice (once per Redis subscription); plain-channel deliveries skip clients
that also hold the family's wildcard.

Payloads travel as the bytes Redis gave: one shared ``bytes`` object per
event, whatever the number of clients.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson

from api.metrics import ApiMetrics
from api.stream.flusher import Flusher
from api.stream.outbox import Outbox
from api.stream.protocol import WILDCARD, Stream
from api.stream.pubsub import RedisSubscriber
from tickpipe.names import channel

log = logging.getLogger(__name__)

_PREFIX = b'{"T":"'


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
        self, redis_url: str, metrics: ApiMetrics, *, flush_interval: float = 0.02, ping_interval: float = 5.0
    ) -> None:
        self.metrics = metrics
        self.flusher = Flusher(flush_interval, metrics.stream)
        self._subs: dict[bytes, dict[bytes, set[Outbox]]] = {}
        self._wildcards = 0  # registered patterns: plain deliveries check for duplicates only when > 0
        self.subscriber = RedisSubscriber(redis_url, self.deliver, on_state=self._on_state, ping_interval=ping_interval)

    async def start(self) -> None:
        await self.subscriber.start()

    async def stop(self) -> None:
        await self.subscriber.stop()
        self.flusher.close()

    @property
    def redis_names(self) -> set[bytes]:
        """Channels and patterns registered (what this instance wants from Redis)."""
        return set(self._subs)

    def clients_of(self, stream: Stream, symbol: str) -> int:
        return len(self._subs.get(redis_name(stream, symbol), {}).get(stream.code.encode(), ()))

    async def add(self, outbox: Outbox, pairs: Iterable[tuple[Stream, str]]) -> bool:
        """Register the outbox; True once Redis confirmed every channel it needs (False while Redis is down)."""
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
        for outbox in targets:
            outbox.push(payload)

    def _on_state(self, connected: bool) -> None:
        self.metrics.redis_connected.set(1 if connected else 0)
        if connected and self.subscriber.connections > 1:
            self.metrics.redis_reconnects.inc()
