"""Helpers for the producer's tests: waiting on conditions, an in-memory Kafka seam, a Kafka outage proxy.

``MemoryKafka`` stands behind the durable sink's :class:`~producer.kafka_backend.KafkaBackend`
seam (as httpx's MockTransport stands behind its client) so the sink's
ordering rules can be driven through every failure mode deterministically.
The integration tests use the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import struct
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec
import redis.asyncio
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from producer.backfill import to_records
from producer.gaps import chunks
from producer.history_client import HistoryClient
from producer.kafka_backend import Outcome
from producer.kafka_backend import TopicPartition as TP
from producer.service import ProducerService
from simulator.history import History
from tests.helpers.broker import IDEMPOTENCE, private_broker
from tests.helpers.waiting import wait_for
from tickpipe.codecs import decode_kafka, decode_message, kafka_decoder
from tickpipe.dev.embedded_kafka import EmbeddedKafka
from tickpipe.dev.processes import free_port
from tickpipe.events import Bar, Event
from tickpipe.feeds import STOCK, Feed
from tickpipe.names import latest_hash
from tickpipe.rows import from_row
from tickpipe.settings import Settings, load_settings


def partition_of(key: bytes, count: int) -> int:
    """Kafka's default partitioner, as every client keyed by symbol computes it (the tests' own oracle)."""
    return (murmur2(key) & 0x7FFFFFFF) % count


def offered_by_key(records: Iterable[tuple[str, bytes | None, bytes]]) -> dict[bytes | None, list[bytes]]:
    """Values per key in the order offered: what Kafka must hold per key, in order."""
    out: dict[bytes | None, list[bytes]] = {}
    for _, key, value in records:
        out.setdefault(key, []).append(value)
    return out


class Disk:
    """The spool's ``write``: ``os.write`` as a disk does it, short writes and ENOSPC on demand."""

    def __init__(self, most: int | None = None) -> None:
        self.most = most  # bytes per call at most (a short write), None: all
        self.full = False
        self.calls = 0

    def __call__(self, fd: int, data: memoryview) -> int:
        self.calls += 1
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data[: self.most] if self.most else data)


class KafkaDown(KafkaConnectionError):
    """What MemoryKafka raises for a batch while it is down (retriable, as a lost connection is)."""


class MemoryRound:
    def __init__(self, kafka: MemoryKafka) -> None:
        self.kafka = kafka
        self.batches: dict[TP, list[tuple[bytes | None, bytes]]] = {}

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes) -> bool:
        batch = self.batches.setdefault((topic, partition), [])
        if len(batch) >= self.kafka.batch_records:
            return False
        batch.append((key, value))
        return True

    async def send(self) -> Outcome:
        kafka = self.kafka
        kafka.rounds += 1
        while kafka.mode == "hang":
            await kafka.changed.wait()
        outcome: Outcome = {}
        for tp, batch in self.batches.items():
            if kafka.refusing is not None:
                outcome[tp] = kafka.refusing
            elif kafka.mode == "down" or tp in kafka.failing:
                outcome[tp] = KafkaDown(f"{tp} unavailable")
            elif tp[1] >= kafka.partition_count:
                outcome[tp] = KafkaDown(f"{tp} does not exist")  # as a broker answers UnknownTopicOrPartition
            else:
                kafka.log.setdefault(tp, []).extend(batch)
                kafka.written.extend((tp, key, value) for key, value in batch)
                outcome[tp] = None
        return outcome


