"""Which symbols exist: those the producer was told to carry, or has a last event of.

A symbol exists when it is in the producer's symbol set (``tickpipe:symbols``,
what SUBSCRIBED_SYMBOLS and ``POST /symbols`` listed) or in one of the
``latest:*`` snapshot hashes (it has traded or quoted). Each feed has its own
directory over its own producer's set and hashes (crypto:
``tickpipe:symbols:crypto``, ``latest:crypto.quotes`` ...).

Why the stream asks: a Redis channel per (family, symbol) is what a
subscribe costs an API process (a SUBSCRIBE, a registration, a slot under
WS_MAX_REDIS_CHANNELS, and Redis's own memory). A client naming a thousand
made-up symbols would take a thousand of those slots from every other
client of the process. Symbols nobody has ever traded or quoted are
therefore only noted (the hub *parks* them) and cost a channel once they
appear here.

The hub asks two things: which of these symbols exist (:meth:`known`, one
script run per chunk, answering names only, never the snapshots), and a
cheap version of the hashes (:meth:`version`, their lengths) so that it looks
for parked symbols again only when a new symbol has appeared somewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import redis.asyncio

from tickpipe.feeds import STOCK, Feed
from tickpipe.names import SYMBOLS_KEY, latest_hash, qualified


def hashes_of(feed: Feed) -> tuple[str, ...]:
    """The hashes that say a symbol of ``feed`` exists: those of families with a snapshot (quotes, trades, bars)."""
    return tuple(latest_hash(feed.word(family.name)) for family in feed.families if family.snapshot)


def keys_of(feed: Feed) -> tuple[str, ...]:
    """Where a symbol's existence is written: the feed's producer's set first, then its hashes."""
    return (qualified(SYMBOLS_KEY, feed.qualifier), *hashes_of(feed))


#: The stock feed's hashes and keys.
HASHES: Final = hashes_of(STOCK)
KEYS: Final = keys_of(STOCK)
#: Symbols per script run: each run blocks Redis, so keep it short.
CHUNK: Final = 1_000
_KNOWN = """
local out = {}
for _, symbol in ipairs(ARGV) do
  if redis.call('SISMEMBER', KEYS[1], symbol) == 1 then
    out[#out + 1] = symbol
  else
    for i = 2, #KEYS do
      if redis.call('HEXISTS', KEYS[i], symbol) == 1 then
        out[#out + 1] = symbol
        break
      end
    end
  end
end
return out
"""


class Directory(Protocol):
    """What the hub needs to know of symbols; both may raise a Redis or OS error."""

    async def known(self, symbols: Sequence[str]) -> set[str]: ...

    async def version(self) -> tuple[int, ...]: ...

    async def snapshots(self, symbol: str) -> list[bytes]: ...


class LatestDirectory:
    """:class:`Directory` over the symbol set and snapshot hashes one feed's producer writes."""

    def __init__(self, client: redis.asyncio.Redis, feed: Feed = STOCK) -> None:
        self._client = client
        self._script = client.register_script(_KNOWN)
        self._keys = keys_of(feed)
        self._set, self._hashes = self._keys[0], self._keys[1:]

    async def known(self, symbols: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for first in range(0, len(symbols), CHUNK):
            names = await self._script(keys=list(self._keys), args=list(symbols[first : first + CHUNK]))
            found.update(name.decode() if isinstance(name, bytes) else str(name) for name in names)
        return found

    async def version(self) -> tuple[int, ...]:
        """The number of symbols in the set and each hash: it grows when a symbol appears for the first time."""
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.scard(self._set)
            for key in self._hashes:
                pipe.hlen(key)
            return tuple(int(n) for n in await pipe.execute())

    async def snapshots(self, symbol: str) -> list[bytes]:
        """The last event of ``symbol`` in each snapshot hash: what a client parked on it gets first."""
        async with self._client.pipeline(transaction=False) as pipe:
            for key in self._hashes:
                pipe.hget(key, symbol)
            return [payload for payload in await pipe.execute() if isinstance(payload, bytes)]
