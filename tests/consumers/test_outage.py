"""PostgreSQL going away: the consumer pauses, retries, commits nothing, and resumes on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from consumers.progress import WorkerStats
from consumers.service import ConsumerService
from consumers.store import retry_backoff
from consumers.worker import Worker
from tests.helpers.consumers import (
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
from tests.helpers.services import in_thread
from tests.helpers.waiting import wait_for
from tickpipe import db
from tickpipe.dev.embedded import free_port
from tickpipe.dev.services import EmbeddedPostgres
from tickpipe.names import topic
from tickpipe.settings import Settings


def test_retries_wait_on_the_shared_curve_capped_by_consumer_retry_max_s() -> None:
    backoff = retry_backoff(5.0)
    assert (backoff.base, backoff.cap) == (0.1, 5.0)
    assert [backoff.ceiling(n) for n in (1, 2, 3, 7, 50)] == [0.1, 0.2, 0.4, 5.0, 5.0]
    assert all(0.05 <= backoff.compute(1) <= 0.1 for _ in range(100))
    tiny = retry_backoff(0.02)  # a cap below the first wait: every wait is the cap's
    assert tiny.ceiling(1) == tiny.ceiling(9) == 0.02


@pytest.fixture
def restartable_postgres(service_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A private PostgreSQL on a fixed port, so ``stop()`` then ``start()`` keeps its URL."""
    with EmbeddedPostgres(service_dir / "postgres", port=free_port(), durable=False, fresh=True) as pg:
        in_thread(lambda: db.upgrade(pg.url))  # alembic runs its own event loop: not on the test's thread
        yield pg


@pytest.fixture
async def settings(kafka_bootstrap: str, restartable_postgres: EmbeddedPostgres, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, restartable_postgres.url, topic_prefix)


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[tuple[ConsumerService, asyncio.Task[dict[str, WorkerStats]]]]:
    service = ConsumerService(settings, ["quotes"], admin=False)
    task = asyncio.create_task(service.run())
    yield service, task
    service.stop()
    await asyncio.wait({task}, timeout=60)


async def test_a_postgres_restart_mid_run_loses_and_doubles_nothing(
    settings: Settings,
    restartable_postgres: EmbeddedPostgres,
    running: tuple[ConsumerService, asyncio.Task[dict[str, WorkerStats]]],
) -> None:
    service, task = running
    worker: Worker = service.workers[0]
    url, bootstrap = restartable_postgres.url, settings.kafka_bootstrap_servers
    assert bootstrap is not None
    name = topic("quotes", settings.kafka_topic_prefix)
    quotes = make_quotes(4000, seed=21)
    await produce(bootstrap, settings, name, records_of(quotes[:2000]))

    async def rows(n: int) -> bool:
        return await count_rows(url, "quotes") == n

    await wait_for(lambda: rows(2000), timeout=60, what="the first 2000 rows")
    await wait_for(lambda: committed_total_is(settings, worker.group, 2000), timeout=30, what="2000 committed")

    await asyncio.to_thread(restartable_postgres.stop)
    await produce(bootstrap, settings, name, records_of(quotes[2000:]))

    async def retrying_and_paused() -> bool:
        owned = worker.consumer.assignment()
        return worker.stats.write_retries >= 3 and bool(owned) and worker.consumer.paused() == owned

    await wait_for(retrying_and_paused, timeout=60, what="write retries with fetching paused")
    assert not worker.database_up and not task.done()
    assert await committed_total(settings, worker.group) == 2000  # nothing committed during the outage

    await asyncio.to_thread(restartable_postgres.start)
    await wait_for(lambda: rows(4000), timeout=90, what="all 4000 rows after the restart")
    await wait_for(lambda: committed_total_is(settings, worker.group, 4000), timeout=30, what="4000 committed")
    assert not task.done() and worker.database_up and not worker.consumer.paused()
    got = await fetch_events(url, "quotes")
    assert sorted(got, key=sort_key) == sorted((to_microseconds(q) for q in quotes), key=sort_key)


async def committed_total_is(settings: Settings, group: str, n: int) -> bool:
    return await committed_total(settings, group) == n


async def test_stopping_during_an_outage_abandons_the_batch_and_commits_nothing(
    settings: Settings,
    restartable_postgres: EmbeddedPostgres,
    running: tuple[ConsumerService, asyncio.Task[dict[str, WorkerStats]]],
) -> None:
    service, task = running
    worker = service.workers[0]
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    await wait_for(lambda: _joined(worker), timeout=60, what="the worker to join its group")
    await asyncio.to_thread(restartable_postgres.stop)
    await produce(bootstrap, settings, topic("quotes", settings.kafka_topic_prefix), records_of(make_quotes(300)))

    async def retrying() -> bool:
        return worker.stats.write_retries >= 2

    await wait_for(retrying, timeout=60, what="write retries")
    service.stop()
    stats = await asyncio.wait_for(task, timeout=30)
    assert stats["quotes"].abandoned >= 1 and stats["quotes"].rows_written == 0
    assert await committed_total(settings, worker.group) == 0


async def _joined(worker: Worker) -> bool:
    return worker.joined
