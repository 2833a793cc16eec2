"""Database plumbing every part shares: URL forms, migrations, partitions, retention."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

from tickpipe.errors import ServiceStartError
from tickpipe.schema import PARTITIONED_TABLES
from tickpipe.settings import redact_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def asyncpg_dsn(url: str) -> str:
    """The libpq form asyncpg wants (``postgresql://``), whatever form was configured."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy form with the asyncpg driver: the schema is managed async, like everything else."""
    return "postgresql+asyncpg://" + asyncpg_dsn(url)[len("postgresql://") :]


def alembic_config(url: str) -> Config:
    if not (MIGRATIONS_DIR / "env.py").exists():
        raise FileNotFoundError(f"migrations not found at {MIGRATIONS_DIR}; install tickpipe from its source tree")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


#: What PostgreSQL (or the network) says when it will not take a connection: who we are, which
#: database, or no server there. Errors inside a session (SQL) are not among them.
REFUSALS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def _refusal(exc: BaseException) -> BaseException | None:
    """The connection refusal at the root of ``exc`` (SQLAlchemy wraps asyncpg's), if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, REFUSALS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def connection_errors(url: str) -> Iterator[None]:
    """Turn a refused connection to ``url`` into one ``ServiceStartError`` naming DATABASE_URL (password hidden).

    Why: start-up must end with one line saying which variable to fix, not a driver's traceback
    through alembic and SQLAlchemy; errors of the SQL itself still propagate as they are.
    """
    try:
        yield
    except Exception as exc:  # DBAPIError wrapping a refusal, or a refusal itself
        refusal = _refusal(exc)
        if refusal is None:
            raise
        cause = str(refusal) or type(refusal).__name__
        raise ServiceStartError(f"DATABASE_URL={redact_url(url)}: PostgreSQL refused the connection: {cause}") from None


def upgrade(url: str, revision: str = "head") -> None:
    """``alembic upgrade``. Synchronous (alembic runs its own event loop): call it via a thread from async code."""
    with connection_errors(url):
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    with connection_errors(url):
        command.downgrade(alembic_config(url), revision)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


async def ensure_partitions(
    conn: asyncpg.Connection, days: Iterable[date], tables: Iterable[str] = PARTITIONED_TABLES
) -> int:
    """Create the daily partitions that rows of these days need (idempotent, safe to race)."""
    wanted = sorted(set(days))
    if not wanted:
        return 0
    created = 0
    for table in tables:
        if table not in PARTITIONED_TABLES:
            raise ValueError(f"expected one of {PARTITIONED_TABLES}, got table {table!r}")
        for day in wanted:
            created += await conn.fetchval("SELECT tickpipe_ensure_partitions($1, $2, $2)", table, day)
    return created


async def maintain_partitions(conn: asyncpg.Connection, ahead_days: int, retention_days: int) -> tuple[int, int]:
    """Create partitions ``ahead_days`` ahead and drop those older than ``retention_days``."""
    today = datetime.now(UTC).date()
    window = days_between(today - timedelta(days=1), today + timedelta(days=ahead_days))
    created = await ensure_partitions(conn, window)
    cutoff = today - timedelta(days=retention_days)
    dropped = 0
    for table in PARTITIONED_TABLES:
        dropped += await conn.fetchval("SELECT tickpipe_drop_partitions_before($1, $2)", table, cutoff)
    if created or dropped:
        log.info("partitions: created %d ahead, dropped %d older than %s", created, dropped, cutoff)
    return created, dropped
