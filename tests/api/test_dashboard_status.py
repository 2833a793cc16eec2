"""``GET /status``: every instance's health document from Redis, and the dashboard strip's figures.

The documents are written by the real publisher (``tickpipe.health``) into the
session's Redis, under a topic prefix of the test's own, shaped as the
services' readings give them. No service's address is needed or guessed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis.asyncio
from fastapi import FastAPI

from api.routes.status import Tracker, router
from tests.helpers.waiting import wait_for
from tickpipe.dev.processes import free_port
from tickpipe.health import Publisher, Reading, Role
from tickpipe.settings import load_settings


def reading(**kw: Any) -> Callable[[], Any]:
    async def read() -> Reading:
        return Reading(**{"ready": True, **kw})

    return read


def producer_reading(count: int) -> Callable[[], Any]:
    figures = {"drops": 3, "spool_depth": 0, "dead_letters": 1, "upstream": "streaming"}
    return reading(count=count, figures=figures)


def consumer_reading(lag: int, rows: int, dead: int) -> Callable[[], Any]:
    return reading(count=rows, lag=lag, figures={"rows_written": rows, "dead_letters": dead})


@pytest.fixture
async def publishers(redis_url: str, topic_prefix: str) -> AsyncIterator[Callable[..., Publisher]]:
    """Make publishers of this test's own prefix; each is closed (and withdrawn) after the test."""
    made: list[Publisher] = []

    def make(role: Role, read: Callable[[], Any], instance: str, **kw: Any) -> Publisher:
        publisher = Publisher(redis_url, role, read, prefix=topic_prefix, instance=instance, **kw)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        await publisher.stop()


@pytest.fixture
async def status_app() -> AsyncIterator[Callable[[str, str], FastAPI]]:
    """Make apps with only the /status route, over the Redis at a URL; their clients closed after the test."""
    clients: list[redis.asyncio.Redis] = []

    def make(redis_url: str, topic_prefix: str) -> FastAPI:
        app = FastAPI()
        app.include_router(router)
        settings = load_settings(redis_url=redis_url, kafka_topic_prefix=topic_prefix)
        clients.append(redis.asyncio.Redis.from_url(redis_url))
        app.state.api = SimpleNamespace(settings=settings, redis=clients[-1])
        return app

    yield make
    for client in clients:
        await client.aclose()


async def get_status(app: FastAPI) -> dict[str, Any]:
    app.state.status_tracker = None  # no cached answer between the steps of a test
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        response = await client.get("/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_status_lists_every_instance_and_sums_them(
    redis_url: str, topic_prefix: str, publishers: Callable[..., Publisher], status_app: Callable[[str, str], FastAPI]
) -> None:
    await publishers("producer", producer_reading(1000), "p-1").publish()
    await publishers("consumers", consumer_reading(4, 1000, 2), "c-1").publish()
    await publishers("consumers", consumer_reading(6, 520, 1), "c-2").publish()
    body = await get_status(status_app(redis_url, topic_prefix))
    assert [(doc["role"], doc["instance"], doc["state"]) for doc in body["instances"]] == [
        ("producer", "p-1", "ready"),
        ("consumers", "c-1", "ready"),
        ("consumers", "c-2", "ready"),
    ]
    assert body["parts"]["producer"] == {"reachable": True, "instances": 1, "lost": 0, "error": None}
    assert body["parts"]["consumers"]["instances"] == 2
    assert body["events_total"] == 1000
    assert body["events_per_s"] is None  # one sample: no rate yet
    assert body["drops"] == 3
    assert body["consumer_lag"] == 10
    assert body["rows_written"] == 1520
    assert body["dead_letters"] == 4  # 1 in the producer, 3 in the consumers
    assert body["upstream"] == "streaming"
    assert body["unhealthy"] == 0 and body["error"] is None


