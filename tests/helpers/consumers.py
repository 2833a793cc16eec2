"""Helpers of the consumer tests: deterministic events, producing them, reading rows back, waiting.

Events are made from a seeded ``random.Random``, with what breaks careless
code: nanosecond timestamps, prices that are not round in binary, conditions
holding quotes, backslashes, commas and braces, days long before the
partitions the migration creates."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import RecordMetadata, TopicPartition

from tests.helpers.broker import IDEMPOTENCE, KIND
from tickpipe.codecs import encode_kafka
from tickpipe.dev.processes import free_port
from tickpipe.events import Bar, DailyBar, Event, Quote, Trade, UpdatedBar
from tickpipe.kafka import ensure_topics, make_producer
from tickpipe.names import topic as topic_name
from tickpipe.rows import COLUMNS, from_row
from tickpipe.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


NS = 1_000_000_000


#: 2024-03-04 14:30 UTC, a day the migration made no partition for.
BASE_NS = int(datetime(2024, 3, 4, 14, 30, tzinfo=UTC).timestamp()) * NS


ODD_CONDITIONS = ((), ("R",), ("@", "F"), ('"', "\\"), ("a,b", "{c}"), ("NULL",), ("é", " ", "T"))


SYMBOLS = (*tuple(f"SYM{i:03d}" for i in range(40)), "BRK.B", "BF/B")


@dataclass(frozen=True)
class Rec:
    """A Kafka record as the batch code sees it, for tests that need no broker."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def consumer_settings(bootstrap: str, database_url: str, prefix: str, **overrides: Any) -> Settings:
    """Settings for a test: its own topic prefix, small batches, a short wait, idempotence where the broker allows."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": database_url,
        "kafka_topic_prefix": prefix,
        "kafka_enable_idempotence": IDEMPOTENCE,
        "kafka_partitions": 6,
        "batch_size": 500,
        "batch_max_wait_ms": 50,
        "consumer_admin_port": 0,
        # A short session keeps joins and restarts quick: Tansu waits half of it for members to join,
        # and members it started at generation 0 never send LeaveGroup. Apache Kafka refuses sessions
        # below its group.min.session.timeout.ms (6 s by default) with InvalidSessionTimeoutError.
        "consumer_session_timeout_ms": 6_000 if KIND == "apache" else 3_000,
        "consumer_heartbeat_interval_ms": 500,
        "consumer_retry_max_s": 0.5,
    }
    values.update(overrides)
    return load_settings(**values)


def _price(rng: random.Random) -> float:
    return round(rng.uniform(1, 900), rng.choice((2, 4))) + rng.choice((0.0, 0.1 + 0.2 - 0.3))


def make_quotes(count: int, seed: int = 1, *, days: int = 3, start_ns: int = BASE_NS) -> list[Quote]:
    """``count`` distinct quotes over ``days`` days, each with its own nanosecond timestamp."""
    rng = random.Random(seed)
    span = days * 86_400 * NS
    return [
        Quote(
            symbol=rng.choice(SYMBOLS),
            timestamp=start_ns + (i * span) // max(count, 1) + rng.randrange(1000),
            received_at=start_ns + i * 1000 + rng.randrange(10**6) + 1,
            bid_exchange=rng.choice("QNPKZV"),
            bid_price=_price(rng),
            bid_size=rng.randrange(0, 10**6),
            ask_exchange=rng.choice("QNPKZV"),
            ask_price=_price(rng),
            ask_size=rng.randrange(0, 10**6),
            conditions=rng.choice(ODD_CONDITIONS),
            tape=rng.choice("ABC"),
        )
        for i in range(count)
    ]


def make_trades(count: int, seed: int = 2, *, start_ns: int = BASE_NS) -> list[Trade]:
    rng = random.Random(seed)
    return [
        Trade(
            symbol=rng.choice(SYMBOLS),
            timestamp=start_ns + i * 7_000_013,
            received_at=0 if i % 10 == 0 else start_ns + i * 7_000_013 + 5,
            trade_id=i,
            exchange=rng.choice("QNPD"),
            price=_price(rng),
            size=rng.randrange(1, 10**5),
            conditions=rng.choice(ODD_CONDITIONS),
            tape=rng.choice("ABC"),
        )
        for i in range(count)
    ]


def make_bars(minutes: int, symbols: Sequence[str] = SYMBOLS[:5], seed: int = 3) -> list[Event]:
    """Per symbol and minute a bar, every third one followed by an updated bar; one daily bar each."""
    rng = random.Random(seed)
    out: list[Event] = []
    for minute in range(minutes):
        for symbol in symbols:
            fields = _bar_fields(rng)
            stamp = BASE_NS + minute * 60 * NS
            out.append(Bar(symbol=symbol, timestamp=stamp, received_at=stamp + 61 * NS, **fields))
            if minute % 3 == 0:
                changed = {**fields, "close": _price(rng), "volume": fields["volume"] + 7}
                out.append(UpdatedBar(symbol=symbol, timestamp=stamp, received_at=stamp + 90 * NS, **changed))
    for symbol in symbols:
        day = BASE_NS - (BASE_NS % (86_400 * NS))
        out.append(DailyBar(symbol=symbol, timestamp=day, received_at=BASE_NS, **_bar_fields(rng)))
    return out


def _bar_fields(rng: random.Random) -> dict[str, Any]:
    low = _price(rng)
    return {
        "open": low + 1, "high": low + 2, "low": low, "close": low + 1.5, "volume": rng.randrange(1, 10**6),
        "vwap": low + 1.25, "trade_count": rng.randrange(1, 500),
    }  # fmt: skip


def expected_bars(events: Iterable[Event]) -> dict[tuple[str, str, int], Event]:
    """What the bars table must hold: per key the last bar, except a minute bar never replaces an update."""
    out: dict[tuple[str, str, int], Event] = {}
    for ev in events:
        assert isinstance(ev, Bar)
        key = (ev.symbol, ev.timeframe, ev.timestamp // 1000)
        old = out.get(key)
        if old is not None and old.type_code == "u" and ev.type_code == "b":
            continue
        out[key] = ev
    return out


async def produce(
    bootstrap: str,
    settings: Settings,
    topic: str,
    values: Iterable[tuple[bytes | None, bytes | None]],
    *,
    producer: AIOKafkaProducer | None = None,
) -> list[RecordMetadata]:
    """Send (key, value) records to ``topic`` (created if needed); wait for every ack; where each went."""
    await ensure_topics(bootstrap, [topic], settings.kafka_partitions)
    own = producer is None
    if producer is None:
        producer = make_producer(settings, bootstrap, linger_ms=20)
        await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in values]
        return list(await asyncio.gather(*futures))
    finally:
        if own:
            await producer.stop()


def records_of(events: Iterable[Event]) -> list[tuple[bytes | None, bytes | None]]:
    return [(ev.symbol.encode(), encode_kafka(ev)) for ev in events]


async def fetch_events(database_url: str, table: str) -> list[Event]:
    """Every row of ``table`` back as events (receive time to the microsecond), in key order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY {', '.join(COLUMNS[table][:3])}")
    finally:
        await conn.close()
    return [from_row(table, row, with_received=True) for row in rows]


