"""Fixtures that give tests real services, and keep tests out of each other's way.

Where each service comes from, decided per service on first use:

1. its URL in the environment (``DATABASE_URL``, ``REDIS_URL``,
   ``KAFKA_BOOTSTRAP_SERVERS``), used as given;
2. with ``TICKPIPE_TEST_SERVICES=docker``, a testcontainers container (the
   tests that need it skip when no Docker engine answers);
3. otherwise an embedded one from ``tickpipe.dev.services`` in a temporary folder.

Isolation: the session gets its own database, created on the server and dropped
at the end (a shared PostgreSQL is left as found); each test gets its own topic
prefix and names (``topic_prefix``, ``unique_name``, ``unique_symbol``) rather
than flushing a Redis or Kafka someone else may use. Tests that stop, pause or
cut a service use a private embedded one (``private_postgres``,
``private_redis``, ``private_kafka``), so they run the same whatever the
session services are.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import string
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import redis.asyncio

from tests.helpers.api import ApiServer, api_settings, running_api
from tests.helpers.broker import KIND as KAFKA_KIND
from tests.helpers.broker import private_broker
from tests.helpers.services import database_of_its_own, in_thread
from tickpipe.dev.services import ENV_VARS, EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, ServiceUrls
from tickpipe.names import SYMBOLS_KEY


def pytest_report_header() -> str:
    requested = os.environ.get("TICKPIPE_TEST_KAFKA") or "auto"
    return f"tickpipe: Kafka broker {KAFKA_KIND} (TICKPIPE_TEST_KAFKA={requested})"


#: "embedded" (default) or "docker": where services not named in the environment come from.
TEST_SERVICES = os.environ.get("TICKPIPE_TEST_SERVICES") or "embedded"
if TEST_SERVICES not in ("embedded", "docker"):
    raise pytest.UsageError(f"TICKPIPE_TEST_SERVICES: expected 'embedded' or 'docker', got {TEST_SERVICES!r}")


def docker_engine_reachable() -> bool:
    """Whether a Docker engine answers ``GET /_ping`` at ``DOCKER_HOST`` (default: the local socket).

    A plain socket rather than the docker client, which leaks its socket when no engine answers.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parts = urlsplit(host)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(3)
            with sock:
                sock.connect(parts.path)
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return sock.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
        if parts.scheme == "tcp" and parts.hostname and parts.port:
            with socket.create_connection((parts.hostname, parts.port), timeout=3) as sock:
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return sock.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    except OSError:
        return False
    return False


@contextmanager
def _container(service: str) -> Iterator[str]:
    """A throw-away container of ``service``; its URL."""
    if not docker_engine_reachable():
        pytest.skip(f"TICKPIPE_TEST_SERVICES=docker but no Docker engine answers (for {service})")
    if service == "database":
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:18-alpine", username="postgres", password="postgres", driver=None) as pg:
            yield pg.get_connection_url()
    elif service == "redis":
        from testcontainers.community.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as rd:
            yield f"redis://{rd.get_container_host_ip()}:{rd.get_exposed_port(6379)}/0"
    else:
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()


@contextmanager
def _service(service: str, start_embedded: Callable[[], Any]) -> Iterator[str]:
    """The URL of ``service`` from the environment, a container, or an embedded instance."""
    if url := os.environ.get(ENV_VARS[service]):
        yield url
    elif TEST_SERVICES == "docker":
        with _container(service) as url:
            yield url
    else:
        with start_embedded() as handle:
            yield handle.url


# --- where embedded services keep their files ---------------------------------------------------


