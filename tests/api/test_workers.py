"""``tickpipe api --workers 2`` as a process: clients on both workers, real Redis and PostgreSQL.

Which worker holds a connection is read from the kernel (psutil: the worker
whose socket's peer is the client's port), so each test knows it has clients
on both workers rather than hoping the kernel spread them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any

import orjson
import psutil
import redis.asyncio

from tests.helpers.api import ApiProcess, WsClient, api_cli, numsub, publish
from tests.helpers.events import day_ns, quote
from tests.helpers.waiting import wait_for
from tickpipe.codecs import encode_live
from tickpipe.events import Event

DAY = date(2024, 3, 6)


def wire(event: Event) -> dict[str, Any]:
    decoded: dict[str, Any] = orjson.loads(encode_live(event))
    return decoded


class Workers(ApiProcess):
    """``tickpipe api --workers 2``, and which worker answers a scrape."""

    async def scrape(self) -> tuple[int, str]:
        """``GET /metrics`` on a fresh connection: which worker answered, and the text."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            assert length is not None and head.startswith(b"HTTP/1.1 200"), head
            body = await reader.readexactly(int(length.group(1)))
            port = writer.get_extra_info("sockname")[1]
            pid: int = await wait_for(lambda: self.worker_of(port), what="the worker that answered")
            return pid, body.decode()
        finally:
            writer.close()
            await writer.wait_closed()

    async def scrape_each(self) -> dict[int, str]:
        """One scrape answered by each worker (new connections until each has answered one)."""
        answers: dict[int, str] = {}
        for _ in range(100):
            pid, text = await self.scrape()
            answers.setdefault(pid, text)
            if len(answers) == len(self.pids()):
                return answers
        raise AssertionError(f"100 scrapes reached only workers {sorted(answers)} of {self.pids()}")


def total(text: str, name: str) -> float:
    """The sum of a metric's samples in an exposition."""
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


@contextlib.asynccontextmanager
async def api_workers(database_url: str, redis_url: str, *args: str, **env: str) -> AsyncIterator[Workers]:
    """``tickpipe api --workers 2 ARGS`` on a free port, both workers started; stopped (if still running) after."""
    settings = {"HEALTH_INTERVAL_S": "0.2", "HEALTH_TTL_S": "1", **env}
    async with api_cli(database_url, redis_url, "--workers", "2", *args, started=2, env=settings) as api:
        workers = Workers(api.proc, api.lines)
        workers.port = api.port
        yield workers


async def clients_on_each(
    workers: Workers, per_worker: int, connect: Callable[[], Awaitable[WsClient]]
) -> dict[int, list[WsClient]]:
    """Connect until each worker holds ``per_worker`` clients; the extra ones are closed."""
    placed: dict[int, list[WsClient]] = {pid: [] for pid in workers.pids()}
    for _ in range(200):
        client = await connect()
        pid = await workers.client_on(client)
        if len(placed[pid]) < per_worker:
            placed[pid].append(client)
        else:
            await client.close()
        if all(len(clients) == per_worker for clients in placed.values()):
            return placed
    raise AssertionError(f"200 connections left the workers with {[len(c) for c in placed.values()]} clients")


async def test_each_client_gets_every_message_once_whichever_worker_it_is_on(
    migrated_db: str,
    redis_url: str,
    redis_client: redis.asyncio.Redis,
    listed_symbol: Callable[[], str],
) -> None:
    """Three clients on each worker, each on two of four symbols: every message of its symbols, in order,
    once; then ``/metrics`` answered by either worker counts every delivery of both."""
    symbols = [listed_symbol() for _ in range(4)]
    async with api_workers(migrated_db, redis_url) as workers:

        async def connect() -> WsClient:
            return await WsClient.connect(workers.ws_url)

        placed = await clients_on_each(workers, 3, connect)
        wants: list[tuple[WsClient, set[str]]] = []
        for n, client in enumerate(c for clients in placed.values() for c in clients):
            mine = {symbols[n % 4], symbols[(n + 1) % 4]}
            await client.login()
            await client.subscribe(quotes=sorted(mine))
            wants.append((client, mine))
        for symbol in symbols:  # each worker with a client on it has subscribed it in Redis
            on = {pid for pid, clients in placed.items() for c, mine in wants if c in clients and symbol in mine}
            await wait_for(functools.partial(numsub_is, redis_client, f"quotes:{symbol}", len(on)), what=f"{symbol}")

        ns = day_ns(DAY, 15)
        quotes = [quote(symbols[n % 4], ns + n, bid=100 + n) for n in range(400)]
        await publish(redis_client, *quotes)
        markers = [quote(symbol, ns + 1_000, bid=1) for symbol in symbols]
        await publish(redis_client, *markers)
        delivered = 0
        for client, mine in wants:
            expected = [wire(q) for q in [*quotes, *markers] if q.symbol in mine]
            # Exactly these, in order: a message doubled or lost shifts everything after it.
            assert await client.messages(len(expected)) == expected
            delivered += len(expected)
        # Nothing more was queued: the next thing each gets is the next thing published.
        last = [quote(symbol, ns + 2_000, bid=2) for symbol in symbols]
        await publish(redis_client, *last)
        for client, mine in wants:
            got = await client.messages(2)
            assert sorted(m["S"] for m in got) == sorted(mine) and all(m["bp"] == 2 for m in got)
            delivered += 2

        async def counted_by_each() -> bool:
            answers = await workers.scrape_each()
            return all(total(text, "tickpipe_api_ws_messages_sent_total") == delivered for text in answers.values())

        await wait_for(counted_by_each, what=f"every worker's scrape to count {delivered} messages sent")
        answers = await workers.scrape_each()
        assert all(total(text, "tickpipe_api_ws_clients") == 6 for text in answers.values()), answers
        for clients in placed.values():
            for client in clients:
                await client.close()


