"""The whole pipeline as processes while Apache Kafka crashes or freezes under it.

``tickpipe simulate --count N``, ``tickpipe producer`` and ``tickpipe consume
all`` run as child processes against a private Apache Kafka (data on disk),
the session's Redis and a clean PostgreSQL database. The broker is SIGKILLed
mid-run and restarted on the same port with its data; nobody touches the
producer or the consumers. Afterwards PostgreSQL must hold exactly the rows
of the N events the simulator sent: none lost, none twice; and while the
broker was away the producer's /health must not have claimed Kafka was fine.

A second test freezes the broker (SIGSTOP) for 30 s: the producer's spool
takes over and, once the broker runs again, Kafka holds every event exactly
once, in order per symbol.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from producer.service import ProducerService
from simulator import Simulator, SimulatorConfig
from tests.helpers.broker import apache_kafka
from tests.helpers.producer import decoded, per_symbol, producer_settings, read_topics, ready, running, sent_events
from tests.helpers.waiting import wait_for
from tickpipe.codecs import decode_kafka
from tickpipe.dev.embedded_kafka import EmbeddedKafka
from tickpipe.dev.processes import free_port
from tickpipe.rows import COLUMNS, KEYS, to_row

pytestmark = [pytest.mark.slow, apache_kafka]

ROOT = Path(__file__).resolve().parents[2]
ALL_TYPES = "quotes,trades,bars,updatedBars,dailyBars,statuses"  # every type the simulator makes: N sent = N read
TABLES = ("quotes", "trades", "bars")


class Child:
    """``python -m tickpipe.cli ARGS`` with its output in a log file; killed at the end if still running."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, log: Path) -> None:
        self.proc = proc
        self.name = name
        self.log = log

    @classmethod
    async def start(cls, name: str, env: dict[str, str], log_dir: Path, *args: str) -> Child:
        log = log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tickpipe.cli", *args, cwd=ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        return cls(proc, name, log)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, and the exit code (a child that ignores it is killed and the test fails)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout} s:\n{self.tail()}") from None


@pytest.fixture
async def children() -> AsyncIterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        if child.proc.returncode is None:
            child.proc.kill()
            await child.proc.wait()


