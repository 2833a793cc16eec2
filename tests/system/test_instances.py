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
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.consumers import ConsumerProcess, ConsumerProcesses, consumer_settings
from tests.helpers.waiting import wait_for
from tickpipe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
#: Fast documents, so "lost" shows within a second of a kill (the defaults are 1 s and 5 s).
HEALTH_ENV = {"HEALTH_INTERVAL_S": "0.2", "HEALTH_TTL_S": "1"}


class ApiProcess:
    """``tickpipe api --port 0``: its process, its log, and the port it printed."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.port: int | None = None

    @property
    def instance(self) -> str:
        return f"{socket.gethostname()}-{self.process.pid}"

    async def started(self) -> bool:
        found = re.search(r"tickpipe api on http://127\.0\.0\.1:(\d+)", self.log.read_text(errors="replace"))
        if found:
            self.port = int(found.group(1))
        return found is not None and "Application startup complete" in self.log.read_text(errors="replace")

    async def status(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=5) as http:
            response = await http.get("/status")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def instance_of(consumer: ConsumerProcess) -> str:
    return f"{socket.gethostname()}-{consumer.process.pid}"


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
    apis: list[ApiProcess] = []
    try:
        started = [await consumers.start(env={"REDIS_URL": redis_url, **HEALTH_ENV}) for _ in range(2)]
        for index in range(2):
            log = tmp_path / f"api-{index}.log"
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "tickpipe.cli", "api", "--port", "0", cwd=ROOT, stdout=out, stderr=out,
                    env={**env, "DATABASE_URL": str(settings.database_url), "LOG_LEVEL": "INFO"},
                )  # fmt: skip
            apis.append(ApiProcess(process, log))
        for api in apis:
            await wait_for(api.started, timeout=60, what=f"tickpipe api to start: {api.log}")
        yield started, apis, env
    finally:
        for api in apis:
            if api.process.returncode is None:
                api.process.kill()
                await api.process.wait()
        await consumers.close()


def states(body: dict[str, Any]) -> dict[str, str]:
    return {f"{doc['role']}/{doc['instance']}": doc["state"] for doc in body["instances"]}


async def test_two_consumers_and_two_apis_are_listed_and_the_killed_ones_shown_lost(
    pipeline: tuple[list[ConsumerProcess], list[ApiProcess], dict[str, str]],
) -> None:
    consumers, apis, env = pipeline
    everyone = {
        **{f"consumers/{instance_of(c)}": "ready" for c in consumers},
        **{f"api/{api.instance}": "ready" for api in apis},
    }

    async def all_ready() -> dict[str, Any] | None:
        body = await apis[0].status()
        return body if states(body) == everyone else None

    body = await wait_for(all_ready, timeout=90, what=f"four ready instances in /status, expected {everyone}")
    assert body["parts"]["consumers"] == {"reachable": True, "instances": 2, "lost": 0, "error": None}
    assert body["unhealthy"] == 0

    killed_consumer, killed_api = consumers[1], apis[1]
    killed_consumer.process.send_signal(signal.SIGKILL)
    killed_api.process.send_signal(signal.SIGKILL)
    await killed_consumer.wait(timeout=30)
    await asyncio.wait_for(killed_api.process.wait(), timeout=30)
    expected = {
        **everyone,
        f"consumers/{instance_of(killed_consumer)}": "lost",
        f"api/{killed_api.instance}": "lost",
    }

    async def two_lost() -> dict[str, Any] | None:
        body = await apis[0].status()
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
    apis[0].process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(apis[0].process.wait(), timeout=60) == 0
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickpipe.cli", "status", "--json", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(command.communicate(), timeout=60)
    assert command.returncode == 1
    assert '"state": "lost"' in out.decode() and '"state": "ready"' not in out.decode()
