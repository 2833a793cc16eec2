"""Which symbols the producer subscribes to: SUBSCRIBED_SYMBOLS plus those added at run time.

Run-time additions (``POST /symbols``) live in a Redis set, so a restarted
producer resumes the same subscription. ``*`` in SUBSCRIBED_SYMBOLS means
every symbol; additions are still kept, for the day the list is narrowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

import redis.asyncio
from redis.exceptions import RedisError

from tickpipe.backoff import EqualJitterBackoff
from tickpipe.names import SYMBOLS_KEY, TOPIC_PREFIX, qualified
from tickpipe.settings import validate_symbol

log = logging.getLogger(__name__)


def symbols_key(prefix: str, qualifier: str = "") -> str:
    """The Redis set of run-time symbols: ``tickpipe:symbols``, or ``<prefix>symbols`` for another prefix;
    a qualified feed's (``Feed.qualifier``) has its own, ``tickpipe:symbols:crypto``."""
    return qualified(SYMBOLS_KEY if prefix == TOPIC_PREFIX else f"{prefix}symbols", qualifier)


class SymbolRegistry:
    """The configured symbols and the run-time ones, the latter mirrored in a Redis set."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        configured: Sequence[str],
        key: str = SYMBOLS_KEY,
        validate: Callable[[str], str] = validate_symbol,
    ) -> None:
        self.client = client
        self.validate = validate  # the feed's: a ticker (validate_symbol), a crypto pair (validate_pair)
        self.configured = list(configured)
        self.key = key
        self.runtime: list[str] = []
        self.loaded = False

    @property
    def all_symbols(self) -> bool:
        return "*" in self.configured

    def current(self) -> list[str]:
        """What to subscribe to: ``["*"]``, or the configured symbols then the added ones."""
        if self.all_symbols:
            return ["*"]
        return self.configured + [s for s in self.runtime if s not in self.configured]

    async def load(self) -> list[str]:
        """Read the run-time set; return the symbols it adds to the subscription."""
        raw = await self.client.smembers(self.key)
        members = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in raw)
        before = set(self.current())
        self.runtime = [m for m in members if m not in self.runtime] + self.runtime
        self.loaded = True
        added = [s for s in self.current() if s not in before]
        if members:
            log.info("resuming %d run-time symbols from Redis %s", len(members), self.key)
        return added

    async def load_when_possible(self, on_added: Callable[[list[str]], Awaitable[None]], retry: float = 2.0) -> None:
        """Keep trying :meth:`load` (Redis may be down at start), waiting up to ``retry`` s; subscribe what it adds."""
        backoff = EqualJitterBackoff.up_to(retry, base=0.25)
        attempt = 0
        while not self.loaded:
            try:
                added = await self.load()
            except (RedisError, OSError) as exc:
                attempt += 1
                level = logging.WARNING if attempt == 1 else logging.DEBUG
                log.log(level, "run-time symbols not loaded yet (Redis: %s); retrying", exc)
                await asyncio.sleep(backoff.compute(attempt))
                continue
            if added:
                await on_added(added)

    async def add(self, symbols: Iterable[str]) -> list[str]:
        """Validate, store, and return the symbols that are new to the subscription."""
        wanted = [self.validate(s) for s in symbols]
        before = set(self.current())
        if wanted:
            await self.client.sadd(self.key, *wanted)
        for symbol in wanted:
            if symbol not in self.runtime:
                self.runtime.append(symbol)
        return [s for s in dict.fromkeys(wanted) if s not in before and s in self.current()]

    async def remove(self, symbol: str) -> bool:
        """Forget a run-time symbol; False if it was not one."""
        symbol = self.validate(symbol)
        removed = await self.client.srem(self.key, symbol)
        present = symbol in self.runtime
        if present:
            self.runtime.remove(symbol)
        return bool(removed) or present