def replaced(workers: Workers, dead: int) -> bool:
    pids = workers.pids()
    return len(pids) == 2 and dead not in pids


async def numsub_is(client: redis.asyncio.Redis, channel: str, expected: int) -> bool:
    return await numsub(client, channel) == expected


async def test_a_slow_client_gets_407_on_whichever_worker_it_is(
    migrated_db: str,
    redis_url: str,
    redis_client: redis.asyncio.Redis,
    listed_symbol: Callable[[], str],
) -> None:
    """A client that stops reading on each worker: each is cut with 407 by its own worker, both counted."""
    symbol = listed_symbol()
    async with api_workers(migrated_db, redis_url, WS_CLIENT_QUEUE_BYTES="65536") as workers:

        async def connect() -> WsClient:
            return await WsClient.connect(workers.ws_url, rcvbuf=4096, max_queue=1)

        placed = await clients_on_each(workers, 1, connect)
        slow = [clients[0] for clients in placed.values()]
        for client in slow:
            await client.login()
            await client.subscribe(quotes=[symbol])
        await wait_for(lambda: numsub_is(redis_client, f"quotes:{symbol}", 2), what="both workers subscribed")
        ns, published = day_ns(DAY, 16), 0
        while total((await workers.scrape())[1], "tickpipe_api_ws_slow_client_disconnects_total") < 2:
            batch = [quote(symbol, ns + published + n, conditions=("R",) * 20) for n in range(200)]
            await publish(redis_client, *batch)
            published += len(batch)
            assert published < 2_000_000, "the slow clients were never cut"
        for client in slow:
            got, code = await client.until_closed()
            assert got[-1] == {"T": "error", "code": 407, "msg": "slow client"}
            assert code == 1008
        answers = await workers.scrape_each()
        assert all(total(t, "tickpipe_api_ws_slow_client_disconnects_total") == 2 for t in answers.values())


async def test_a_killed_worker_is_replaced_and_serves_and_sigterm_exits_0(
    migrated_db: str,
    redis_url: str,
    redis_client: redis.asyncio.Redis,
    listed_symbol: Callable[[], str],
) -> None:
    symbol = listed_symbol()
    async with api_workers(migrated_db, redis_url) as workers:
        first = workers.pids()
        os.kill(first[0], signal.SIGKILL)
        await wait_for(functools.partial(replaced, workers, first[0]), what="a worker in its place")
        (replacement,) = set(workers.pids()) - set(first)
        await wait_for(lambda: workers.log.count("Application startup complete") == 3, what="the new worker to start")
        assert re.search(rf"ERROR .*worker {first[0]} ended with signal 9; starting another", workers.log), workers.log

        async def connect() -> WsClient:
            return await WsClient.connect(workers.ws_url)

        placed = await clients_on_each(workers, 1, connect)
        assert set(placed) == {first[1], replacement}
        client = placed[replacement][0]
        await client.login()
        await client.subscribe(quotes=[symbol])
        await wait_for(lambda: numsub_is(redis_client, f"quotes:{symbol}", 1), what="the new worker subscribed")
        event = quote(symbol, day_ns(DAY, 17))
        await publish(redis_client, event)
        assert await client.message() == wire(event)
        await client.close()
        await placed[first[1]][0].close()
        workers.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await workers.proc.wait() == 0
        assert not any(psutil.pid_exists(pid) for pid in (first[1], replacement))


async def test_workers_dying_again_and_again_make_the_parent_give_up(migrated_db: str, redis_url: str) -> None:
    """Five deaths within a minute: the parent stops the other worker and exits 1 saying so."""
    async with api_workers(migrated_db, redis_url) as workers:
        for deaths in range(1, 6):
            victim = workers.pids()[0]
            os.kill(victim, signal.SIGKILL)
            if deaths < 5:
                await wait_for(functools.partial(replaced, workers, victim), what=f"replacement number {deaths}")
        async with asyncio.timeout(30):
            assert await workers.proc.wait() == 1
        assert "5 workers ended in 60 s, giving up (stopping the others, exit 1)" in workers.log, workers.log
