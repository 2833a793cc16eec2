"""Health documents in Redis: every running process says how it is, and anyone can read them all.

Why Redis and not each service's admin port: a reader would have to know every
address, and inside a container "0.0.0.0" names no host at all. Every process
already reaches Redis (or is told to), so it writes there, and ``/status``, the
dashboard and ``tickpipe status`` read the same list on one machine, under
compose with scaled services, and across machines.

Keys (``<ns>`` is ``tickpipe:`` for the default ``KAFKA_TOPIC_PREFIX``
``tickpipe.``, else that prefix, as for ``tickpipe:symbols``)::

    <ns>health:<role>:<instance>   string, the JSON document; EX HEALTH_TTL_S, rewritten every HEALTH_INTERVAL_S
    <ns>instances                  hash, field <role>:<instance> -> the last document written

The document lives only while its process refreshes it; the hash entry
outlives it, so an instance that went silent (killed, partitioned, hung) is
still listed, as ``lost``, until HEALTH_FORGET_S. A clean stop deletes both.
``role`` is one of :data:`ROLES`; ``instance`` is ``<host>-<pid>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, Literal

import orjson
import redis.asyncio
import redis.exceptions

from tickpipe.names import TOPIC_PREFIX
from tickpipe.settings import Settings

log = logging.getLogger(__name__)

Role = Literal["producer", "consumers", "api", "simulator"]
ROLES: Final[tuple[Role, ...]] = ("producer", "consumers", "api", "simulator")
#: States a document carries; ``lost`` is the readers' word for a document that expired.
State = Literal["starting", "ready", "failing", "stopping", "lost"]
#: How long a process may take to become ready before "not ready" counts as failing.
STARTING_GRACE_S: Final = 30.0


def _version() -> str:
    try:
        return version("tickpipe")
    except PackageNotFoundError:  # a source tree without the package installed
        return "unknown"


VERSION: Final = _version()

REDIS_ERRORS = (redis.exceptions.RedisError, OSError, TimeoutError)


def namespace(prefix: str = TOPIC_PREFIX) -> str:
    """``tickpipe:`` for the default topic prefix, else the prefix itself: one pipeline, one namespace."""
    return "tickpipe:" if prefix == TOPIC_PREFIX else prefix


def doc_key(role: str, instance: str, prefix: str = TOPIC_PREFIX) -> str:
    return f"{namespace(prefix)}health:{role}:{instance}"


def registry_key(prefix: str = TOPIC_PREFIX) -> str:
    return f"{namespace(prefix)}instances"


def instance_id() -> str:
    """``<host>-<pid>``: distinct for processes on one host, and for containers (their host name is their id)."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Reading:
    """What a role's own health says, in the terms every role shares."""

    ready: bool
    #: The role's throughput counter (events read, rows written, messages sent); its rate is published.
    count: int | float | None = None
    lag: int | float | None = None
    last_error: str | None = None
    #: Role-specific figures that ``/status`` sums (drops, spool depth, dead letters, upstream state).
    figures: dict[str, Any] = field(default_factory=dict)


Read = Callable[[], Awaitable[Reading]]