async def count_rows(database_url: str, table: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


def to_microseconds(ev: Event) -> Event:
    """The event as the table gives it back: receive time cut to the microsecond (timestamptz)."""
    return msgspec.structs.replace(ev, received_at=ev.received_at // 1000 * 1000)


def sort_key(ev: Event) -> tuple[Any, ...]:
    return (ev.symbol, ev.timestamp, encode_kafka(msgspec.structs.replace(ev, received_at=0)))


def same_events(got: list[Event], produced: list[Event]) -> bool:
    """Whether the rows read back are the events produced, as the table gives them back, in any order."""
    return sorted(got, key=sort_key) == sorted((to_microseconds(ev) for ev in produced), key=sort_key)


async def committed_total(settings: Settings, group: str) -> int:
    """Sum of the group's committed offsets on the quotes topic: the records it has finished."""
    assert settings.kafka_bootstrap_servers is not None
    name = topic_name("quotes", settings.kafka_topic_prefix)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group,
                              enable_auto_commit=False)  # fmt: skip
    await reader.start()
    try:
        total = 0
        for partition in range(settings.kafka_partitions):
            total += await reader.committed(TopicPartition(name, partition)) or 0
        return total
    finally:
        await reader.stop()


class ConsumerProcess:
    """One ``python -m tickpipe.cli consume ...`` child, its admin URL and its log."""

    def __init__(self, process: asyncio.subprocess.Process, admin_port: int, log: Path, table: str) -> None:
        self.process = process
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.log = log
        self.table = table

    async def health(self) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return dict((await http.get(f"{self.admin}/health")).json())
        except httpx.TransportError:
            return None

    async def partitions(self, table: str = "quotes") -> list[int]:
        doc = await self.health()
        if doc is None:
            return []
        return list(doc["workers"][table]["partitions"])

    async def metric(self, prefix: str) -> float | None:
        """The sum of the samples whose line starts with ``prefix`` (name and labels), None if there is none."""
        async with httpx.AsyncClient(timeout=2) as http:
            text = (await http.get(f"{self.admin}/metrics")).text
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)]
        return sum(values) if values else None

    async def rows_written(self, table: str = "quotes") -> float:
        return await self.metric(f'tickpipe_consumer_rows_written_total{{table="{table}"}}') or 0.0

    async def wait(self, timeout: float) -> int:
        """Wait for the process to exit (a deadline, not a sleep); its exit code."""
        return await asyncio.wait_for(self.process.wait(), timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a consumer child: the test's settings as the variables the CLI reads."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=str(settings.kafka_bootstrap_servers), DATABASE_URL=str(settings.database_url),
        KAFKA_TOPIC_PREFIX=settings.kafka_topic_prefix, KAFKA_ENABLE_IDEMPOTENCE="false",
        KAFKA_PARTITIONS=str(settings.kafka_partitions), BATCH_SIZE=str(settings.batch_size),
        BATCH_MAX_WAIT_MS=str(settings.batch_max_wait_ms),
        CONSUMER_SESSION_TIMEOUT_MS=str(settings.consumer_session_timeout_ms),
        CONSUMER_HEARTBEAT_INTERVAL_MS=str(settings.consumer_heartbeat_interval_ms),
        CONSUMER_RETRY_MAX_S=str(settings.consumer_retry_max_s), LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    env.update(extra)
    return env


class ConsumerProcesses:
    """Starts ``tickpipe consume`` children with a test's settings; ``close()`` kills any still running."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.started: list[ConsumerProcess] = []

    async def start(self, *args: str, table: str = "quotes", env: dict[str, str] | None = None) -> ConsumerProcess:
        """``tickpipe consume <table> --admin-port <free> *args``, its output in a log file of its own."""
        port = free_port()
        log = self.folder / f"consumer-{len(self.started)}.log"
        out = await asyncio.to_thread(log.open, "wb")
        with out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tickpipe.cli", "consume", table, "--admin-port", str(port), *args,
                cwd=ROOT, env=child_env(self.settings, **(env or {})), stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=out,
            )  # fmt: skip
        child = ConsumerProcess(process, port, log, table)
        self.started.append(child)
        return child

    async def close(self) -> None:
        for child in self.started:
            if child.process.returncode is None:
                child.process.kill()
                await child.process.wait()
