"""What one API instance holds while it runs: the PostgreSQL pool, the Redis client, the hub.

Opened by the app's lifespan and closed in reverse order. Neither service
has to answer at start-up: the pool connects on first use (``min_size=0``)
and the hub keeps retrying Redis, so the API comes up, reports not ready on
``/readyz``, and serves as soon as they answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Final

import asyncpg
import redis.asyncio

from api.metrics import ApiMetrics
from api.stream.directory import LatestDirectory
from api.stream.hub import Hub
from tickpipe.db import asyncpg_dsn
from tickpipe.errors import SettingsError
from tickpipe.settings import Settings

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"


@dataclass
class ApiState:
    settings: Settings
    pool: asyncpg.Pool
    redis: redis.asyncio.Redis
    hub: Hub
    metrics: ApiMetrics
    static_dir: Path = STATIC_DIR
    #: A short-lived cache of /symbols: (monotonic time, symbols).
    symbols_cache: tuple[float, list[str]] = field(default=(0.0, []))

    @cached_property
    def key_pairs(self) -> dict[str, str]:
        """TICKPIPE_API_KEYS as {key: secret}, read once (empty: any key is accepted)."""
        return self.settings.api_key_pairs

    def cached_symbols(self, ttl: float) -> list[str] | None:
        at, symbols = self.symbols_cache
        return symbols if at and time.monotonic() - at < ttl else None


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
async def open_state(settings: Settings, metrics: ApiMetrics, static_dir: Path = STATIC_DIR) -> AsyncIterator[ApiState]:
    database_url, redis_url = required_urls(settings)
    pool = await asyncpg.create_pool(
        asyncpg_dsn(database_url),
        min_size=0,
        max_size=settings.api_db_pool_size,
        command_timeout=60,
        reset=keep_session,
    )
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    hub = Hub(
        redis_url,
        metrics,
        flush_interval=settings.ws_flush_interval_ms / 1000,
        directory=LatestDirectory(client),
        max_channels=settings.ws_max_redis_channels,
    )
    await hub.start()
    try:
        yield ApiState(settings, pool, client, hub, metrics, static_dir)
    finally:
        await hub.stop()
        await client.aclose()
        await pool.close()