class MemoryKafka:
    """Partitions as lists; ``mode`` "up", "down" (batches fail) or "hang" (rounds wait for a change).

    ``partition_count`` may change while a sink runs (a re-created topic);
    ``refusing``, an error every batch fails with (e.g. a fatal one); ``refusing_start`` and
    ``refusing_refresh``, what ``start()`` and ``refresh()`` raise.
    """

    def __init__(self, partitions: int = 3, *, batch_records: int = 1000, reachable: bool = True) -> None:
        self.partition_count = partitions
        self.batch_records = batch_records
        self.reachable = reachable
        self.log: dict[TP, list[tuple[bytes | None, bytes]]] = {}
        self.written: list[tuple[TP, bytes | None, bytes]] = []  # every record, in the order Kafka took them
        self.mode = "up"
        self.failing: set[TP] = set()
        self.refusing: BaseException | None = None
        self.refusing_start: BaseException | None = None
        self.refusing_refresh: BaseException | None = None
        self.refreshes = 0
        self.changed = asyncio.Event()
        self.rounds = 0
        self.starts = 0
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.changed.set()
        self.changed = asyncio.Event()

    async def start(self) -> None:
        self.starts += 1
        if self.refusing_start is not None:
            raise self.refusing_start
        if not self.reachable:
            raise KafkaDown("connection refused")
        self._connected = True

    async def stop(self) -> None:
        self._connected = False

    async def partitions(self, topic: str) -> int:
        return self.partition_count

    async def refresh(self, topics: Iterable[str]) -> dict[str, int]:
        self.refreshes += 1
        if self.refusing_refresh is not None:
            raise self.refusing_refresh
        if self.mode == "down":
            raise KafkaDown("metadata unavailable")
        return {topic: self.partition_count for topic in topics}

    def cached_partitions(self, topic: str) -> int | None:
        return self.partition_count

    def new_round(self) -> MemoryRound:
        return MemoryRound(self)

    def values(self) -> list[bytes]:
        return [value for batch in self.log.values() for _, value in batch]

    def by_key(self) -> dict[bytes | None, list[bytes]]:
        """Values per key in the order Kafka took them (across partitions, should a key's partition change)."""
        out: dict[bytes | None, list[bytes]] = {}
        for _, key, value in self.written:
            out.setdefault(key, []).append(value)
        return out


