"""The consume loop against the real broker and PostgreSQL: N events give N rows, whatever happens."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
import pytest

from consumers.progress import WorkerStats
from consumers.service import ConsumerService
from tests.helpers.consumers import (
    committed_total,
    consumer_settings,
    count_rows,
    expected_bars,
    fetch_events,
    make_bars,
    make_quotes,
    make_trades,
    produce,
    records_of,
    same_events,
)
from tests.helpers.waiting import wait_for
from tickpipe import db
from tickpipe.codecs import ns_to_datetime
from tickpipe.names import topic
from tickpipe.rows import COLUMNS, to_row
from tickpipe.settings import Settings


@pytest.fixture
def settings(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, clean_db, topic_prefix)


async def burst(settings: Settings, tables: list[str], group: str | None = None) -> dict[str, WorkerStats]:
    return await ConsumerService(settings, tables, burst=True, admin=False, group=group).run()


async def test_n_events_become_n_rows_field_for_field_and_a_new_group_adds_none(settings: Settings) -> None:
    quotes, trades, bars = make_quotes(3000), make_trades(1500), make_bars(12)
    prefix, bootstrap = settings.kafka_topic_prefix, settings.kafka_bootstrap_servers
    assert bootstrap is not None and settings.database_url is not None
    await produce(bootstrap, settings, topic("quotes", prefix), records_of(quotes))
    await produce(bootstrap, settings, topic("trades", prefix), records_of(trades))
    await produce(bootstrap, settings, topic("bars", prefix), records_of(bars))

    stats = await burst(settings, ["quotes", "trades", "bars"])
    assert (stats["quotes"].records, stats["quotes"].rows_written) == (3000, 3000)
    assert (stats["trades"].records, stats["trades"].rows_written) == (1500, 1500)
    want_bars = expected_bars(bars)
    assert stats["bars"].records == len(bars) and stats["bars"].rows_written >= len(want_bars)
    assert same_events(await fetch_events(settings.database_url, "quotes"), list(quotes))
    assert same_events(await fetch_events(settings.database_url, "trades"), list(trades))
    assert same_events(await fetch_events(settings.database_url, "bars"), list(want_bars.values()))

    # The same group again: every offset was committed, nothing is left to read.
    again = await burst(settings, ["quotes", "trades"])
    assert again["quotes"].records == 0 and again["trades"].records == 0

    # A new group reads the whole topic again; the table does not grow.
    fresh = await burst(settings, ["quotes"], group=f"{prefix}another-group")
    assert fresh["quotes"].records == 3000 and fresh["quotes"].rows_written == 0
    assert fresh["quotes"].duplicates == 3000
    assert await count_rows(settings.database_url, "quotes") == 3000


async def test_batches_are_bounded_by_size(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> None:
    settings = consumer_settings(kafka_bootstrap, clean_db, topic_prefix, batch_size=64)
    await produce(kafka_bootstrap, settings, topic("quotes", topic_prefix), records_of(make_quotes(1000)))
    service = ConsumerService(settings, ["quotes"], burst=True, admin=False)
    stats = await service.run()
    assert stats["quotes"].rows_written == 1000 and stats["quotes"].batches >= 1000 // 64
    registry = service.metrics.registry
    total = registry.get_sample_value("tickpipe_consumer_batch_records_count", {"table": "quotes"})
    within = registry.get_sample_value("tickpipe_consumer_batch_records_bucket", {"table": "quotes", "le": "100.0"})
    assert total == stats["quotes"].batches and within == total


async def test_admin_endpoints_and_a_partial_batch_written_after_the_wait(settings: Settings) -> None:
    assert settings.kafka_bootstrap_servers is not None and settings.database_url is not None
    service = ConsumerService(settings, ["quotes"], admin_port=0)
    assert service.admin is not None
    runner = asyncio.create_task(service.run())
    base = service.admin.url
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:

        async def ready() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(ready, timeout=60, what="/readyz to answer 200")
        assert (await http.get("/healthz")).json() == {"status": "alive"}
        # 37 records, far below BATCH_SIZE (500): the batch's maximum wait writes them.
        await produce(settings.kafka_bootstrap_servers, settings, topic("quotes", settings.kafka_topic_prefix),
                      records_of(make_quotes(37)))  # fmt: skip

        async def written() -> bool:
            assert settings.database_url is not None
            return await count_rows(settings.database_url, "quotes") == 37

        await wait_for(written, timeout=60, what="37 rows in quotes")

        async def metrics_show_it() -> bool:
            text = (await http.get("/metrics")).text
            return 'tickpipe_consumer_rows_written_total{table="quotes"} 37.0' in text

        await wait_for(metrics_show_it, timeout=30, what="rows written in /metrics")
        text = (await http.get("/metrics")).text
        assert "Tansu's end offsets undercount" in text
        assert "tickpipe_consumer_batch_seconds_bucket" in text and "tickpipe_consumer_lag" in text
        assert 'tickpipe_consumer_database_up{table="quotes"} 1.0' in text
        health = (await http.get("/health")).json()
        assert health["workers"]["quotes"]["partitions"] == [0, 1, 2, 3, 4, 5]
        assert health["workers"]["quotes"]["stats"]["rows_written"] == 37
        json.dumps(health)
    service.stop()
    stats = await asyncio.wait_for(runner, timeout=60)
    assert stats["quotes"].rows_written == 37 and stats["quotes"].abandoned == 0


async def test_a_second_consumer_joining_mid_stream_loses_and_doubles_nothing(settings: Settings) -> None:
    assert settings.kafka_bootstrap_servers is not None and settings.database_url is not None
    bootstrap, db_url = settings.kafka_bootstrap_servers, settings.database_url
    name = topic("quotes", settings.kafka_topic_prefix)
    quotes = make_quotes(6000, seed=11)
    first = ConsumerService(settings, ["quotes"], admin=False)
    first_run = asyncio.create_task(first.run())
    await produce(bootstrap, settings, name, records_of(quotes[:2000]))

    async def some_rows() -> bool:
        return await count_rows(db_url, "quotes") > 0

    await wait_for(some_rows, timeout=60, what="the first consumer to write")
    second = ConsumerService(settings, ["quotes"], admin=False)
    second_run = asyncio.create_task(second.run())
    # Keep records flowing while the group rebalances, so batches are in flight when partitions move.
    for start in range(2000, 6000, 500):
        await produce(bootstrap, settings, name, records_of(quotes[start : start + 500]))

    async def both_assigned() -> bool:
        return bool(first.workers[0].assigned) and bool(second.workers[0].assigned)

    await wait_for(both_assigned, timeout=90, what="both consumers to own partitions")

    async def all_rows() -> bool:
        return await count_rows(db_url, "quotes") == 6000

    await wait_for(all_rows, timeout=120, what="6000 rows")
    owned = first.workers[0].assigned | second.workers[0].assigned
    assert not first.workers[0].assigned & second.workers[0].assigned and len(owned) == 6
    first.stop()
    second.stop()
    stats = [s["quotes"] for s in await asyncio.gather(first_run, second_run)]
    assert stats[0].rebalances >= 1
    assert stats[0].rows_written + stats[1].rows_written == 6000
    assert same_events(await fetch_events(db_url, "quotes"), list(quotes))


async def test_a_rebalance_waits_for_the_write_in_flight_which_commits_first(settings: Settings) -> None:
    assert settings.kafka_bootstrap_servers is not None and settings.database_url is not None
    bootstrap, db_url = settings.kafka_bootstrap_servers, settings.database_url
    name = topic("quotes", settings.kafka_topic_prefix)
    quotes = make_quotes(1000, seed=13)
    await produce(bootstrap, settings, name, records_of(quotes[:500]))
    blocker = await asyncpg.connect(db_url)
    await blocker.execute("BEGIN; LOCK TABLE quotes IN ACCESS EXCLUSIVE MODE")  # the first write will hang
    first = ConsumerService(settings, ["quotes"], admin=False)
    first_run = asyncio.create_task(first.run())
    worker = first.workers[0]
    second: ConsumerService | None = None
    try:

        async def writing() -> bool:
            return worker.writing

        await wait_for(writing, timeout=60, what="the first consumer to be writing")
        second = ConsumerService(settings, ["quotes"], admin=False)
        second_run = asyncio.create_task(second.run())

        async def revoking() -> bool:
            return worker.stats.rebalances >= 1

        await wait_for(revoking, timeout=60, what="the rebalance to reach the first consumer")
        assert worker.writing  # the revoke waits for it, holding up the rebalance
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()
    await produce(bootstrap, settings, name, records_of(quotes[500:]))

    async def all_rows() -> bool:
        return await count_rows(db_url, "quotes") == 1000

    await wait_for(all_rows, timeout=90, what="1000 rows")
    first.stop()
    second.stop()
    one, two = (s["quotes"] for s in await asyncio.gather(first_run, second_run))
    # The first consumer finished its batch and committed it before the partitions moved, so nobody
    # wrote those records twice and nothing was abandoned.
    assert one.abandoned == 0 and one.rows_written >= 1
    assert one.duplicates == 0 and two.duplicates == 0
    assert one.rows_written + two.rows_written == 1000


async def test_a_later_batch_stored_first_never_commits_past_an_earlier_one(
    kafka_bootstrap: str, clean_db: str, topic_prefix: str
) -> None:
    # One partition, batches of 100: batch 1 holds quote 0, whose key an open transaction holds,
    # so batch 1 waits while batch 2 (on the second connection) is stored.
    settings = consumer_settings(kafka_bootstrap, clean_db, topic_prefix, kafka_partitions=1, batch_size=100)
    quotes = make_quotes(300, seed=17)
    await produce(kafka_bootstrap, settings, topic("quotes", topic_prefix), records_of(quotes))
    blocker = await asyncpg.connect(clean_db)
    # Every partition the rows need, created now: creating one later would wait for the open transaction.
    await db.ensure_partitions(blocker, {ns_to_datetime(q.timestamp).date() for q in quotes}, ["quotes"])
    await blocker.execute("BEGIN")
    columns = COLUMNS["quotes"]
    await blocker.execute(
        f"INSERT INTO quotes ({', '.join(columns)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})",
        *to_row(quotes[0]),
    )
    service = ConsumerService(settings, ["quotes"], admin=False)
    runner = asyncio.create_task(service.run())
    group = service.workers[0].group
    try:

        async def second_batch_stored() -> bool:
            return await count_rows(clean_db, "quotes") == 100

        await wait_for(second_batch_stored, timeout=60, what="the second batch's 100 rows")
        assert await committed_total(settings, group) == 0  # batch 2 is stored, but batch 1 is not: no commit
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()

    async def all_stored_and_committed() -> bool:
        return await count_rows(clean_db, "quotes") == 300 and await committed_total(settings, group) == 300

    await wait_for(all_stored_and_committed, timeout=60, what="300 rows and 300 committed")
    service.stop()
    stats = (await asyncio.wait_for(runner, timeout=60))["quotes"]
    assert stats.rows_written == 300 and stats.abandoned == 0
