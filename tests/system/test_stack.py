"""`tickpipe up` end to end: from nothing running to quotes on Redis, rows in PostgreSQL and a live dashboard."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import psutil
import pytest
import redis.asyncio
import websockets

from tests.helpers.waiting import wait_for
from tickpipe.dev.processes import free_port
from tickpipe.settings import Settings

pytestmark = pytest.mark.slow

START_DEADLINE_S = 120.0


class Stack:
    def __init__(self, process: subprocess.Popen[str], log: Path, env: dict[str, str]) -> None:
        self.process = process
        self.log = log
        self.env = env

    def read(self, path: Path) -> str:
        return path.read_text()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def logs(self) -> list[str]:
        """Everything tickpipe up and its services wrote: its output and every log file in DATA_DIR."""
        found = Path(self.env["DATA_DIR"]).rglob("*.log")
        return [self.output(), *(path.read_text(errors="replace") for path in found)]

    def banner_value(self, label: str) -> str:
        match = re.search(rf"^\s+{label}\s+(.+)$", self.output(), re.MULTILINE)
        assert match, f"{label!r} not in the banner:\n{self.output()[-3000:]}"
        return match.group(1).strip()


def stack_env(data_dir: Path) -> dict[str, str]:
    """A machine with nothing configured: every service embedded, every port free."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    env.update(
        DATA_DIR=str(data_dir),
        API_PORT=str(free_port()),
        PRODUCER_ADMIN_PORT=str(free_port()),
        CONSUMER_ADMIN_PORT=str(free_port()),
        SIMULATOR_PORT=str(free_port()),
        SIMULATOR_RATE="500",
        SUBSCRIBED_SYMBOLS="AAPL,MSFT,NVDA,TSLA",
        BATCH_MAX_WAIT_MS="100",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from run_stack(tmp_path, stack_env(tmp_path / "data"))


def run_stack(tmp_path: Path, env: dict[str, str]) -> Iterator[Stack]:
    """``tickpipe up`` with ``env`` until its banner is out; SIGTERM (then kill) when the test is done."""
    log = tmp_path / "up.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tickpipe.cli", "up"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    running = Stack(process, log, env)
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while "tickpipe is running" not in running.output():
            if process.poll() is not None:
                pytest.fail(f"tickpipe up exited with {process.returncode}:\n{running.output()[-5000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"tickpipe up did not start within {START_DEADLINE_S} s:\n{running.output()[-5000:]}")
            time.sleep(0.2)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


async def test_up_moves_data_end_to_end_and_stops_cleanly(stack: Stack) -> None:
    children = descendants(stack.process.pid)
    assert len(children) >= 4, "simulator, producer, consumers and api run as processes"
    redis_url = stack.banner_value("Redis").removeprefix("redis-cli -u ").strip()
    data_dir = stack.env["DATA_DIR"]  # absolute: a tmp_path folder
    # PGPASSFILE=<file> psql '<url>': the banner shows no password, the file holds it
    psql = re.fullmatch(r"PGPASSFILE=(\S+) psql '(\S+)'", stack.banner_value("PostgreSQL"))
    assert psql, stack.banner_value("PostgreSQL")
    passfile, database_url = psql.groups()
    password = stack.read(Path(data_dir, "postgres", "password")).strip()
    assert not [text for text in stack.logs() if password in text], "the password is in no output and no log"
    api = stack.banner_value("dashboard").rstrip("/")
    assert stack.banner_value("data") == data_dir, "the banner names the absolute data folder"
    kept = json.loads(stack.read(Path(data_dir, "ports.json")))  # the ports the next tickpipe up reuses
    assert f":{kept['redis']}" in redis_url and f":{kept['postgres']}/" in database_url, (kept, redis_url)

    # 1. quotes on the Redis channels
    client = redis.asyncio.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.psubscribe("quotes:*")
    quotes: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(60):
            while len(quotes) < 20:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    quotes.append(orjson.loads(message["data"]))
    finally:
        await pubsub.aclose()
        await client.aclose()
    assert {q["T"] for q in quotes} == {"q"}
    assert {q["S"] for q in quotes} <= {"AAPL", "MSFT", "NVDA", "TSLA"}

    # 2. rows growing in PostgreSQL
    conn = await asyncpg.connect(database_url, passfile=passfile)
    try:
        counts: list[int] = []
        async with asyncio.timeout(60):
            # polled with a deadline: rows must appear, then keep arriving
            while len(counts) < 2 or counts[0] == 0 or counts[-1] <= counts[0]:
                count = await conn.fetchval("SELECT count(*) FROM quotes")
                counts = [count] if not counts or counts[0] == 0 else [counts[0], count]
                await asyncio.sleep(0.2)
    finally:
        await conn.close()

    # 3. the dashboard is served and its live feed answers
    async with httpx.AsyncClient(timeout=10) as http:
        page = await http.get(f"{api}/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        bars = await http.get(f"{api}/quotes/AAPL", params={"limit": 5})
        assert bars.status_code == 200
    ws_url = api.replace("http://", "ws://") + "/v2/stream"
    async with websockets.connect(ws_url) as ws:
        assert orjson.loads(await ws.recv())[0]["msg"] == "connected"
        await ws.send(orjson.dumps({"action": "auth", "key": "k", "secret": "s"}).decode())
        assert orjson.loads(await ws.recv())[0]["msg"] == "authenticated"
        await ws.send(orjson.dumps({"action": "subscribe", "quotes": ["AAPL"]}).decode())
        seen: list[dict[str, object]] = []
        async with asyncio.timeout(30):
            while not any(m.get("T") == "q" for m in seen):
                seen.extend(orjson.loads(await ws.recv()))

    # 4. SIGTERM stops every part and leaves nothing running
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0, stack.output()[-3000:]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running: {[p.pid for p in alive]}"


def test_a_taken_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["API_PORT"])))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, "-m", "tickpipe.cli", "up"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    # the one line every service gives for a port it cannot bind (tickpipe.service.bind_error)
    assert f"API_PORT: cannot listen on 127.0.0.1:{env['API_PORT']}" in result.stderr, result.stderr
    assert not (tmp_path / "data" / "postgres").exists()


