"""Per-key limits counted in Redis, so they hold across every API process that shares it.

Why: ``tickpipe api --workers N`` (SO_REUSEPORT) and replicas behind a load
balancer are separate processes; counted in each, a key could hold N times its
streams and make N times its requests. Every process of one pipeline shares
its Redis (``REDIS_URL``), so the counts live there.

Streams: a sorted set per key (:func:`tickpipe.names.key_streams`), one member
``<instance>:<n>`` per open stream, scored by when it expires (Redis's clock:
``TIME`` in the scripts, so processes on machines whose clocks differ agree).
Taking a slot is one Lua script: drop the expired members, admit only below the
limit, add the member, expire the set; two processes cannot both take the last
slot. Giving it back is a ZREM. Each process re-scores its own members every
:data:`REFRESH_S` (one script for all of them) to :data:`STREAM_TTL_S` ahead:
a process killed outright (SIGKILL, OOM) stops refreshing and its slots free
themselves within the TTL.

Requests per minute: the ``limits`` library's moving window on its async Redis
storage (a list per key, trimmed by a Lua script; entries carry the wall clock
of the process that made them, so machines need NTP-synchronised clocks).

Redis unreachable: refusing every client would make Redis a single point of
failure for the data routes, and waiting on it would stall them, so every call
is bounded by :data:`REDIS_TIMEOUT_S` (no retries) and on the first failure the
limits are counted per process, as before there was sharing: a WARNING once
per outage. While it lasts, requests and streams do not ask Redis at all; the
refresher asks every :data:`REFRESH_S`, and once Redis answers the counts are
shared again (INFO). That first refresh adds this process's open streams,
those admitted while Redis was away too (a restarted Redis starts empty), so a
key may be over its limit for a while; new streams are refused until it is not.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import time
from typing import Final

import redis.asyncio
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tickpipe.health import REDIS_ERRORS, instance_id
from tickpipe.names import NAMESPACE, key_requests, key_streams

log = logging.getLogger(__name__)

#: How long a stream's slot lives in Redis unless its process refreshes it: a killed process's slots free
#: themselves within this.
STREAM_TTL_S: Final = 5.0
#: How often each process refreshes its streams' slots (and, while Redis is away, asks whether it is back).
REFRESH_S: Final = 1.0
#: The longest any request or stream waits on Redis (connect and reply) before counting in this process.
REDIS_TIMEOUT_S: Final = 0.5

#: KEYS[1] the key's set; ARGV member, limit, ttl. 1: admitted, 0: the key has ``limit`` streams already.
TAKE_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])))
return 1
"""
#: KEYS the sets; ARGV ttl, then per set the number of its members and the members. Adds those missing.
REFRESH_SCRIPT: Final = """
local t = redis.call('TIME')
local ttl = tonumber(ARGV[1])
local expiry = tonumber(t[1]) + tonumber(t[2]) / 1000000 + ttl
local i = 2
for k = 1, #KEYS do
    local n = tonumber(ARGV[i])
    for j = i + 1, i + n do
        redis.call('ZADD', KEYS[k], expiry, ARGV[j])
    end
    redis.call('EXPIRE', KEYS[k], math.ceil(ttl))
    i = i + n + 1
end
return #KEYS
"""


def limits_uri(redis_url: str) -> str:
    """The ``limits`` storage URI of a REDIS_URL (``async+redis://...``, ``async+redis+unix://...``)."""
    if redis_url.startswith("unix://"):
        return "async+redis+" + redis_url
    return "async+" + redis_url


def retry_after(reset_time: float) -> int:
    """Whole seconds until a window that frees a request at ``reset_time`` (epoch seconds) does: 1 to 60."""
    return min(60, max(1, math.ceil(reset_time - time.time())))