@pytest.fixture(scope="session")
def service_root() -> Iterator[Path]:
    """A folder for the session's embedded services, removed at the end.

    Outside pytest's own tmp folders: those are private to root (mode 0700)
    and PostgreSQL runs as another user when we are root.
    """
    root = Path(tempfile.mkdtemp(prefix="tickpipe-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def service_dir(service_root: Path) -> Iterator[Path]:
    """A fresh folder for one test's private services, removed after it (a cluster is ~40 MB)."""
    path = Path(tempfile.mkdtemp(prefix="t-", dir=service_root))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- the session's services ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server_url(service_root: Path) -> Iterator[str]:
    """The session's PostgreSQL server (its ``postgres`` database): tests use ``database_url``."""
    with _service("database", lambda: EmbeddedPostgres(service_root / "postgres", durable=False, fresh=True)) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A database made for this session (``tickpipe_test_<hex>``), dropped at the end."""
    with database_of_its_own(postgres_server_url, "tickpipe_test", migrated=False) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(service_root: Path) -> Iterator[str]:
    """The session's Redis; shared, so use ``unique_name``/``unique_symbol`` for keys and channels."""
    with _service("redis", lambda: EmbeddedRedis(service_root / "redis")) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap(service_root: Path) -> Iterator[str]:
    """The session's Kafka bootstrap address; use ``topic_prefix`` for topics and group ids."""
    with _service("kafka", lambda: private_broker(service_root / "kafka")) as url:
        yield url


@pytest.fixture(scope="session")
def services(kafka_bootstrap: str, redis_url: str, database_url: str) -> ServiceUrls:
    """All three session services, as ``tickpipe.dev.services`` gives them to the pipeline."""
    return ServiceUrls(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, database_url=database_url)


# --- isolation ---------------------------------------------------------------------------------


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Make names no other test uses: ``unique_name("group")`` -> ``"group-1a2b3c4d"``."""

    def make(base: str = "x") -> str:
        return f"{base}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def unique_symbol() -> Callable[[], str]:
    """Make ticker symbols no other test uses (8 capital letters, valid for Alpaca and our settings)."""
    return lambda: "".join(random.choices(string.ascii_uppercase, k=8))


@pytest.fixture
def topic_prefix() -> str:
    """A Kafka topic prefix of this test's own (``KAFKA_TOPIC_PREFIX``): ``t1a2b3c4d.``."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the session's Redis, closed after the test."""
    client = redis.asyncio.from_url(redis_url)
    yield client
    await client.aclose()


# --- private services, for tests that stop, pause or cut them ----------------------------------


@pytest.fixture
def private_postgres(service_dir: Path) -> Iterator[EmbeddedPostgres]:
    """An embedded PostgreSQL for this test alone (fsync off)."""
    with EmbeddedPostgres(service_dir / "postgres", durable=False, fresh=True) as pg:
        yield pg


@pytest.fixture
def private_redis(service_dir: Path) -> Iterator[EmbeddedRedis]:
    """An embedded Redis for this test alone."""
    with EmbeddedRedis(service_dir / "redis") as rd:
        yield rd


@pytest.fixture
def private_kafka(service_dir: Path) -> Iterator[EmbeddedKafka]:
    """An embedded broker of the session's kind for this test alone; ``pause()``, ``kill()``, ``restart()``."""
    with private_broker(service_dir / "kafka") as kafka:
        yield kafka


# --- schema ------------------------------------------------------------------------------------
# TODO(lead): adjust if the schema fixtures should differ; `migrated_db` runs `alembic upgrade head`
# (tickpipe.db.upgrade) once per session on the session database.


@pytest.fixture(scope="session")
def migrated_db(database_url: str) -> str:
    """The session database with the schema at head."""
    from tickpipe.db import upgrade

    in_thread(lambda: upgrade(database_url))
    return database_url


@pytest.fixture
async def clean_db(migrated_db: str) -> str:
    """The migrated session database with every table emptied, for a test that counts rows."""
    conn = await asyncpg.connect(migrated_db)
    try:
        tables = await conn.fetch(
            "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            await conn.execute(f"TRUNCATE {', '.join(row['name'] for row in tables)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    return migrated_db


# --- the API, served for a test ------------------------------------------------------------------


@pytest.fixture
async def api(migrated_db: str, redis_url: str) -> AsyncIterator[ApiServer]:
    """The API on the session's PostgreSQL (schema at head) and Redis, default settings."""
    async with running_api(api_settings(migrated_db, redis_url, ws_max_symbols=50)) as server:
        yield server


@pytest.fixture(name="listed_symbol")
def listed_symbol_fixture(unique_symbol: Callable[[], str], redis_url: str) -> Iterator[Callable[[], str]]:
    """Unique symbols the producer lists (``tickpipe:symbols``), so the stream subscribes them in Redis at once.

    A symbol that exists nowhere (not listed, no snapshot) is parked until it
    does: a test that publishes to a brand-new symbol right after subscribing
    must make it exist first, as the producer would.
    """
    client = redis.Redis.from_url(redis_url)
    made: list[str] = []

    def make() -> str:
        symbol = unique_symbol()
        client.sadd(SYMBOLS_KEY, symbol)
        made.append(symbol)
        return symbol

    yield make
    if made:
        client.srem(SYMBOLS_KEY, *made)
    client.close()


@pytest.fixture
async def http(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        yield client
