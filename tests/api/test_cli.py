"""``tickpipe api`` as a process: serves, answers, stops on SIGTERM with exit code 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import httpx

from tests.helpers.api import api_cli
from tests.helpers.waiting import wait_for


async def test_tickpipe_api_serves_and_stops_on_sigterm(migrated_db: str, redis_url: str) -> None:
    async with api_cli(migrated_db, redis_url) as api:
        async with httpx.AsyncClient(base_url=api.url) as client:
            assert (await client.get("/readyz")).json()["ready"] is True
        api.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await api.proc.wait() == 0


async def test_tickpipe_api_without_services_says_which_are_missing() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickpipe.cli", "api", env=env, stderr=asyncio.subprocess.PIPE, cwd="/"
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert b"DATABASE_URL and REDIS_URL" in err


async def test_workers_share_the_port_and_each_is_an_instance(
    migrated_db: str, redis_url: str, topic_prefix: str
) -> None:
    """``--workers 2``: two processes on one port, both listed in /status; one SIGKILLed shows as lost and
    is replaced (tests/api/test_workers.py), and SIGTERM then stops the workers and the parent exits 0."""
    env = {"KAFKA_TOPIC_PREFIX": topic_prefix, "HEALTH_INTERVAL_S": "0.2", "HEALTH_TTL_S": "1"}
    async with api_cli(migrated_db, redis_url, "--workers", "2", started=2, env=env) as api:
        proc = api.proc
        workers = api.pids()
        assert len(workers) == 2
        names = {pid: f"{socket.gethostname()}-{pid}" for pid in workers}

        # A connection per request: one kept alive to the worker killed below would die with it.
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=api.url, limits=fresh) as client:

            async def api_states() -> dict[str, str]:
                body = (await client.get("/status")).json()
                return {doc["instance"]: doc["state"] for doc in body["instances"] if doc["role"] == "api"}

            async def listed(expected: dict[str, str]) -> bool:
                try:  # a request the killed worker held when it died fails: ask again
                    states = await api_states()
                except httpx.TransportError:
                    return False
                return expected.items() <= states.items()  # its replacement is listed too

            both = {names[pid]: "ready" for pid in workers}
            await wait_for(lambda: listed(both), what=f"both workers ready in /status: {both}")
            os.kill(workers[0], signal.SIGKILL)
            one_lost = {**both, names[workers[0]]: "lost"}
            await wait_for(lambda: listed(one_lost), what=f"the killed worker shown as lost: {one_lost}")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        assert f"worker {workers[0]} ended with signal 9; starting another" in api.log
