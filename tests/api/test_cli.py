"""``tickpipe api`` as a process: serves, answers, stops on SIGTERM with exit code 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys

import httpx
import psutil

from tests.helpers.waiting import wait_for


async def test_tickpipe_api_serves_and_stops_on_sigterm(migrated_db: str, redis_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": migrated_db, "REDIS_URL": redis_url, "API_PORT": "0", "LOG_LEVEL": "INFO"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickpipe.cli", "api", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    lines: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            lines.append(line.decode())

    reader = asyncio.create_task(read())
    try:
        started = await wait_for(
            lambda: any("Application startup complete" in line for line in lines) or proc.returncode is not None,
            what="tickpipe api to start",
        )
        assert started and proc.returncode is None, "".join(lines)
        port = re.search(r"http://127\.0\.0\.1:(\d+)", "".join(lines))
        assert port is not None, "".join(lines)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port.group(1)}") as client:
            assert (await client.get("/readyz")).json()["ready"] is True
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader


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
    env = {
        **os.environ, "DATABASE_URL": migrated_db, "REDIS_URL": redis_url, "API_PORT": "0", "LOG_LEVEL": "INFO",
        "KAFKA_TOPIC_PREFIX": topic_prefix, "HEALTH_INTERVAL_S": "0.2", "HEALTH_TTL_S": "1",
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickpipe.cli", "api", "--workers", "2", env=env, stderr=asyncio.subprocess.PIPE
    )
    lines: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            lines.append(line.decode())

    reader = asyncio.create_task(read())
    try:
        await wait_for(lambda: "".join(lines).count("Application startup complete") == 2, what="two workers")
        port = re.search(r"http://127\.0\.0\.1:(\d+)", "".join(lines))
        assert port is not None, "".join(lines)
        workers = sorted(child.pid for child in psutil.Process(proc.pid).children())
        assert len(workers) == 2
        names = {pid: f"{socket.gethostname()}-{pid}" for pid in workers}

        # A connection per request: one kept alive to the worker killed below would die with it.
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port.group(1)}", limits=fresh) as client:

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
        assert f"worker {workers[0]} ended with signal 9; starting another" in "".join(lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader
