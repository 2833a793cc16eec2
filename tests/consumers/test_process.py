"""``tickpipe consume`` as real processes: SIGTERM, SIGKILL at random moments, two processes in one group."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from consumers.worker import group_id
from tests.helpers.consumers import (
    ConsumerProcess,
    ConsumerProcesses,
    committed_total,
    consumer_settings,
    count_rows,
    fetch_events,
    make_quotes,
    produce,
    records_of,
    sort_key,
    to_microseconds,
)
from tests.helpers.waiting import wait_for
from tickpipe.names import topic
from tickpipe.settings import Settings

Spawn = Callable[..., Awaitable[ConsumerProcess]]


@pytest.fixture
def settings(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, clean_db, topic_prefix, batch_size=2000)


@pytest.fixture
async def spawn(settings: Settings, tmp_path: Path) -> AsyncIterator[Spawn]:
    """Start consumer processes; any still running at the end is killed."""
    children = ConsumerProcesses(settings, tmp_path)
    yield children.start
    await children.close()


async def test_sigterm_mid_run_exits_0_and_never_commits_ahead_of_the_rows(settings: Settings, spawn: Spawn) -> None:
    assert settings.kafka_bootstrap_servers is not None and settings.database_url is not None
    db_url = settings.database_url
    quotes = make_quotes(20_000, seed=31)
    await produce(settings.kafka_bootstrap_servers, settings, topic("quotes", settings.kafka_topic_prefix),
                  records_of(quotes))  # fmt: skip
    consumer = await spawn()

    async def writing() -> bool:
        return await count_rows(db_url, "quotes") > 0

    await wait_for(writing, timeout=60, what="the consumer to write rows")
    consumer.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(consumer.process.wait(), timeout=60) == 0, consumer.log.read_text()
    group = group_id(settings, "quotes")
    committed = await committed_total(settings, group)
    assert 0 < committed <= await count_rows(db_url, "quotes")

    finisher = await spawn("--burst")
    assert await asyncio.wait_for(finisher.process.wait(), timeout=120) == 0, finisher.log.read_text()
    assert await count_rows(db_url, "quotes") == 20_000
    assert await committed_total(settings, group) == 20_000


@pytest.mark.slow
async def test_five_sigkills_at_random_moments_of_a_100k_run_leave_exactly_n_rows(
    settings: Settings, spawn: Spawn
) -> None:
    assert settings.kafka_bootstrap_servers is not None and settings.database_url is not None
    db_url, total = settings.database_url, 100_000
    rng = random.Random(20240304)
    quotes = make_quotes(total, seed=41)
    name = topic("quotes", settings.kafka_topic_prefix)

    async def produce_all() -> None:
        for start in range(0, total, 10_000):
            await produce(
                settings.kafka_bootstrap_servers or "", settings, name, records_of(quotes[start : start + 10_000])
            )

    producing = asyncio.create_task(produce_all())
    kills = sorted(rng.sample(range(1_000, total - 10_000), 5))
    try:
        for threshold in kills:
            consumer = await spawn()

            async def reached(target: int = threshold) -> bool:
                return await count_rows(db_url, "quotes") >= target

            await wait_for(reached, timeout=120, every=0.02, what=f"{threshold} rows before the next SIGKILL")
            consumer.process.kill()
            await consumer.process.wait()
            assert await count_rows(db_url, "quotes") <= total
        await producing
    finally:
        if not producing.done():
            producing.cancel()
    finisher = await spawn("--burst")
    assert await asyncio.wait_for(finisher.process.wait(), timeout=180) == 0, finisher.log.read_text()
    assert await count_rows(db_url, "quotes") == total
    got = await fetch_events(db_url, "quotes")
    assert sorted(got, key=sort_key) == sorted((to_microseconds(q) for q in quotes), key=sort_key)


async def test_two_processes_in_one_group_share_the_partitions_and_write_n_rows(
    settings: Settings, spawn: Spawn
) -> None:
    assert settings.kafka_bootstrap_servers is not None and settings.database_url is not None
    db_url = settings.database_url
    first, second = await spawn(), await spawn()

    async def both_own_partitions() -> bool:
        return bool(await first.partitions()) and bool(await second.partitions())

    await wait_for(both_own_partitions, timeout=90, what="both processes to own partitions")
    mine, theirs = set(await first.partitions()), set(await second.partitions())
    assert not mine & theirs and mine | theirs == set(range(settings.kafka_partitions))

    quotes = make_quotes(10_000, seed=51)
    await produce(settings.kafka_bootstrap_servers, settings, topic("quotes", settings.kafka_topic_prefix),
                  records_of(quotes))  # fmt: skip

    async def all_rows() -> bool:
        return await count_rows(db_url, "quotes") == 10_000

    await wait_for(all_rows, timeout=120, what="10000 rows")
    written = [await first.rows_written(), await second.rows_written()]
    assert all(count > 0 for count in written) and sum(written) == 10_000
    for consumer in (first, second):
        consumer.process.send_signal(signal.SIGTERM)
    for consumer in (first, second):
        assert await asyncio.wait_for(consumer.process.wait(), timeout=60) == 0, consumer.log.read_text()
    assert await count_rows(db_url, "quotes") == 10_000
