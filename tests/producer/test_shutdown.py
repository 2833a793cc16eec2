"""``tickpipe producer`` as a process: SIGTERM loses nothing it read, and the next start sends the spool first."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec

from producer.service import ProducerService
from producer.spool import Spool
from simulator import Simulator, SimulatorConfig
from tests.helpers.producer import (
    KafkaStallProxy,
    ProxiedKafka,
    decoded,
    per_symbol,
    producer_settings,
    read_topics,
    ready,
    running,
    sent_events,
)
from tests.helpers.waiting import wait_for
from tickpipe.codecs import decode_kafka
from tickpipe.dev.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
ALL_TYPES = "quotes,trades,bars,updatedBars,dailyBars,statuses"
SUMMARY = re.compile(r"producer stopped: events_read=(\d+) kafka_acked=(\d+) spooled_total=(\d+) spool_depth=(\d+)")


def producer_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "KAFKA_", "REDIS_", "SPOOL_"))}
    env.update(values)
    return env


class Process:
    """``python -m tickpipe.cli producer ARGS`` with its log lines collected."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        assert proc.stderr is not None
        self._reader = asyncio.create_task(self._read(proc.stderr))

    @classmethod
    async def start(cls, env: dict[str, str], *args: str) -> Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tickpipe.cli", "producer", *args,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def wait(self, timeout: float) -> int:
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            tail = "\n".join(self.lines[-30:])
            raise AssertionError(f"the producer did not exit within {timeout} s:\n{tail}") from None
        await self._reader
        return code

    def summary(self) -> tuple[int, ...]:
        for line in self.lines:
            if match := SUMMARY.search(line):
                return tuple(int(g) for g in match.groups())
        raise AssertionError("no 'producer stopped' line in:\n" + "\n".join(self.lines[-30:]))


async def test_sigterm_mid_stream_keeps_every_event_read_and_the_next_start_sends_the_spool_first(
    stalling_kafka: tuple[ProxiedKafka, KafkaStallProxy], redis_url: str, topic_prefix: str,
    unique_symbol: Callable[[], str], tmp_path: Path,
) -> None:  # fmt: skip
    _, proxy = stalling_kafka
    symbols = tuple(sorted(unique_symbol() for _ in range(4)))
    spool_dir, admin_port = tmp_path / "spool", free_port()
    topics = [f"{topic_prefix}{f}" for f in ("quotes", "trades", "bars", "statuses", "corrections", "cancels")]
    async with Simulator(SimulatorConfig(symbols=symbols, rate=2_000, record=True)) as sim:
        env = producer_env(
            KAFKA_BOOTSTRAP_SERVERS=proxy.address, KAFKA_ENABLE_IDEMPOTENCE="false", KAFKA_TOPIC_PREFIX=topic_prefix,
            KAFKA_PARTITIONS="3", KAFKA_REQUEST_TIMEOUT_MS="2000", KAFKA_SPILL_AFTER_S="0.3", REDIS_URL=redis_url,
            ALPACA_STREAM_URL=sim.url, SUBSCRIBED_TYPES=ALL_TYPES, SPOOL_DIR=str(spool_dir),
            PRODUCER_ADMIN_PORT=str(admin_port), PRODUCER_SHUTDOWN_TIMEOUT_S="5", UPSTREAM_RECONNECT_MAX_S="0.5",
        )  # fmt: skip
        producer = await Process.start(env)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as http:

            async def health_says(check: Callable[[dict], bool]) -> bool:
                try:
                    return check((await http.get("/health")).json())
                except httpx.TransportError:
                    return producer.proc.returncode is not None  # gone: let wait() report it

            await wait_for(lambda: health_says(lambda h: h["kafka"]["acked"] > 300), 30, "events in Kafka")
            await proxy.stall()
            await wait_for(lambda: health_says(lambda h: h["spool"]["depth"] > 500), 30, "events spooled")
        producer.proc.send_signal(signal.SIGTERM)
        assert await producer.wait(timeout=5 + 15) == 0
        read, acked, _, spool_depth = producer.summary()
        first_session = sent_events(sim.sessions[0].sent_events())[:read]

        await proxy.restore()
        in_kafka = decoded(await read_topics(proxy.address, topics))
        spool = Spool(spool_dir).open()
        spooled = [msgspec.structs.replace(decode_kafka(r.record[2]), received_at=0) for r in spool.read(10**9)]
        spool.close()
        assert len(in_kafka) == acked and len(spooled) == spool_depth > 0
        assert len(in_kafka) + len(spooled) == read, "every event read is in Kafka or in the spool"
        kafka_part, spool_part = per_symbol(in_kafka), per_symbol(spooled)
        joined = {k: kafka_part.get(k, []) + spool_part.get(k, []) for k in kafka_part.keys() | spool_part.keys()}
        assert joined == per_symbol(first_session), "once each, in order per symbol"

        settings = producer_settings(proxy.address, redis_url, topic_prefix, spool_dir, sim.url)
        service = ProducerService(settings)
        async with running(service):
            await ready(service)
            await wait_for(lambda: service.spool.depth == 0 and service.durable.stats.acked > spool_depth + 300)
        second_session = sent_events(sim.sessions[1].sent_events())[: service.upstream.events]

    after = per_symbol(decoded(await read_topics(proxy.address, topics, expected=read + len(second_session))))
    before, later = per_symbol(first_session), per_symbol(second_session)
    assert after == {k: before.get(k, []) + later.get(k, []) for k in before.keys() | later.keys()}


async def test_drain_mode_reads_n_events_flushes_and_exits_zero(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, unique_symbol: Callable[[], str], tmp_path: Path
) -> None:
    async with Simulator(SimulatorConfig(symbols=(unique_symbol(),), max_events=4_000)) as sim:
        env = producer_env(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_ENABLE_IDEMPOTENCE="false", KAFKA_TOPIC_PREFIX=topic_prefix,
            REDIS_URL=redis_url, ALPACA_STREAM_URL=sim.url, SUBSCRIBED_TYPES=ALL_TYPES,
            SPOOL_DIR=str(tmp_path / "spool"), PRODUCER_ADMIN_PORT="0",
        )  # fmt: skip
        producer = await Process.start(env, "--max-events", "4000")
        assert await producer.wait(timeout=60) == 0
    read, acked, _, depth = producer.summary()
    assert read == acked == 4_000 and depth == 0


async def test_a_refused_login_exits_one_with_the_reason(redis_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(key="right", secret="right")) as sim:
        # A Kafka that answers: `tickpipe producer` waits for its services before it starts (SERVICE_WAIT_S).
        env = producer_env(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, REDIS_URL=redis_url, ALPACA_STREAM_URL=sim.url,
            ALPACA_API_KEY="wrong", ALPACA_API_SECRET="wrong", SPOOL_DIR=str(tmp_path / "spool"),
            PRODUCER_ADMIN_PORT="0", KAFKA_REQUEST_TIMEOUT_MS="300",
        )  # fmt: skip
        producer = await Process.start(env)
        assert await producer.wait(timeout=60) == 1
    assert any("402 auth failed" in line and "not retrying" in line for line in producer.lines)
    assert len(sim.sessions) == 1
