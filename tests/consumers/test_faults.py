"""Consumers killed for real, on Apache Kafka and PostgreSQL: rows == records whatever dies, and when.

Every test runs ``tickpipe consume`` as child processes (``ConsumerProcesses``)
and kills them with SIGKILL: no shutdown code runs, the group keeps the dead
member until its session expires, and whatever the process had stored but not
committed is delivered again. They need Apache Kafka: Tansu's end offsets
undercount, and "drained" and "lag" are about end offsets.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import RecordMetadata

from consumers.service import ConsumerService
from consumers.worker import SIGKILL_HOOK, group_id
from tests.helpers.broker import apache_kafka
from tests.helpers.consumers import (
    BASE_NS,
    NS,
    ConsumerProcess,
    ConsumerProcesses,
    committed_total,
    consumer_settings,
    count_rows,
    fetch_events,
    make_quotes,
    make_trades,
    produce,
    records_of,
    same_events,
)
from tests.helpers.waiting import wait_for
from tickpipe.events import Event
from tickpipe.names import topic
from tickpipe.settings import Settings

pytestmark = apache_kafka


@pytest.fixture
def settings(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, clean_db, topic_prefix, batch_size=1000)


@pytest.fixture
async def children(settings: Settings, tmp_path: Path) -> AsyncIterator[ConsumerProcesses]:
    processes = ConsumerProcesses(settings, tmp_path)
    yield processes
    await processes.close()


async def send(settings: Settings, table: str, events: Sequence[Event]) -> list[RecordMetadata]:
    assert settings.kafka_bootstrap_servers is not None
    name = topic(table, settings.kafka_topic_prefix)
    return await produce(settings.kafka_bootstrap_servers, settings, name, records_of(events))


def burst_stats(child: ConsumerProcess) -> dict[str, dict[str, float]]:
    """The JSON line ``--burst`` prints last."""
    last = [line for line in child.output().splitlines() if line.startswith("{")][-1]
    return dict(orjson.loads(last))


async def owns(child: ConsumerProcess, table: str = "quotes") -> bool:
    return bool(await child.partitions(table))


@pytest.mark.slow
async def test_burst_after_a_member_was_sigkilled_drains_the_partitions_it_still_holds(
    settings: Settings, children: ConsumerProcesses
) -> None:
    """Issue #11: ``consume all --burst`` shares its groups with a member that is then SIGKILLed.

    The other member cannot reach PostgreSQL (its URL points at a socket that
    listens but never answers: start-up's wait sees the port open, every
    connection then times out), so it commits nothing: when it dies, its half of each topic is undrained,
    and the group keeps it assigned to the dead member until its session
    expires. The burst consumer catches up on its own half first; it must wait
    for the rebalance, drain the rest and only then exit 0: rows == records.
    """
    db_url = settings.database_url
    assert db_url is not None
    quotes, trades = make_quotes(12_000, seed=61), make_trades(6_000, seed=62)
    await send(settings, "quotes", quotes)
    await send(settings, "trades", trades)
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(64)  # the kernel completes handshakes; nobody ever reads
    nowhere = f"postgresql://tickpipe:x@127.0.0.1:{black_hole.getsockname()[1]}/tickpipe"
    victim = await children.start(
        table="all", env={"DATABASE_URL": nowhere, "CONSUMER_SESSION_TIMEOUT_MS": "20000",
                          "CONSUMER_HEARTBEAT_INTERVAL_MS": "1000"},
    )  # fmt: skip
    await wait_for(lambda: owns(victim, "quotes"), timeout=90, what="the doomed member to join")
    finisher = await children.start("--burst", table="all")

    async def shared() -> bool:
        mine = {table: set(await finisher.partitions(table)) for table in ("quotes", "trades")}
        theirs = {table: set(await victim.partitions(table)) for table in ("quotes", "trades")}
        return all(mine[t] and theirs[t] and not mine[t] & theirs[t] for t in ("quotes", "trades"))

    await wait_for(shared, timeout=120, what="the two members to share the partitions of quotes and trades")
    victim.process.kill()
    assert await victim.wait(timeout=30) == -signal.SIGKILL
    assert await count_rows(db_url, "quotes") < len(quotes)  # the dead member's half is still to be written

    assert await finisher.wait(timeout=240) == 0, finisher.output()
    black_hole.close()
    output = finisher.output()
    # It had caught up on its own partitions while the dead member's were not drained: where it used to stop.
    assert "are caught up; waiting (up to 120 s) for the group to drain the rest" in output, output
    assert "quotes: caught up (burst mode): every partition of" in output
    assert await count_rows(db_url, "quotes") == len(quotes)
    assert await count_rows(db_url, "trades") == len(trades)
    assert same_events(await fetch_events(db_url, "quotes"), list(quotes))
    assert same_events(await fetch_events(db_url, "trades"), list(trades))
    assert await committed_total(settings, group_id(settings, "quotes")) == len(quotes)


@pytest.mark.slow
async def test_three_members_one_sigkilled_mid_run_the_others_take_over_and_rows_equal_records(
    settings: Settings, children: ConsumerProcesses
) -> None:
    db_url = settings.database_url
    assert db_url is not None
    total = 30_000
    quotes = make_quotes(total, seed=71)
    members = [await children.start() for _ in range(3)]

    async def all_three_own() -> bool:
        owned = [set(await member.partitions()) for member in members]
        return all(owned) and sum(len(p) for p in owned) == settings.kafka_partitions

    await wait_for(all_three_own, timeout=120, what="three members to share the six partitions")

    async def produce_all() -> None:
        for start in range(0, total, 3_000):
            await send(settings, "quotes", quotes[start : start + 3_000])

    producing = asyncio.create_task(produce_all())
    try:

        async def a_third_written() -> bool:
            return await count_rows(db_url, "quotes") >= total // 3

        await wait_for(a_third_written, timeout=120, every=0.02, what="a third of the rows")
        victim, survivors = members[1], [members[0], members[2]]
        victim.process.kill()
        assert await victim.wait(timeout=30) == -signal.SIGKILL
        await producing
    finally:
        if not producing.done():
            producing.cancel()

    async def all_rows() -> bool:
        return await count_rows(db_url, "quotes") == total

    await wait_for(all_rows, timeout=180, what=f"{total} rows after the SIGKILL")

    async def survivors_own_everything() -> bool:
        owned = [set(await member.partitions()) for member in survivors]
        return not owned[0] & owned[1] and owned[0] | owned[1] == set(range(settings.kafka_partitions))

    await wait_for(survivors_own_everything, timeout=60, what="the two survivors to own all six partitions")
    group = group_id(settings, "quotes")

    async def all_committed() -> bool:
        return await committed_total(settings, group) == total

    await wait_for(all_committed, timeout=60, what=f"{total} offsets committed")
    for member in survivors:
        member.process.send_signal(signal.SIGTERM)
    for member in survivors:
        assert await member.wait(timeout=60) == 0, member.output()
    assert await count_rows(db_url, "quotes") == total
    assert same_events(await fetch_events(db_url, "quotes"), list(quotes))


@pytest.mark.slow
async def test_sigkill_between_the_database_commit_and_the_offset_commit_doubles_no_row(
    settings: Settings, children: ConsumerProcesses
) -> None:
    """The hook kills the process after its third batch's transaction and before that batch's offsets.

    Those rows are stored but their records are not committed: the next run reads
    them again and stores nothing new for them (duplicates), exactly that many.
    """
    db_url = settings.database_url
    assert db_url is not None
    total = 10_000
    quotes = make_quotes(total, seed=81)
    await send(settings, "quotes", quotes)
    doomed = await children.start(env={SIGKILL_HOOK: "3"})
    assert await doomed.wait(timeout=120) == -signal.SIGKILL, doomed.output()
    assert f"{SIGKILL_HOOK}=3: SIGKILL after the rows, before the offsets" in doomed.output()
    group = group_id(settings, "quotes")
    stored, committed = await count_rows(db_url, "quotes"), await committed_total(settings, group)
    assert committed < stored < total  # rows of at least one batch are in the table, their offsets are not

    finisher = await children.start("--burst")
    assert await finisher.wait(timeout=180) == 0, finisher.output()
    stats = burst_stats(finisher)["quotes"]
    assert stats["records"] == total - committed
    assert stats["duplicates"] == stored - committed
    assert stats["rows_written"] == total - stored
    assert await count_rows(db_url, "quotes") == total
    assert same_events(await fetch_events(db_url, "quotes"), list(quotes))
    assert await committed_total(settings, group) == total


async def test_burst_exits_1_naming_the_partitions_a_live_member_holds_and_never_drains(
    settings: Settings, children: ConsumerProcesses
) -> None:
    """A member that joined the group and commits nothing: ``--burst`` gives up after its wait, and says why."""
    assert settings.kafka_bootstrap_servers is not None
    name = topic("quotes", settings.kafka_topic_prefix)
    await send(settings, "quotes", make_quotes(3_000, seed=91))
    squatter = AIOKafkaConsumer(
        name, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group_id(settings, "quotes"),
        enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=30_000,
        heartbeat_interval_ms=1_000,
    )  # fmt: skip
    await squatter.start()
    try:
        finisher = await children.start("--burst", "--burst-wait", "3")

        async def split() -> bool:
            return len(squatter.assignment()) < settings.kafka_partitions and await owns(finisher)

        await wait_for(split, timeout=90, what="the burst consumer to join and share the partitions")
        held = sorted(tp.partition for tp in squatter.assignment())
        assert await finisher.wait(timeout=120) == 1, finisher.output()
    finally:
        await squatter.stop()
    output = finisher.output()
    assert "still not drained (committed/end offset)" in output, output
    message = next(line for line in output.splitlines() if "still not drained" in line)
    assert message.startswith("tickpipe consume: quotes: burst mode waited 3 s")
    named = {int(partition) for partition, _ in re.findall(rf"{re.escape(name)}\[(\d+)\] (\d+)/\d+", message)}
    assert named == set(held), message


async def test_the_lag_metric_is_exactly_the_records_not_yet_written(settings: Settings, clean_db: str) -> None:
    """N records produced, M written, the table locked: lag is N - M, per partition, until the rows are in."""
    first, later = make_quotes(1_000, seed=101), make_quotes(2_500, seed=102, start_ns=BASE_NS + 10 * 86_400 * NS)
    await send(settings, "quotes", first)
    await ConsumerService(settings, ["quotes"], burst=True, admin=False).run()
    assert await count_rows(clean_db, "quotes") == 1_000
    sent = await send(settings, "quotes", later)
    expected = Counter(f"{meta.topic}:{meta.partition}" for meta in sent)

    blocker = await asyncpg.connect(clean_db)
    await blocker.execute("BEGIN; LOCK TABLE quotes IN ACCESS EXCLUSIVE MODE")  # nothing more gets written
    service = ConsumerService(settings, ["quotes"], admin_port=0)
    runner = asyncio.create_task(service.run())
    worker = service.workers[0]
    assert service.admin is not None
    try:

        async def measured_while_blocked() -> bool:
            return worker.writing and len(worker.lag()) == settings.kafka_partitions

        await wait_for(measured_while_blocked, timeout=60, what="the lag of all six partitions while writes hang")
        assert worker.lag() == {key: expected.get(key, 0) for key in worker.lag()}
        registry = service.metrics.registry
        samples = {
            f"{tp.topic}:{tp.partition}": registry.get_sample_value(
                "tickpipe_consumer_lag", {"table": "quotes", "topic": tp.topic, "partition": str(tp.partition)}
            )
            for tp in worker.assigned
        }
        assert samples == {key: float(n) for key, n in worker.lag().items()}
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(f"{service.admin.url}/metrics")).text
        lines = [line for line in text.splitlines() if line.startswith("tickpipe_consumer_lag{")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in lines) == 2_500
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()

    async def all_written_and_no_lag() -> bool:
        return await count_rows(clean_db, "quotes") == 3_500 and sum(worker.lag().values()) == 0

    await wait_for(all_written_and_no_lag, timeout=90, what="3500 rows and a lag of 0")
    service.stop()
    await asyncio.wait_for(runner, timeout=60)