class KafkaStallProxy:
    """A TCP forwarder in front of a broker that *advertises this proxy's address*.

    ``stall()`` stops passing client bytes to the broker (what it already got
    is answered and the answers still flow back) and refuses new connections:
    for the client, Kafka went away. Bytes held back are discarded and those
    connections reset on ``restore()``, so a request is either answered or
    never reached the broker: no acknowledgement is lost, which lets a test
    assert that Kafka holds every event exactly once.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.target: tuple[str, int] | None = None
        self.stalled = False
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def stall(self) -> None:
        self.stalled = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def restore(self) -> None:
        for client, upstream in list(self._conns):
            client.transport.abort()
            upstream.transport.abort()
        self.stalled = False
        await self.listen()

    async def close(self) -> None:
        await self.stall()
        for client, upstream in list(self._conns):
            client.transport.abort()
            upstream.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.target is not None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._conns.add(pair)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, gated=True)),
            asyncio.create_task(self._pump(up_reader, writer, gated=False)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            self._conns.discard(pair)
            for w in pair:
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, gated: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if gated and self.stalled:
                    await asyncio.Event().wait()  # hold: these bytes never reach the broker
                writer.write(data)
                await writer.drain()


class AckDroppingProxy:
    """A TCP forwarder that, once armed, lets the broker write one produce request and loses its answer.

    It reads the Kafka framing (4-byte size, then api key, version and
    correlation id): the first Produce request after :meth:`arm` goes through,
    and when the broker's response with that correlation id comes back the
    proxy resets both connections instead of passing it on. The client then
    holds records the broker has written but never acknowledged, the case that
    makes a retry a duplicate unless the producer is idempotent. The broker
    must advertise this proxy's port.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.target: tuple[str, int] | None = None
        self.armed = False
        self.dropped = 0  # responses lost so far
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def arm(self) -> None:
        self.armed = True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.target is not None
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        doomed: set[int] = set()  # correlation ids whose responses are to be lost
        pumps = [
            asyncio.create_task(self._requests(reader, up_writer, doomed)),
            asyncio.create_task(self._responses(up_reader, writer, doomed)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # close(): the connection ends here, as any other
        finally:
            writer.transport.abort()  # first: nothing below may skip it
            up_writer.transport.abort()
            for pump in pumps:
                pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.discard(task)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, doomed: set[int]) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readexactly(12)
                size, api_key, _, correlation = struct.unpack(">ihhi", head)
                body = await reader.readexactly(size - 8)
                if api_key == 0 and self.armed:  # Produce
                    self.armed = False
                    doomed.add(correlation)
                writer.write(head + body)
                await writer.drain()

    async def _responses(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, doomed: set[int]) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readexactly(8)
                size, correlation = struct.unpack(">ii", head)
                body = await reader.readexactly(size - 4)
                if correlation in doomed:
                    self.dropped += 1
                    return  # written by the broker, never acknowledged to the client: the connection dies
                writer.write(head + body)
                await writer.drain()


P = TypeVar("P", AckDroppingProxy, KafkaStallProxy)


@contextlib.asynccontextmanager
async def behind(proxy: P, service_dir: Path) -> AsyncIterator[tuple[EmbeddedKafka, P]]:
    """A private broker that advertises ``proxy``'s address, so clients reach it only through the proxy."""
    port = await proxy.listen()
    broker = private_broker(service_dir / "kafka", advertised_port=port)
    broker.start()
    assert broker.port is not None
    proxy.target = (broker.host, broker.port)
    try:
        yield broker, proxy
    finally:
        await proxy.close()
        broker.stop()


#: A broker listening on its own port but advertising the proxy's, so clients always dial the proxy.
ProxiedKafka = EmbeddedKafka


def producer_settings(
    kafka: str, redis_url: str, prefix: str, spool: Path, upstream: str, **overrides: Any
) -> Settings:
    """Settings for a test producer: its own topics and spool, short timeouts, no fixed ports."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka,
        "kafka_enable_idempotence": IDEMPOTENCE,  # Tansu refuses InitProducerId
        "kafka_topic_prefix": prefix,
        "kafka_partitions": 3,
        "redis_url": redis_url,
        "alpaca_stream_url": upstream,
        "spool_dir": spool,
        "producer_admin_port": 0,
        "crypto_producer_admin_port": 0,  # a crypto producer's too: tests run side by side
        "news_producer_admin_port": 0,
        "upstream_reconnect_max_s": 0.5,
        "upstream_conn_limit_wait_s": 0.2,
        "kafka_request_timeout_ms": 2000,
        "kafka_spill_after_s": 0.3,
        "producer_shutdown_timeout_s": 8.0,
        # Every type the simulator makes, so it sends all it produces: max_events is then an exact count.
        "subscribed_types": "quotes,trades,bars,updatedBars,dailyBars,statuses",
        # Tests that count what the stream sent exactly want no backfilled records beside it; the backfill
        # tests turn it on.
        "backfill_enabled": False,
    }
    values.update(overrides)
    return load_settings(**values)


@contextlib.asynccontextmanager
async def running(service: ProducerService, max_events: int | None = None) -> AsyncIterator[asyncio.Task[None]]:
    """The service's ``run()`` in a task; stopped (and its shutdown awaited) when the block ends."""
    task = asyncio.create_task(service.run(max_events))
    try:
        yield task
    finally:
        service.stop()
        await asyncio.wait_for(asyncio.shield(task), 30)


async def forget_snapshots(redis_url: str, feed: Feed) -> None:
    """Delete the feed's snapshot hashes (``latest:crypto.quotes`` ...): the session's Redis is shared, and a
    later test subscribing to ``*`` would get this test's last events first."""
    client = redis.asyncio.from_url(redis_url)
    try:
        await client.delete(*(latest_hash(word) for word in feed.words))
    finally:
        await client.aclose()


async def ready(service: ProducerService, timeout: float = 30.0) -> None:
    """Until the upstream streams and both sinks are connected (the producer's own /readyz)."""

    async def check() -> bool:
        return (await service.ready())[0]

    await wait_for(check, timeout, "the producer to be ready")


@dataclasses.dataclass
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


async def partitions_of(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """The partitions of each of ``topics`` that exists, as the broker describes them now.

    Asked of the admin API: a consumer's own metadata may not list a topic yet
    (Apache Kafka answers a consumer's bootstrap request for no topics with none).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described if not d["error_code"]}


async def read_topics(
    bootstrap: str, topics: list[str], expected: int | None = None, timeout: float = 60.0
) -> list[KafkaRecord]:
    """Every record of ``topics``, consumed from the start (Tansu's end offsets undercount, so count by reading).

    With ``expected``, reads until that many arrived, then until two polls in a
    row bring nothing, so duplicates would show up too.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_bytes=16 * 1024 * 1024)  # fmt: skip
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t, ps in (await partitions_of(bootstrap, topics)).items() for p in ps]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[KafkaRecord] = []
        deadline = time.monotonic() + timeout
        empty = 0
        while empty < 2 or (expected is not None and len(out) < expected):
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(out)} records of {topics}, expected {expected}")
            batch = await consumer.getmany(timeout_ms=300, max_records=50_000)
            got = [r for records in batch.values() for r in records]
            out += [KafkaRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in got]
            empty = 0 if got else empty + 1
        return out
    finally:
        await consumer.stop()


def decoded(records: list[KafkaRecord]) -> list[Event]:
    """The events of Kafka records, in partition-offset order, receive time cleared."""
    ordered = sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
    return [msgspec.structs.replace(decode_kafka(r.value), received_at=0) for r in ordered]


