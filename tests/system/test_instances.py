"""Every instance's health, with no address known: two consumer processes and two API processes, one of each killed.

Real processes (``tickpipe consume``, ``tickpipe api``) over the session's
Kafka, PostgreSQL and Redis, under a topic prefix of the test's own (so its
instances are the only ones listed). Each publishes its health document to
Redis; ``/status`` of either API and ``tickpipe status`` list all four. After a
SIGKILL of one consumer and one API, the two are listed as lost (their
documents expired, their registry entries kept) and ``tickpipe status`` exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.api import ApiProcess, api_cli
from tests.helpers.consumers import ConsumerProcess, ConsumerProcesses, consumer_settings
from tests.helpers.waiting import wait_for
from tickpipe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
#: Fast documents, so "lost" shows within a second of a kill (the defaults are 1 s and 5 s).
HEALTH_ENV = {"HEALTH_INTERVAL_S": "0.2", "HEALTH_TTL_S": "1"}


def instance_of(pid: int) -> str:
    """The instance name a process on this host publishes its health under (``tickpipe.health.instance_id``)."""
    return f"{socket.gethostname()}-{pid}"


async def status_of(api: ApiProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api.url, timeout=5) as http:
        response = await http.get("/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def settings(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, clean_db, topic_prefix)


@pytest.fixture
async def pipeline(
    settings: Settings, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[list[ConsumerProcess], list[ApiProcess], dict[str, str]]]:
    """Two consumer processes and two API processes publishing health under the test's prefix."""
    env = {**os.environ, "REDIS_URL": redis_url, "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix, **HEALTH_ENV}
    consumers = ConsumerProcesses(settings, tmp_path)
    try:
        started = [await consumers.start(env={"REDIS_URL": redis_url, **HEALTH_ENV}) for _ in range(2)]
        async with contextlib.AsyncExitStack() as stack:
            api_env = {"KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix, **HEALTH_ENV}
            apis = [
                await stack.enter_async_context(api_cli(str(settings.database_url), redis_url, env=api_env))
                for _ in range(2)
            ]
            yield started, apis, env
    finally:
        await consumers.close()


def states(body: dict[str, Any]) -> dict[str, str]:
    return {f"{doc['role']}/{doc['instance']}": doc["state"] for doc in body["instances"]}


async def test_two_consumers_and_two_apis_are_listed_and_the_killed_ones_shown_lost(
    pipeline: tuple[list[ConsumerProcess], list[ApiProcess], dict[str, str]],
) -> None:
    consumers, apis, env = pipeline
    everyone = {
        **{f"consumers/{instance_of(c.process.pid)}": "ready" for c in consumers},
        **{f"api/{instance_of(api.proc.pid)}": "ready" for api in apis},
    }

    async def all_ready() -> dict[str, Any] | None:
        body = await status_of(apis[0])
        return body if states(body) == everyone else None

    body = await wait_for(all_ready, timeout=90, what=f"four ready instances in /status, expected {everyone}")
    assert body["parts"]["consumers"] == {"reachable": True, "instances": 2, "lost": 0, "error": None}
    assert body["unhealthy"] == 0

    killed_consumer, killed_api = consumers[1], apis[1]
    killed_consumer.process.send_signal(signal.SIGKILL)
    killed_api.proc.send_signal(signal.SIGKILL)
    await killed_consumer.wait(timeout=30)
    await asyncio.wait_for(killed_api.proc.wait(), timeout=30)
    expected = {
        **everyone,
        f"consumers/{instance_of(killed_consumer.process.pid)}": "lost",
        f"api/{instance_of(killed_api.proc.pid)}": "lost",
    }

    async def two_lost() -> dict[str, Any] | None:
        body = await status_of(apis[0])
        return body if states(body) == expected else None

    body = await wait_for(two_lost, timeout=30, what=f"the killed instances shown as lost, expected {expected}")
    assert body["parts"]["consumers"] == {"reachable": True, "instances": 1, "lost": 1, "error": None}
    assert body["unhealthy"] == 2
    lost = [doc for doc in body["instances"] if doc["state"] == "lost"]
    assert all(doc["silent_s"] >= 1 and doc["version"] and doc["pid"] for doc in lost)

    # The same picture in the terminal command, plain text when not a terminal, and exit 1.
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickpipe.cli", "status", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(command.communicate(), timeout=60)
    text = out.decode()
    assert command.returncode == 1, (text, err.decode())
    assert "\033[" not in text
    rows = {tuple(line.split()[:3]) for line in text.splitlines()[1:] if line.strip()}
    for name, state in expected.items():
        role, instance = name.split("/")
        assert (role, instance, state) in rows, text
    assert "4 instances: 2 lost, 2 ready" in text

    # A clean stop withdraws the documents: nothing left but the two lost ones.
    consumers[0].process.send_signal(signal.SIGTERM)
    assert await consumers[0].wait(timeout=60) == 0, consumers[0].output()
    apis[0].proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(apis[0].proc.wait(), timeout=60) == 0
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickpipe.cli", "status", "--json", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(command.communicate(), timeout=60)
    assert command.returncode == 1
    assert '"state": "lost"' in out.decode() and '"state": "ready"' not in out.decode()