def base_env(**values: str) -> dict[str, str]:
    """This environment without any service setting of the developer's, plus ``values``."""
    prefixes = ("ALPACA_", "KAFKA_", "REDIS_", "DATABASE_", "SPOOL_", "PRODUCER_", "CONSUMER_", "BATCH_", "SUBSCRIBED_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(values, PYTHONUNBUFFERED="1", LOG_LEVEL="INFO")
    return env


async def get_json(url: str) -> dict[str, Any] | None:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return dict((await http.get(url)).json())
    except (httpx.TransportError, ValueError):
        return None


async def row_keys(database_url: str, table: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f"SELECT {', '.join(KEYS[table])} FROM {table}")
    finally:
        await conn.close()
    return [tuple(row) for row in rows]


def key_of(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    named = dict(zip(COLUMNS[table], row, strict=True))
    return tuple(named[column] for column in KEYS[table])


async def test_broker_sigkill_and_restart_mid_run_leaves_postgres_with_every_event_once(
    private_kafka: EmbeddedKafka, redis_url: str, clean_db: str, topic_prefix: str, tmp_path: Path,
    children: list[Child],
) -> None:  # fmt: skip
    total, sim_port, producer_port, consumer_port = 30_000, free_port(), free_port(), free_port()
    env = base_env(
        KAFKA_BOOTSTRAP_SERVERS=private_kafka.url, KAFKA_TOPIC_PREFIX=topic_prefix, KAFKA_PARTITIONS="3",
        KAFKA_ENABLE_IDEMPOTENCE="true", KAFKA_REQUEST_TIMEOUT_MS="3000", KAFKA_SPILL_AFTER_S="0.5",
        REDIS_URL=redis_url, DATABASE_URL=clean_db, ALPACA_STREAM_URL=f"ws://127.0.0.1:{sim_port}/v2/iex",
        SUBSCRIBED_TYPES=ALL_TYPES, SPOOL_DIR=str(tmp_path / "spool"), PRODUCER_ADMIN_PORT=str(producer_port),
        UPSTREAM_RECONNECT_MAX_S="1", BATCH_MAX_WAIT_MS="100", CONSUMER_RETRY_MAX_S="1",
    )  # fmt: skip
    simulate = await Child.start(
        "simulate", env, tmp_path, "simulate", "--port", str(sim_port), "--count", str(total), "--rate", "1500",
        "--symbols", "6", "--seed", "11",
    )  # fmt: skip
    children.append(simulate)
    producer = await Child.start("producer", env, tmp_path, "producer")
    children.append(producer)
    consumer = await Child.start("consume", env, tmp_path, "consume", "all", "--admin-port", str(consumer_port))
    children.append(consumer)
    health_url = f"http://127.0.0.1:{producer_port}/health"
    states: list[str] = []  # the producer's Kafka state, each time it was asked during the outage

    async def producer_health(check: Callable[[dict[str, Any]], bool]) -> bool:
        doc = await get_json(health_url)
        for child in children:
            assert child.proc.returncode is None, f"{child.name} exited {child.proc.returncode}:\n{child.tail()}"
        return doc is not None and check(doc)

    async def rows_written() -> bool:
        return any([await row_keys(clean_db, t) for t in TABLES])

    await wait_for(lambda: producer_health(lambda h: h["kafka"]["acked"] > 5_000), 90, "events in Kafka")
    await wait_for(rows_written, 90, "rows in PostgreSQL before the crash")

    private_kafka.kill()

    def away(doc: dict[str, Any]) -> bool:
        states.append(doc["kafka"]["state"])
        return doc["kafka"]["state"] not in ("direct", "replaying") and doc["spool"]["depth"] > 500

    await wait_for(lambda: producer_health(away), 60, "the producer to spool while the broker is dead")
    private_kafka.restart()

    def done(doc: dict[str, Any]) -> bool:
        return doc["upstream"]["events"] == total and doc["spool"]["depth"] == 0 and doc["kafka"]["state"] == "direct"

    await wait_for(lambda: producer_health(done), 180, "every event read and in Kafka")
    health = await get_json(health_url)
    assert health is not None

    topics = [f"{topic_prefix}{family}" for family in (*TABLES, "statuses", "corrections", "cancels")]
    in_kafka = await read_topics(private_kafka.url, topics, expected=total)
    events = [decode_kafka(r.value) for r in in_kafka]
    assert len(events) == total, f"Kafka holds {len(events)} records for {total} events sent"
    want: dict[str, set[tuple[Any, ...]]] = {table: set() for table in TABLES}
    for event in events:
        if event.family in want:
            want[event.family].add(key_of(event.family, to_row(event)))

    async def all_rows() -> bool:
        return all([len(await row_keys(clean_db, t)) >= len(want[t]) for t in TABLES])

    await wait_for(all_rows, 180, "the consumers to write every row after the restart")
    for table in TABLES:
        got = await row_keys(clean_db, table)
        assert len(got) == len(set(got)) == len(want[table]), f"{table}: {len(got)} rows, {len(want[table])} keys"
        assert set(got) == want[table], f"{table}: other rows than the events sent"

    assert {"unknown", "spooling"} & set(states) and "direct" not in states[-1:], states
    assert health["kafka"]["spooled_total"] > 0 and health["kafka"]["replayed"] > 0
    for child in (producer, consumer, simulate):
        assert await child.stop() == 0, child.tail()


async def test_a_broker_frozen_for_30_s_hands_over_to_the_spool_and_keeps_order_per_symbol(
    private_kafka: EmbeddedKafka, redis_url: str, topic_prefix: str, unique_symbol: Callable[[], str],
    tmp_path: Path,
) -> None:  # fmt: skip
    symbols, total = tuple(sorted({unique_symbol() for _ in range(6)})), 60_000
    config = SimulatorConfig(symbols=symbols, rate=1_500, max_events=total, record=True, seed=5)
    topics = [f"{topic_prefix}{f}" for f in ("quotes", "trades", "bars", "statuses", "corrections", "cancels")]
    async with Simulator(config) as sim:
        settings = producer_settings(private_kafka.url, redis_url, topic_prefix, tmp_path / "spool", sim.url)
        service = ProducerService(settings)
        async with running(service):
            await ready(service)
            await wait_for(lambda: service.durable.stats.acked > 2_000, 60, "events in Kafka before the freeze")
            loop = asyncio.get_running_loop()
            private_kafka.pause()
            frozen_at = loop.time()
            await wait_for(lambda: not service.durable.writable, 30, "the producer to see Kafka is not answering")
            state_while_frozen = service.durable.state
            # the outage this test is about lasts 30 s; the spool must take every event meanwhile
            await wait_for(lambda: loop.time() >= frozen_at + 30 and service.spool.depth > 10_000, 60, "30 s frozen")
            acked_while_frozen = service.durable.stats.acked
            private_kafka.resume()
            await wait_for(lambda: service.upstream.events == total, 120, "all events read")
            await wait_for(lambda: service.spool.depth == 0 and service.durable.state == "direct", 120, "spool drained")
            await wait_for(lambda: service.durable.stats.acked == total, 60, "Kafka acknowledged all")

    assert state_while_frozen in ("unknown", "spooling")
    assert acked_while_frozen < total and service.durable.stats.spooled > 10_000
    sent = [e for session in sim.sessions for e in sent_events(session.sent_events())]
    in_kafka = decoded(await read_topics(private_kafka.url, topics, expected=total))
    assert len(in_kafka) == total == len(sent), "exactly once"
    assert per_symbol(in_kafka) == per_symbol(sent), "order per symbol held through the freeze"