class Publisher:
    """Writes this process's document every ``interval`` seconds until stopped; then withdraws it.

    Redis being away is not this process's failure: the write is retried at the next interval and
    one warning is logged per outage, so the publisher never holds up or fails the service.
    """

    def __init__(
        self,
        redis_url: str,
        role: Role,
        read: Read,
        *,
        prefix: str = TOPIC_PREFIX,
        interval: float = 1.0,
        ttl: float = 5.0,
        instance: str | None = None,
        rate_unit: str = "events/s",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.role = role
        self.instance = instance or instance_id()
        # What does not change while the process lives, read once rather than at every write.
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.read = read
        self.interval = interval
        self.ttl = max(ttl, 2 * interval)  # a document must outlive the gap to its next write
        self.rate_unit = rate_unit
        self.clock = clock
        self.key = doc_key(role, self.instance, prefix)
        self.registry = registry_key(prefix)
        self.started_at = clock()
        self.state: State = "starting"
        self.attempts = 0
        self.written = 0
        self._redis = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._last_count: tuple[float, float] | None = None
        self._failing_since: float | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"health-{self.role}")

    async def stop(self) -> None:
        """Withdraw the document and the registry entry: a clean stop is not a lost instance."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(*REDIS_ERRORS):
            async with asyncio.timeout(2.0):
                await self._redis.delete(self.key)
                await self._redis.hdel(self.registry, f"{self.role}:{self.instance}")
        await self._redis.aclose()

    async def _loop(self) -> None:
        broken = False
        while not self._stop.is_set():
            try:
                await self.publish()
                broken = False
            except Exception:  # a document that cannot be written (a figure JSON cannot hold) is a bug:
                # said loudly, once; ending the loop would show a live process as lost
                if not broken:
                    log.exception("health: the document of %s %s cannot be written", self.role, self.instance)
                broken = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def document(self) -> dict[str, Any]:
        """The document as written now (the reading, the state, the rate since the last one)."""
        now = self.clock()
        try:
            reading = await self.read()
        except Exception as exc:  # a broken probe is a failing instance, not a dead publisher
            reading = Reading(ready=False, last_error=f"health probe failed: {type(exc).__name__}: {exc}")
        rate = None
        if reading.count is not None:
            last = self._last_count
            if last is not None and now > last[0] and reading.count >= last[1]:
                rate = round((reading.count - last[1]) / (now - last[0]), 3)
            self._last_count = (now, float(reading.count))  # a smaller count (a restart) starts over
        if reading.ready:
            self.state = "ready"
        elif self.state != "ready" and now - self.started_at < STARTING_GRACE_S:
            self.state = "starting"
        else:
            self.state = "failing"
        return {
            "role": self.role,
            "instance": self.instance,
            "host": self.host,
            "pid": self.pid,
            "version": VERSION,
            "state": self.state,
            "ready": reading.ready,
            "started_at": round(self.started_at, 3),
            "updated_at": round(now, 3),
            "rate": rate,
            "rate_unit": self.rate_unit,
            "count": reading.count,
            "lag": reading.lag,
            "last_error": reading.last_error,
            "figures": reading.figures,
        }

    async def publish(self) -> None:
        self.attempts += 1
        doc = orjson.dumps(await self.document())
        try:
            async with asyncio.timeout(max(self.interval, 2.0)):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.set(self.key, doc, px=int(self.ttl * 1000))
                    pipe.hset(self.registry, f"{self.role}:{self.instance}", doc)
                    await pipe.execute()
        except REDIS_ERRORS as exc:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("health: cannot write to Redis (%s); retrying every %.1f s", exc, self.interval)
            return
        if self._failing_since is not None:
            log.info("health: writing to Redis again after %.1f s", time.monotonic() - self._failing_since)
            self._failing_since = None
        self.written += 1


def publishers(
    settings: Settings, role: Role, read: Read, *, rate_unit: str = "events/s", instance: str | None = None
) -> list[Publisher]:
    """This process's health publisher, from the settings: one when REDIS_URL is set, else none.

    A list, to hand to :func:`tickpipe.service.run` as sidecars: a process without Redis (a
    consumer or a simulator run alone) works as before and simply is not listed.
    """
    if not settings.redis_url:
        return []
    return [
        Publisher(
            settings.redis_url, role, read, prefix=settings.kafka_topic_prefix, interval=settings.health_interval_s,
            ttl=settings.health_ttl_s, rate_unit=rate_unit, instance=instance,
        )
    ]  # fmt: skip


async def read_instances(
    client: redis.asyncio.Redis, prefix: str = TOPIC_PREFIX, forget_s: float = 3600.0, now: float | None = None
) -> list[dict[str, Any]]:
    """Every instance listed, live or lost, sorted by role then instance.

    A listed instance whose document expired is shown with its last document, ``state`` ``lost`` and
    ``silent_s``; one silent longer than ``forget_s`` is removed from the list here.
    """
    now = time.time() if now is None else now
    registry = registry_key(prefix)
    listed = await client.hgetall(registry)
    fields = sorted(listed)
    live = await client.mget([doc_key(*_split(f), prefix) for f in fields]) if fields else []
    found: list[dict[str, Any]] = []
    forget: list[Any] = []
    for name, current in zip(fields, live, strict=True):
        try:
            doc = orjson.loads(current if current is not None else listed[name])
        except orjson.JSONDecodeError:
            forget.append(name)
            continue
        silent = round(max(0.0, now - float(doc.get("updated_at") or 0.0)), 3)
        if current is None:
            if silent > forget_s:
                forget.append(name)
                continue
            doc = {**doc, "state": "lost", "ready": False, "rate": None}
        found.append({**doc, "silent_s": silent})
    if forget:
        await client.hdel(registry, *forget)
    return sorted(found, key=lambda d: (_role_order(d.get("role")), str(d.get("instance"))))


def _split(name: bytes | str) -> tuple[str, str]:
    text = name.decode() if isinstance(name, bytes) else name
    role, _, instance = text.partition(":")
    return role, instance


def _role_order(role: Any) -> int:
    return ROLES.index(role) if role in ROLES else len(ROLES)


def unhealthy(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The instances an operator must look at: lost or failing."""
    return [doc for doc in instances if doc.get("state") in ("lost", "failing")]