def per_symbol(events: list[Event]) -> dict[tuple[str, str], list[Event]]:
    """Events grouped by (family, symbol), each group in the order given."""
    out: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        out.setdefault((event.family, event.symbol), []).append(event)
    return out


def sent_events(messages: list[dict[str, Any]]) -> list[Event]:
    """What the simulator sent (``session.sent_events()``), as events."""
    return [decode_message(m) for m in messages]


class RedisCollector:
    """A Redis subscriber to every family channel of some symbols (or to channel ``patterns``: ``news:*``),
    keeping what each channel carried."""

    def __init__(self, url: str, symbols: list[str], patterns: list[str] | None = None) -> None:
        self.client = redis.asyncio.from_url(url)
        self.pubsub = self.client.pubsub()
        self.symbols = symbols
        self.patterns = [f"*:{s}" for s in symbols] if patterns is None else patterns
        self.messages: dict[str, list[bytes]] = {}
        self.total = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RedisCollector:
        await self.pubsub.psubscribe(*self.patterns)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["type"] == "pmessage":
                self.messages.setdefault(message["channel"].decode(), []).append(message["data"])
                self.total += 1

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pubsub.aclose()
        await self.client.aclose()

    def counts(self) -> dict[str, int]:
        return {channel: len(payloads) for channel, payloads in self.messages.items()}


async def rest_events(
    base_url: str,
    resource: str,
    symbols: list[str],
    start_ns: int,
    end_ns: int,
    feed: str = "iex",
    *,
    of: Feed = STOCK,
) -> list[Any]:
    """Every item the REST API holds for the window, as the events a backfill would send (receive time 0):
    the stock feed's history of variant ``feed``, or that of the feed ``of`` (``OPTIONS``: its trades, in
    requests of at most 100 contracts, as the backfill makes them; ``NEWS`` with ``symbols`` ``["*"]``:
    every story)."""
    client = HistoryClient(base_url, "key", "secret", feed if of.history_feed else None, of=of, per_minute=10_000)
    decode = kafka_decoder(of)
    out: list[Any] = []
    try:
        for group in chunks(symbols):
            async for page in client.pages(resource, group, start_ns, end_ns):
                records, bad = to_records(resource, page.items, {code: code for code in of.family_of}, 0, of)
                assert bad == 0
                out += [decode(value) for _, _, value in records]
    finally:
        await client.aclose()
    return out


async def backfill(env: dict[str, str], *args: str) -> tuple[int, str]:
    """``python -m tickpipe.cli backfill *args``: exit code and output (stdout and stderr, not a TTY)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickpipe.cli", "backfill", *args, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(child.communicate(), 180)
    return await child.wait(), out.decode(errors="replace")


def consumer_env(bootstrap: str, database_url: str, prefix: str) -> dict[str, str]:
    """The environment of a ``tickpipe consume`` child reading a test's topics into a test's database."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap, DATABASE_URL=database_url, KAFKA_TOPIC_PREFIX=prefix,
        KAFKA_ENABLE_IDEMPOTENCE="false", KAFKA_PARTITIONS="3", CONSUMER_SESSION_TIMEOUT_MS="6000",
        CONSUMER_HEARTBEAT_INTERVAL_MS="1000", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    return env


async def drain_into_postgres(bootstrap: str, database_url: str, prefix: str, log: Path) -> None:
    """``tickpipe consume all --burst``: every record of the test's topics into PostgreSQL, then exit 0."""
    out = await asyncio.to_thread(log.open, "wb")
    with out:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tickpipe.cli", "consume", "all", "--burst", "--no-admin",
            "--group", f"{prefix}drain", env=consumer_env(bootstrap, database_url, prefix),
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
        code = await asyncio.wait_for(child.wait(), 180)
    if code != 0:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        raise AssertionError(f"consume --burst exited {code}: {text[-3000:]}")