async def test_events_per_second_from_the_producers_successive_documents(
    redis_url: str, topic_prefix: str, publishers: Callable[..., Publisher], status_app: Callable[[str, str], FastAPI]
) -> None:
    now = [100.0]
    counts = [1000]

    async def read() -> Reading:
        return Reading(ready=True, count=counts[0])

    publisher = publishers("producer", read, "p-1", clock=lambda: now[0])
    await publisher.publish()
    counts[0], now[0] = 1500, 102.5
    await publisher.publish()
    assert (await get_status(status_app(redis_url, topic_prefix)))["events_per_s"] == 200.0
    counts[0], now[0] = 300, 104.5  # restarted: counts start over, no negative rate
    await publisher.publish()
    assert (await get_status(status_app(redis_url, topic_prefix)))["events_per_s"] is None


async def test_an_instance_that_went_silent_is_listed_as_lost(
    redis_url: str, topic_prefix: str, publishers: Callable[..., Publisher], status_app: Callable[[str, str], FastAPI]
) -> None:
    app = status_app(redis_url, topic_prefix)
    await publishers("consumers", consumer_reading(1, 10, 0), "alive", interval=0.1, ttl=0.5).start()
    # Written once and never refreshed, as by a process killed right after: its document expires.
    await publishers("consumers", consumer_reading(7, 99, 5), "silent", interval=0.1, ttl=0.2).publish()

    async def lost() -> dict[str, Any] | None:
        body = await get_status(app)
        return body if any(doc["state"] == "lost" for doc in body["instances"]) else None

    body = await wait_for(lost, what="the silent instance to be shown as lost")
    states = {doc["instance"]: doc["state"] for doc in body["instances"]}
    assert states == {"alive": "ready", "silent": "lost"}
    assert body["parts"]["consumers"] == {"reachable": True, "instances": 1, "lost": 1, "error": None}
    assert body["consumer_lag"] == 1  # a lost instance's lag is stale: not counted
    assert body["dead_letters"] == 5  # its dead letters happened: counted
    assert body["unhealthy"] == 1


async def test_a_clean_stop_is_not_a_lost_instance(
    redis_url: str, topic_prefix: str, publishers: Callable[..., Publisher], status_app: Callable[[str, str], FastAPI]
) -> None:
    app = status_app(redis_url, topic_prefix)
    publisher = publishers("api", reading(count=0), "a-1", interval=0.1, ttl=0.5)
    await publisher.start()
    await wait_for(lambda: publisher.written > 0, what="the first document")
    assert [doc["instance"] for doc in (await get_status(app))["instances"]] == ["a-1"]
    await publisher.stop()
    assert (await get_status(app))["instances"] == []


async def test_nothing_running_names_the_pipelines_parts_as_down(
    redis_url: str, topic_prefix: str, status_app: Callable[[str, str], FastAPI]
) -> None:
    body = await get_status(status_app(redis_url, topic_prefix))
    assert {name: (part["reachable"], part["error"]) for name, part in body["parts"].items()} == {
        "producer": (False, "no instance has reported"),
        "consumers": (False, "no instance has reported"),
    }
    assert [body[k] for k in ("events_per_s", "drops", "consumer_lag", "dead_letters")] == [None] * 4


async def test_redis_that_does_not_answer_is_reported_not_fatal(
    topic_prefix: str, status_app: Callable[[str, str], FastAPI]
) -> None:
    body = await get_status(status_app(f"redis://127.0.0.1:{free_port()}/0", topic_prefix))
    assert body["error"] is not None and body["error"].startswith("Redis: ")
    assert body["parts"]["producer"]["reachable"] is False and body["instances"] == []


async def test_answers_are_cached_for_a_second() -> None:
    now = [100.0]
    reads = [0]

    async def instances() -> list[dict[str, Any]]:
        reads[0] += 1
        return []

    tracker = Tracker(clock=lambda: now[0])
    await tracker.status(instances)
    now[0] += 0.5
    await tracker.status(instances)
    assert reads[0] == 1
    now[0] += 0.6
    await tracker.status(instances)
    assert reads[0] == 2