def test_up_help_shows_the_default_data_folder_and_the_wait() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe.cli", "up", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "default .tickpipe, relative to the current directory" in text
    assert "SERVICE_WAIT_S" in text and "ports.json" in text


@pytest.fixture
def two_feed_stack(tmp_path: Path) -> Iterator[Stack]:
    env = stack_env(tmp_path / "data")
    env.update(
        ALPACA_FEEDS="stocks,crypto", CRYPTO_PRODUCER_ADMIN_PORT=str(free_port()), CRYPTO_SYMBOLS="BTC/USD,ETH/USD"
    )
    yield from run_stack(tmp_path, env)


async def test_up_runs_one_producer_per_feed(two_feed_stack: Stack) -> None:
    stack = two_feed_stack
    port = stack.env["CRYPTO_PRODUCER_ADMIN_PORT"]
    assert stack.banner_value("producer").startswith(f"http://127.0.0.1:{stack.env['PRODUCER_ADMIN_PORT']}/health")
    crypto_line = stack.banner_value("producer-crypto")
    assert crypto_line.startswith(f"http://127.0.0.1:{port}/health") and "/v1beta3/crypto/us" in crypto_line
    redis_url = stack.banner_value("Redis").removeprefix("redis-cli -u ").strip()

    # Each feed's producer answers on its own admin port, carrying its own feed.
    async with httpx.AsyncClient(timeout=10) as http:
        stocks = (await http.get(f"http://127.0.0.1:{stack.env['PRODUCER_ADMIN_PORT']}/health")).json()
        crypto = (await http.get(f"http://127.0.0.1:{port}/health")).json()
    assert stocks["feed"] == "stock" and crypto["feed"] == "crypto"
    assert "tickpipe.crypto.quotes" in crypto["topics"] and "tickpipe.quotes" in stocks["topics"]
    assert crypto["backfill"]["enabled"] and crypto["backfill"]["resources"] == ["trades", "bars"]

    # Crypto quotes on their own channels, stock ones on theirs.
    client = redis.asyncio.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.psubscribe("crypto.quotes:*", "quotes:*")
    seen: dict[str, list[dict[str, object]]] = {"crypto.quotes": [], "quotes": []}
    try:
        async with asyncio.timeout(60):
            while min(len(v) for v in seen.values()) < 10:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    seen[message["channel"].decode().split(":")[0]].append(orjson.loads(message["data"]))
        instances = await client.hgetall("tickpipe:instances")
    finally:
        await pubsub.aclose()
        await client.aclose()
    assert {q["S"] for q in seen["crypto.quotes"]} <= {"BTC/USD", "ETH/USD"}
    assert {q["S"] for q in seen["quotes"]} <= {"AAPL", "MSFT", "NVDA", "TSLA"}
    names = [name.decode() if isinstance(name, bytes) else str(name) for name in instances]
    assert len([name for name in names if name.startswith("producer:crypto-")]) == 1, names

    # `consume all` writes the crypto tables too (ALPACA_FEEDS names crypto).
    psql = re.fullmatch(r"PGPASSFILE=(\S+) psql '(\S+)'", stack.banner_value("PostgreSQL"))
    assert psql, stack.banner_value("PostgreSQL")
    conn = await asyncpg.connect(psql.group(2), passfile=psql.group(1))
    try:

        async def crypto_rows() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM crypto_quotes WHERE symbol = 'BTC/USD'"))

        await wait_for(crypto_rows, 60, "crypto quotes stored by `tickpipe consume all`")
    finally:
        await conn.close()

    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0, stack.output()[-3000:]