def total(value: Any) -> int | float:
    """A number, or the sum of every number inside nested objects and lists (per type, per sink ...)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return value
    if isinstance(value, dict):
        return sum(total(item) for item in value.values())
    if isinstance(value, list):
        return sum(total(item) for item in value)
    return 0


def add(*values: Any) -> int | float | None:
    """The sum of the numbers known; None when none is."""
    known = [value for value in values if isinstance(value, int | float) and not isinstance(value, bool)]
    return sum(known) if known else None


#: The roles the dashboard always names, running or not: without them there is no pipeline.
PIPELINE_ROLES: Final = ("producer", "consumers")


def summarize(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """The pipeline at a glance from every instance's document: what the dashboard's strip shows.

    Rates and lag are summed over live instances only (a lost one's are stale); counters that only
    grow (drops, dead letters) over every listed instance.
    """
    live = [doc for doc in instances if doc.get("state") != "lost"]

    def of(role: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [doc for doc in docs if doc.get("role") == role]

    def figures(role: str, name: str, docs: list[dict[str, Any]]) -> int | float | None:
        return add(*((doc.get("figures") or {}).get(name) for doc in of(role, docs)))

    producers = of("producer", live)
    parts: dict[str, dict[str, Any]] = {}
    for role in PIPELINE_ROLES:
        listed, up = of(role, instances), of(role, live)
        error = None
        if not listed:
            error = "no instance has reported"
        elif not up:
            error = f"every instance is lost ({', '.join(str(doc.get('instance')) for doc in listed)})"
        parts[role] = {"reachable": bool(up), "instances": len(up), "lost": len(listed) - len(up), "error": error}
    return {
        "events_per_s": add(*(doc.get("rate") for doc in producers)),
        "events_total": add(*(doc.get("count") for doc in producers)),
        "drops": figures("producer", "drops", instances),
        "spool_depth": figures("producer", "spool_depth", live),
        "upstream": next(((doc.get("figures") or {}).get("upstream") for doc in producers), None),
        "consumer_lag": add(*(doc.get("lag") for doc in of("consumers", live))),
        "rows_written": figures("consumers", "rows_written", instances),
        "dead_letters": add(
            figures("producer", "dead_letters", instances), figures("consumers", "dead_letters", instances)
        ),
        "parts": parts,
        "unhealthy": len(unhealthy(instances)),
        "instances": instances,
    }
