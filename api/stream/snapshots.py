"""What a new subscriber gets first: the latest event of each (type, symbol) it subscribed to.

The producer keeps the last event per symbol in a Redis hash per family
(``latest:quotes``, ``latest:crypto.quotes`` ...; an order book's hash holds the
pair's whole book, ``r`` true, so a new subscriber starts from it). A subscribe reads them once, sends them ahead of the
live events, and drops live events that arrived while it was subscribing but
are not newer than the snapshot sent first (a client never sees time go back).
Kept apart from the connection handler: these are two questions of data, not
of the connection's state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Final

import orjson
import redis.asyncio
import redis.exceptions

from api.stream import protocol as p
from api.stream.hub import event_code
from tickpipe.names import latest_hash

log = logging.getLogger(__name__)

#: How long a subscribe waits for the snapshot hashes before it goes on without them.
SNAPSHOT_TIMEOUT_S: Final = 2.0
#: Families (each feed's words: quotes, crypto.orderbooks) whose last event is a state worth sending first
#: (a correction or cancel is not).
SNAPSHOT_FAMILIES: Final = frozenset(
    channels.feed.word(family.name)
    for channels in p.FEED_CHANNELS.values()
    for family in channels.feed.families
    if family.snapshot
)

#: (event code, symbol) -> the latest event's live payload.
Snapshots = dict[tuple[str, str], bytes]


async def latest_events(client: redis.asyncio.Redis, pairs: Iterable[tuple[p.Stream, str]]) -> Snapshots:
    """The latest event of each (type, symbol) of ``pairs`` (``*``: every symbol's); {} if Redis does not answer."""
    wanted: dict[str, dict[str, set[str]]] = {}  # family -> symbol -> codes
    for stream, symbol in pairs:
        if stream.family in SNAPSHOT_FAMILIES:
            wanted.setdefault(stream.family, {}).setdefault(symbol, set()).add(stream.code)
    found: Snapshots = {}
    try:
        async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
            for family, symbols in wanted.items():
                key = latest_hash(family)
                values: list[tuple[Any, Any]]
                if p.WILDCARD in symbols:
                    values = list((await client.hgetall(key)).items())
                else:
                    names = sorted(symbols)
                    values = list(zip(names, await client.hmget(key, names), strict=True))
                every = symbols.get(p.WILDCARD, set())
                for symbol, payload in values:
                    if not isinstance(payload, bytes):
                        continue
                    name = symbol.decode() if isinstance(symbol, bytes) else str(symbol)
                    code = event_code(payload).decode()
                    if code in symbols.get(name, ()) or code in every:
                        found[(code, name)] = payload
    except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
        log.warning("no snapshots for a subscribe, Redis did not answer: %s", exc)
    return found


def newer_than(snapshots: Snapshots, held: list[bytes]) -> list[bytes]:
    """The events of ``held`` (arrived while subscribing) newer than the snapshot of their type and symbol."""
    if not snapshots or not held:
        return held
    stamps = {key: orjson.loads(payload).get("t", "") for key, payload in snapshots.items()}
    keep = []
    for payload in held:
        data = orjson.loads(payload)
        stamp = stamps.get((data.get("T"), data.get("S")))
        if stamp is None or data.get("t", "") > stamp:  # fixed-width RFC 3339: text order is time order
            keep.append(payload)
    return keep