async def table_rows(database_url: str, table: str) -> list[Event]:
    """Every row of ``table`` as events, receive time cleared (what to compare with the REST API)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f"SELECT * FROM {table}")
    finally:
        await conn.close()
    return [from_row(table, row) for row in rows]


class ProducerProcess:
    """``python -m tickpipe.cli producer`` as a child, with its admin port and log (for SIGKILL tests)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = await asyncio.to_thread(self.log.open, "ab")
        with out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tickpipe.cli", "producer", "--admin-port", str(self.port), env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip

    async def health(self) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
                return dict((await http.get(f"http://127.0.0.1:{self.port}/health")).json())
        except httpx.TransportError:
            return None

    async def metrics(self) -> str:
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
            return (await http.get(f"http://127.0.0.1:{self.port}/metrics")).text

    async def until_health(self, check: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """Poll ``/health`` until ``check`` holds for it; that document."""
        seen: dict[str, Any] = {}

        async def ok() -> bool:
            nonlocal seen
            doc = await self.health()
            seen = doc or {}
            return doc is not None and check(doc)

        await wait_for(ok, timeout, what)
        return seen

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def output(self) -> str:
        return await asyncio.to_thread(self.log.read_text, errors="replace")


MINUTE = 60 * 1_000_000_000


SECOND = 1_000_000_000


RATE = 150.0


#: How far back the simulator stamps a late-reported trade (its tape's rule).
LATE_REPORT = 2 * SECOND


async def market_runs_on(history: History, seconds: float = 10.0) -> int:
    """Until the simulator's market made ``seconds`` more of events and passed a minute's end (so bars close
    while nobody reads it); how many events it made meanwhile."""
    clock, made = history.clock_ns, history.recorded
    boundary = clock - clock % MINUTE + MINUTE
    await wait_for(
        lambda: history.recorded >= made + seconds * RATE and history.clock_ns >= boundary + 2 * SECOND,
        timeout=90, what=f"the market to run on for {seconds:g} s and past a minute",
    )  # fmt: skip
    return history.recorded - made


def market_start(lead_s: float) -> int:
    """A market clock that reaches a minute boundary ``lead_s`` seconds after start (so bars close mid-test)."""
    now = time.time_ns()
    return now - now % MINUTE + MINUTE - int(lead_s * SECOND)


def content(event: Event) -> bytes:
    """An event's content without receive time: what must match between PostgreSQL and the REST API."""
    return msgspec.msgpack.encode(msgspec.structs.replace(event, received_at=0))


def bar_values(event: Event) -> tuple[Any, ...]:
    """A minute bar's identity and values, whether it was stored as a minute ("b") or updated ("u") bar."""
    assert isinstance(event, Bar)
    return (event.symbol, event.timestamp, event.open, event.high, event.low, event.close, event.volume, event.vwap,
            event.trade_count)  # fmt: skip


async def compare_run(database_url: str, rest_url: str, symbols: list[str], tables: tuple[str, ...]) -> dict[str, int]:
    """Assert PostgreSQL holds exactly the REST history of the run's window, per table; the row counts."""
    # The run begins at the first quote stored, not the first trade: a trade reported late (up to 2 s
    # back, as on a real tape) may reach the first connection stamped before anything else it got.
    ticks = await table_rows(database_url, "quotes" if "quotes" in tables else "trades")
    first, last = min(e.timestamp for e in ticks), max(e.timestamp for e in ticks)
    if "quotes" in tables and "trades" in tables:
        last = max(last, *(e.timestamp for e in await table_rows(database_url, "trades")))
    counts: dict[str, int] = {}
    for table in tables:
        stored = await table_rows(database_url, table)
        if table == "bars":
            stored = [e for e in stored if e.type_code in ("b", "u")]
            lo, hi = first - first % MINUTE, last - MINUTE - 2 * SECOND  # minutes that closed during the run
            # The REST history keeps the final version of a minute; the table a "b" or "u" row: compare content.
            stored = [msgspec.structs.replace(e, received_at=0) for e in stored if lo <= e.timestamp <= hi]
            expected = await rest_events(rest_url, "bars", symbols, lo, hi)
            key: Callable[[Event], Any] = bar_values
        else:
            # Trades end 2 s before the run does: one the market reports late (stamped up to 2 s back) after
            # the producer stopped is in the history and was never the producer's to get.
            lo, hi = first, last - (LATE_REPORT if table == "trades" else 0)
            stored = [e for e in stored if lo <= e.timestamp <= hi]
            expected = await rest_events(rest_url, table, symbols, lo, hi)
            key = content
        have, want = Counter(map(key, stored)), Counter(map(key, expected))
        missing, extra = want - have, have - want
        assert not missing and not extra, (
            f"{table}: {len(expected)} in the REST history, {len(stored)} stored; "
            f"{sum(missing.values())} missing, {sum(extra.values())} extra (e.g. {list(missing)[:2]} {list(extra)[:2]})"
        )
        assert len(stored) == len(set(map(key, stored))), f"{table}: duplicated rows"
        counts[table] = len(stored)
    return counts