class KeyLimits:
    """Streams and requests per minute of each key, counted in Redis by every API process, or here alone
    (``redis_url`` None, or while Redis does not answer)."""

    def __init__(self, redis_url: str | None, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace
        #: ``<host>-<pid>`` and a random part: a later process given the same pid has slots of its own.
        self.instance = f"{instance_id()}-{secrets.token_hex(3)}"
        self._numbers = itertools.count(1)
        #: This process's streams per key (their members): counted here while Redis is away, refreshed there.
        self._held: dict[str, set[str]] = {}
        self._rates: dict[int, RateLimitItem] = {}
        self._local = MovingWindowRateLimiter(MemoryStorage())
        #: Whether the counts are shared now (False from the first failure until a refresh succeeds).
        self.shared = redis_url is not None
        self._refreshing = asyncio.Lock()
        self.client: redis.asyncio.Redis | None = None
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url is not None:
            timeout = REDIS_TIMEOUT_S
            self.client = redis.asyncio.Redis.from_url(
                redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
            )
            storage = RedisStorage(
                limits_uri(redis_url),
                implementation="redispy",
                key_prefix=key_requests(namespace),
                # One pool, so its timeouts and no-retry policy hold here too (limits documents connection_pool;
                # its stubs type the options as scalars).
                connection_pool=self.client.connection_pool,  # type: ignore[arg-type]
            )
            self._shared = MovingWindowRateLimiter(storage)
            self._take = self.client.register_script(TAKE_SCRIPT)
            self._refresh = self.client.register_script(REFRESH_SCRIPT)

    # --- outages ----------------------------------------------------------------------------------------
    def _lost(self, exc: BaseException) -> None:
        if self.shared:
            self.shared = False
            log.warning(
                "Redis did not answer (%s): API key limits are counted per API process until it does",
                type(exc).__name__,
            )

    def _back(self) -> None:
        if not self.shared and self.client is not None:
            self.shared = True
            log.info("Redis answers again: API key limits are shared across API processes again")

    # --- streams ------------------------------------------------------------------------------------------
    def held(self, key_id: str) -> int:
        """Streams of ``key_id`` this process holds."""
        return len(self._held.get(key_id, ()))

    async def take_stream(self, key_id: str, limit: int) -> str | None:
        """A slot for one more stream of ``key_id`` (its member, to give back), or None: ``limit`` are open.

        Cancelled while Redis answers, a slot it gave is not known here: it expires within STREAM_TTL_S.
        """
        member = f"{self.instance}:{next(self._numbers)}"
        if self.shared and self.client is not None:
            key = key_streams(key_id, self.namespace)
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    admitted = await self._take(keys=[key], args=[member, limit, STREAM_TTL_S])
            except REDIS_ERRORS as exc:
                self._lost(exc)
            else:
                if not admitted:
                    return None
                self._held.setdefault(key_id, set()).add(member)
                return member
        if self.held(key_id) >= limit:
            return None
        self._held.setdefault(key_id, set()).add(member)
        return member

    async def give_stream(self, key_id: str, member: str) -> None:
        """Give a stream's slot back (Redis away: it expires there within STREAM_TTL_S)."""
        members = self._held.get(key_id)
        if members is None or member not in members:
            return
        members.discard(member)  # first: no refresh made after this point adds it again
        if not members:
            del self._held[key_id]
        async with self._refreshing:  # after a refresh in flight, which may still carry it
            if not self.shared or self.client is None:
                return
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    await self.client.zrem(key_streams(key_id, self.namespace), member)
            except REDIS_ERRORS as exc:
                self._lost(exc)

    async def refresh(self) -> bool:
        """Push this process's slots STREAM_TTL_S ahead (adding any Redis lost); False if Redis did not answer."""
        if self.client is None:
            return False
        async with self._refreshing:
            held = [(key_id, sorted(members)) for key_id, members in self._held.items() if members]
            args: list[str | int | float] = [STREAM_TTL_S]
            for _, members in held:
                args += [len(members), *members]
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    if held:
                        await self._refresh(keys=[key_streams(key_id, self.namespace) for key_id, _ in held], args=args)
                    else:
                        await self.client.ping()
            except REDIS_ERRORS as exc:
                self._lost(exc)
                return False
        self._back()
        return True

    async def keep_fresh(self) -> None:
        """Refresh every REFRESH_S until cancelled (the lifespan's task)."""
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.refresh()
            except Exception:  # not Redis's silence (that is handled): keep refreshing
                log.exception("API key limits: stream slots not refreshed")

    # --- requests -----------------------------------------------------------------------------------------
    async def admit_request(self, key_id: str, per_minute: int) -> int | None:
        """Count one request of ``key_id``: None if admitted, else the seconds to wait (``Retry-After``)."""
        rate = self._rates.get(per_minute)
        if rate is None:
            rate = self._rates[per_minute] = RateLimitItemPerMinute(per_minute)
        if self.shared and self._shared is not None:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    if await self._shared.hit(rate, key_id):
                        return None
                    stats = await self._shared.get_window_stats(rate, key_id)
                return retry_after(stats.reset_time)
            except REDIS_ERRORS as exc:
                self._lost(exc)
        if await self._local.hit(rate, key_id):
            return None
        return retry_after((await self._local.get_window_stats(rate, key_id)).reset_time)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
