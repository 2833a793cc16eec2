"""Health documents in Redis (``tickpipe.health``): keys, states, expiry to lost, forgetting, Redis away.

Against the session's Redis, each test under a topic prefix of its own.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio

from tests.helpers.waiting import wait_for
from tickpipe.dev.processes import free_port
from tickpipe.health import (
    Publisher,
    Reading,
    doc_key,
    instance_id,
    namespace,
    read_instances,
    registry_key,
    summarize,
    unhealthy,
)


def test_key_names() -> None:
    assert namespace() == "tickpipe:" and namespace("t1.") == "t1."
    assert doc_key("consumers", "host-42") == "tickpipe:health:consumers:host-42"
    assert registry_key() == "tickpipe:instances"
    assert doc_key("api", "h-1", "t1.") == "t1.health:api:h-1" and registry_key("t1.") == "t1.instances"
    assert instance_id().startswith(f"{socket.gethostname()}-")


def steady(ready: bool = True, **kw: Any) -> Callable[[], Any]:
    async def read() -> Reading:
        return Reading(ready=ready, **kw)

    return read


@pytest.fixture
async def made(redis_url: str, topic_prefix: str) -> AsyncIterator[Callable[..., Publisher]]:
    publishers: list[Publisher] = []

    def make(read: Callable[[], Any], **kw: Any) -> Publisher:
        kw.setdefault("instance", f"i{len(publishers)}")
        publisher = Publisher(redis_url, kw.pop("role", "consumers"), read, prefix=topic_prefix, **kw)
        publishers.append(publisher)
        return publisher

    yield make
    for publisher in publishers:
        await publisher.stop()


async def test_the_document_and_its_ttl(
    made: Callable[..., Publisher], redis_client: redis.asyncio.Redis, topic_prefix: str
) -> None:
    read = steady(count=10, lag=3, last_error="kafka: timed out", figures={"rows_written": 10})
    publisher = made(read, interval=1.0, ttl=5.0, rate_unit="rows/s")
    await publisher.publish()
    raw = await redis_client.get(doc_key("consumers", "i0", topic_prefix))
    assert raw is not None
    doc = orjson.loads(raw)
    assert {k: doc[k] for k in ("role", "instance", "state", "ready", "count", "lag", "last_error", "rate")} == {
        "role": "consumers", "instance": "i0", "state": "ready", "ready": True, "count": 10, "lag": 3,
        "last_error": "kafka: timed out", "rate": None,
    }  # fmt: skip
    assert doc["figures"] == {"rows_written": 10} and doc["rate_unit"] == "rows/s" and doc["version"]
    assert 4000 < await redis_client.pttl(doc_key("consumers", "i0", topic_prefix)) <= 5000
    assert await redis_client.hexists(registry_key(topic_prefix), "consumers:i0")


async def test_states_starting_failing_and_a_broken_probe(made: Callable[..., Publisher]) -> None:
    now = [0.0]
    slow = made(steady(ready=False), clock=lambda: now[0])
    assert (await slow.document())["state"] == "starting"
    now[0] = 31.0  # past the start-up grace: not ready is failing
    assert (await slow.document())["state"] == "failing"

    async def broken() -> Reading:
        raise KeyError("workers")

    doc = await made(broken).document()
    assert (doc["state"], doc["ready"]) == ("starting", False)
    assert doc["last_error"] == "health probe failed: KeyError: 'workers'"


async def test_lost_then_forgotten(
    made: Callable[..., Publisher], redis_client: redis.asyncio.Redis, topic_prefix: str
) -> None:
    await made(steady(count=1), interval=0.1, ttl=0.2).publish()  # never refreshed, as if killed
    instances = await wait_for(lambda: lost_ones(redis_client, topic_prefix), what="the unrefreshed document to expire")
    assert [(doc["instance"], doc["ready"], doc["rate"]) for doc in instances] == [("i0", False, None)]
    assert unhealthy(instances) == instances
    later = instances[0]["updated_at"] + 7200
    assert await read_instances(redis_client, topic_prefix, forget_s=3600, now=later) == []
    assert not await redis_client.hexists(registry_key(topic_prefix), "consumers:i0")


async def lost_ones(client: redis.asyncio.Redis, prefix: str) -> list[dict[str, Any]]:
    return [doc for doc in await read_instances(client, prefix) if doc["state"] == "lost"]


async def test_instances_are_sorted_by_role_then_instance(
    made: Callable[..., Publisher], redis_client: redis.asyncio.Redis, topic_prefix: str
) -> None:
    for role, instance in [("simulator", "s"), ("api", "b"), ("consumers", "z"), ("api", "a"), ("producer", "p")]:
        await made(steady(), role=role, instance=instance).publish()
    listed = [(doc["role"], doc["instance"]) for doc in await read_instances(redis_client, topic_prefix)]
    assert listed == [("producer", "p"), ("consumers", "z"), ("api", "a"), ("api", "b"), ("simulator", "s")]


def test_summary_of_nothing() -> None:
    summary = summarize([])
    assert summary["instances"] == [] and summary["unhealthy"] == 0
    assert summary["parts"]["producer"] == {
        "reachable": False, "instances": 0, "lost": 0, "error": "no instance has reported",
    }  # fmt: skip


async def test_redis_away_is_retried_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    publisher = Publisher(f"redis://127.0.0.1:{free_port()}/0", "simulator", steady(), interval=0.05)
    with caplog.at_level(logging.WARNING, logger="tickpipe.health"):
        await publisher.start()
        await wait_for(lambda: publisher.attempts >= 3, what="three attempts to write")
        await publisher.stop()
    warnings = [r.getMessage() for r in caplog.records if r.name == "tickpipe.health"]
    assert len(warnings) == 1 and warnings[0].startswith("health: cannot write to Redis")
    assert publisher.written == 0


async def test_a_document_that_cannot_be_written_is_said_once_and_the_loop_goes_on(
    made: Callable[..., Publisher], caplog: pytest.LogCaptureFixture
) -> None:
    publisher = made(steady(figures={"odd": {1, 2}}), interval=0.02)  # a set: not JSON
    with caplog.at_level(logging.ERROR, logger="tickpipe.health"):
        await publisher.start()
        await wait_for(lambda: publisher.attempts >= 3, what="three attempts")
    errors = [r.getMessage() for r in caplog.records if r.name == "tickpipe.health"]
    assert errors == ["health: the document of consumers i0 cannot be written"]
    assert publisher.written == 0
