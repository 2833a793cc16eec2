"""What one API instance holds while it runs: the PostgreSQL pool, the Redis client, the hub, the keys.

Opened by the app's lifespan and closed in reverse order. Neither service
has to answer at start-up: the pool connects on first use (``min_size=0``)
and the hub keeps retrying Redis, so the API comes up, reports not ready on
``/readyz``, and serves as soon as they answer. The API keys are read once
before serving (briefly: PostgreSQL may be down) and then every
API_KEYS_REFRESH_S by a task of their own; their limits are counted in Redis
(:mod:`api.key_limits`, a client of its own with short timeouts), whose
stream slots another task keeps alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

import asyncpg
import redis.asyncio

from api.auth import Keys
from api.key_limits import KeyLimits
from api.metrics import ApiMetrics
from api.pool import BoundedPool
from api.stream.directory import LatestDirectory
from api.stream.hub import Hub
from api.stream.protocol import FEED_CHANNELS
from tickpipe.db import asyncpg_dsn
from tickpipe.errors import SettingsError
from tickpipe.health import namespace
from tickpipe.settings import Settings

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
#: How long start-up waits for the first read of the API keys (PostgreSQL may be down; the API starts anyway).
FIRST_KEYS_TIMEOUT_S: Final = 2.0


@dataclass
class ApiState:
    settings: Settings
    pool: BoundedPool
    redis: redis.asyncio.Redis
    hub: Hub
    metrics: ApiMetrics
    keys: Keys
    static_dir: Path = STATIC_DIR
    #: A short-lived cache of /symbols: (monotonic time, symbols by feed key).
    symbols_cache: tuple[float, dict[str, list[str]]] = field(default=(0.0, {}))

    def scrub(self, text: str) -> str:
        """``text`` without the PostgreSQL or Redis password: for anything a client is shown."""
        return scrub(text, self.settings)

    @cached_property
    def csv_exports(self) -> Slots:
        """CSV exports streaming now (each holds a pooled connection); at most API_CSV_EXPORTS_MAX."""
        return Slots(self.settings.api_csv_exports_max)

    def cached_symbols(self, ttl: float) -> dict[str, list[str]] | None:
        at, symbols = self.symbols_cache
        return symbols if at and time.monotonic() - at < ttl else None


class Slots:
    """A count of things running, taken without waiting: the caller answers 503 when none is free."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0

    def take(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def give(self) -> None:
        self.taken -= 1


def secrets_of(settings: Settings) -> list[str]:
    """The passwords inside DATABASE_URL and REDIS_URL, as written and as decoded."""
    found: list[str] = []
    for url in (settings.database_url, settings.redis_url):
        if not url:
            continue
        with contextlib.suppress(ValueError):
            password = urlsplit(url).password
            if password:
                found += [password, unquote(password)]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def scrub(text: str, settings: Settings) -> str:
    """Replace every password of the service URLs in ``text`` by ``***`` (error texts may quote a DSN)."""
    for secret in secrets_of(settings):
        text = text.replace(secret, "***")
    return text


def required_urls(settings: Settings) -> tuple[str, str]:
    """DATABASE_URL and REDIS_URL, or a SettingsError naming the missing ones."""
    missing = [
        name
        for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url))
        if not value
    ]
    if missing:
        raise SettingsError(
            f"tickpipe api needs {' and '.join(missing)} (the PostgreSQL and Redis the pipeline writes to); "
            "`tickpipe up` starts embedded ones and sets them"
        )
    assert settings.database_url is not None and settings.redis_url is not None
    return settings.database_url, settings.redis_url


async def keep_session(conn: asyncpg.Connection) -> None:
    """The API sets no session state (no SET, LISTEN or advisory lock; transactions end), so a
    connection goes back to the pool as it is, saving asyncpg's reset round trip per request."""


@asynccontextmanager
async def open_state(
    settings: Settings, metrics: ApiMetrics, static_dir: Path = STATIC_DIR, *, exposed: bool = False
) -> AsyncIterator[ApiState]:
    """``exposed``: the API listens beyond loopback (keys are then required, see :mod:`api.auth`)."""
    database_url, redis_url = required_urls(settings)
    pool = BoundedPool(
        await asyncpg.create_pool(
            asyncpg_dsn(database_url),
            min_size=0,
            max_size=settings.api_db_pool_size,
            command_timeout=60,
            reset=keep_session,
        ),
        settings.api_db_pool_timeout_s,
    )
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    hub = Hub(
        redis_url,
        metrics,
        flush_interval=settings.ws_flush_interval_ms / 1000,
        flush_writes_per_s=settings.ws_flush_writes_per_s,
        # A news story names any symbol, whether its producer was told of it or not: no directory (nothing parked).
        directories={
            name: LatestDirectory(client, channels.feed)
            for name, channels in FEED_CHANNELS.items()
            if not any(family.channels for family in channels.feed.families)
        },
        max_channels=settings.ws_max_redis_channels,
    )
    limits = KeyLimits(redis_url, namespace(settings.kafka_topic_prefix))
    keys = Keys(settings, pool, exposed=exposed, limits=limits)
    with contextlib.suppress(Exception):  # logged by keep_fresh, which tries again
        async with asyncio.timeout(FIRST_KEYS_TIMEOUT_S):
            await keys.refresh()
    refreshers = [
        asyncio.create_task(keys.keep_fresh(), name="api-keys"),
        asyncio.create_task(limits.keep_fresh(), name="api-key-limits"),
    ]
    await hub.start()
    try:
        yield ApiState(settings, pool, client, hub, metrics, keys, static_dir)
    finally:
        for refresher in refreshers:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        await hub.stop()
        await limits.close()
        await client.aclose()
        await pool.close()
