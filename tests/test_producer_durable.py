"""The durable sink's rules, driven through every failure mode of an in-memory Kafka.

Whatever fails and whenever, at the end Kafka holds every record exactly once
and, per key, in the order it was offered.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from producer_fixtures import MemoryKafka, until

from producer.durable_sink import DurableSink
from producer.spool import Record, Spool

TOPIC = "tickpipe.quotes"


def make(n: int, start: int = 0, keys: int = 11) -> list[Record]:
    return [(TOPIC, f"K{i % keys}".encode(), f"{i}".encode()) for i in range(start, start + n)]


def assert_exactly_once_in_order(kafka: MemoryKafka, offered: list[Record]) -> None:
    got = kafka.by_key()
    want: dict[bytes | None, list[bytes]] = {}
    for _, key, value in offered:
        want.setdefault(key, []).append(value)
    assert sorted(kafka.values()) == sorted(v for _, _, v in offered), "not every record exactly once"
    assert got == want, "order per key broken"


class Running:
    """A sink running in a task, stopped (with its shutdown flush) at the end of the test."""

    def __init__(self, sink: DurableSink, shutdown_timeout: float = 5.0) -> None:
        self.sink = sink
        self.task = asyncio.create_task(sink.run(shutdown_timeout))

    async def stop(self) -> None:
        self.sink.stop()
        await self.task


def sink_in(tmp_path: Path, kafka: MemoryKafka, **options: float) -> DurableSink:
    return DurableSink(kafka, Spool(tmp_path / "spool", segment_bytes=8192).open(), retry_max=0.05, **options)  # type: ignore[arg-type]


async def test_healthy_kafka_gets_everything_in_order(tmp_path: Path) -> None:
    kafka = MemoryKafka(batch_records=50)
    run = Running(sink_in(tmp_path, kafka))
    offered = make(2000)
    for i in range(0, 2000, 100):
        run.sink.offer(offered[i : i + 100])
        await asyncio.sleep(0)
    await until(lambda: run.sink.stats.acked == 2000, what="all acknowledged")
    await run.stop()
    assert run.sink.stats.spooled == 0
    assert_exactly_once_in_order(kafka, offered)


async def test_kafka_down_spools_then_replays_in_order(tmp_path: Path) -> None:
    kafka = MemoryKafka()
    run = Running(sink_in(tmp_path, kafka))
    before, during, after = make(300), make(300, 300), make(300, 600)
    run.sink.offer(before)
    await until(lambda: run.sink.stats.acked == 300)
    kafka.set_mode("down")
    run.sink.offer(during)
    await until(lambda: run.sink.spool.depth > 0, what="records spooled")
    assert run.sink.state == "spooling"
    kafka.set_mode("up")
    run.sink.offer(after)
    await until(lambda: run.sink.stats.acked == 900 and run.sink.spool.depth == 0, what="spool drained")
    assert run.sink.state == "direct"
    await run.stop()
    assert_exactly_once_in_order(kafka, before + during + after)


async def test_an_unanswered_round_spills_newer_records_behind_a_slot(tmp_path: Path) -> None:
    kafka = MemoryKafka()
    run = Running(sink_in(tmp_path, kafka, spill_after=0.05))
    first = make(100)
    kafka.set_mode("hang")
    run.sink.offer(first)
    await until(lambda: kafka.rounds == 1)
    newer = make(400, 100)
    for i in range(0, 400, 40):
        run.sink.offer(newer[i : i + 40])
        await asyncio.sleep(0.01)
    await until(lambda: run.sink.spool.depth == 400, what="newer records spooled")
    kafka.set_mode("down")  # the hanging round now fails: it must be replayed before the newer ones
    await until(lambda: run.sink.spool.depth == 500, what="failed round in its slot")
    kafka.set_mode("up")
    await until(lambda: run.sink.spool.depth == 0 and run.sink.stats.acked == 500, what="drained")
    await run.stop()
    assert_exactly_once_in_order(kafka, first + newer)


async def test_a_partial_failure_replays_only_what_failed(tmp_path: Path) -> None:
    kafka = MemoryKafka(partitions=4)
    run = Running(sink_in(tmp_path, kafka))
    offered = make(400)
    run.sink.offer(offered[:200])
    await until(lambda: run.sink.stats.acked == 200)
    kafka.failing = {(TOPIC, 1), (TOPIC, 2)}
    run.sink.offer(offered[200:])
    await until(lambda: run.sink.stats.failed_rounds >= 3, what="some rounds fail")
    kafka.failing = set()
    await until(lambda: run.sink.spool.depth == 0 and run.sink.stats.acked == 400, what="drained")
    await run.stop()
    assert_exactly_once_in_order(kafka, offered)


async def test_unreachable_at_start_spools_until_it_connects(tmp_path: Path) -> None:
    kafka = MemoryKafka(reachable=False)
    run = Running(sink_in(tmp_path, kafka))
    offered = make(500)
    run.sink.offer(offered)
    await until(lambda: run.sink.spool.depth == 500 and kafka.starts >= 2, what="spooled while unreachable")
    assert run.sink.state == "connecting"
    kafka.reachable = True
    await until(lambda: run.sink.stats.acked == 500 and run.sink.spool.depth == 0, what="drained")
    await run.stop()
    assert_exactly_once_in_order(kafka, offered)


async def test_shutdown_spools_what_kafka_did_not_take_and_next_start_sends_it_first(tmp_path: Path) -> None:
    kafka = MemoryKafka()
    run = Running(sink_in(tmp_path, kafka), shutdown_timeout=0.2)
    first = make(200)
    run.sink.offer(first[:100])
    await until(lambda: run.sink.stats.acked == 100)
    kafka.set_mode("hang")
    run.sink.offer(first[100:])
    await until(lambda: kafka.rounds == 2)
    await run.stop()  # the round never answers: it goes to the spool
    assert run.sink.spool.depth == 100

    kafka.set_mode("up")
    second = make(100, 200)
    again = Running(sink_in(tmp_path, kafka))
    again.sink.offer(second)
    await until(lambda: again.sink.stats.acked == 200 and again.sink.spool.depth == 0, what="drained")
    await again.stop()
    assert_exactly_once_in_order(kafka, first + second)


@pytest.mark.parametrize("seed", range(6))
async def test_any_schedule_of_failures_keeps_every_record_once_in_order(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    kafka = MemoryKafka(partitions=3, batch_records=rng.choice([5, 50, 1000]))
    options = {"spill_after": 0.02, "queue_limit": rng.choice([50, 100_000]), "linger": rng.choice([0, 0.005])}
    run = Running(sink_in(tmp_path, kafka, **options))
    offered: list[Record] = []
    for _ in range(40):
        batch = make(rng.randint(1, 60), len(offered), keys=rng.randint(1, 9))
        offered += batch
        run.sink.offer(batch)
        roll = rng.random()
        if roll < 0.15:
            kafka.set_mode(rng.choice(["up", "down", "hang"]))
        elif roll < 0.25:
            kafka.failing = {(TOPIC, rng.randrange(3))} if rng.random() < 0.5 else set()
        await asyncio.sleep(rng.choice([0, 0, 0.001, 0.01]))
    kafka.set_mode("up")
    kafka.failing = set()
    await until(lambda: run.sink.stats.acked >= len(offered) and run.sink.spool.depth == 0, what="drained")
    await run.stop()
    assert_exactly_once_in_order(kafka, offered)
