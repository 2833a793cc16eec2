"""Per-key limits across API processes (``api.key_limits``): two ``tickpipe api`` processes on one Redis and
one PostgreSQL share each key's streams and requests per minute; a killed process's streams free
themselves; with Redis stopped each process counts alone, says so, and shares again once Redis is back.

Two plain processes rather than ``--workers 2``: the test chooses which process each client reaches, so
"the K+1-th stream is refused on either" is checked on both, not on whichever the kernel picked. Each test
has a topic prefix of its own (``KAFKA_TOPIC_PREFIX``), hence Redis keys of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from collections.abc import AsyncIterator

import httpx
import redis.asyncio

from tests.helpers.api import ApiProcess, WsClient, api_cli
from tests.helpers.keys import add_key, key_headers
from tests.helpers.waiting import wait_for
from tickpipe.dev.services import EmbeddedRedis
from tickpipe.health import namespace
from tickpipe.names import key_streams

ROUTE = "/bars/SHARED"
PARAMS = {"timeframe": "5Min"}
REFUSED = ([{"T": "error", "code": 406, "msg": "connection limit exceeded"}], 1008)
PER_PROCESS = "API key limits are counted per API process until it does"
SHARED_AGAIN = "API key limits are shared across API processes again"


async def keys_loaded(api: ApiProcess) -> bool:
    """Whether the process has read the keys (before that, on loopback, it asks for none)."""
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        return (await http.get(ROUTE, params=PARAMS)).status_code == 401


@contextlib.asynccontextmanager
async def two_apis(database_url: str, redis_url: str, prefix: str) -> AsyncIterator[tuple[ApiProcess, ApiProcess]]:
    """Two ``tickpipe api`` processes on the same PostgreSQL and Redis, both with the keys read."""
    env = {"API_KEYS_REFRESH_S": "0.5", "KAFKA_TOPIC_PREFIX": prefix}
    async with api_cli(database_url, redis_url, env=env) as first, api_cli(database_url, redis_url, env=env) as second:
        for api in (first, second):
            await wait_for(functools.partial(keys_loaded, api), what="the API to read the keys")
        yield first, second


def said(api: ApiProcess, text: str) -> bool:
    return text in api.log


async def open_streams(client: redis.asyncio.Redis, prefix: str, key_id: str) -> int:
    """Unexpired slots of the key's streams, by Redis's clock (as the processes count them)."""
    seconds, micros = await client.time()
    return int(await client.zcount(key_streams(key_id, namespace(prefix)), f"({seconds + micros / 1e6}", "+inf"))


async def streams_are(client: redis.asyncio.Redis, prefix: str, key_id: str, expected: int) -> bool:
    return await open_streams(client, prefix, key_id) == expected


async def stream(api: ApiProcess, key: tuple[str, str]) -> WsClient:
    """A stream authenticated with ``key`` (by its headers); fails if it was refused."""
    client = await WsClient.connect(api.ws_url, headers=key_headers(*key))
    assert await client.message() == {"T": "success", "msg": "authenticated"}
    return client


async def refused(api: ApiProcess, key: tuple[str, str]) -> None:
    client = await WsClient.connect(api.ws_url, headers=key_headers(*key))
    assert await client.until_closed() == REFUSED


async def test_a_keys_streams_are_counted_across_processes(
    keyed_db: str, redis_url: str, redis_client: redis.asyncio.Redis, topic_prefix: str
) -> None:
    """max_connections=3: two streams on one process and one on the other fill it; the fourth is refused
    on either; one closed frees one slot, which the other process can then give."""
    key = await add_key(keyed_db, "three streams", connections=3)
    async with two_apis(keyed_db, redis_url, topic_prefix) as (a, b):
        held = [await stream(a, key), await stream(a, key), await stream(b, key)]
        assert await open_streams(redis_client, topic_prefix, key[0]) == 3
        await refused(a, key)
        await refused(b, key)
        await held.pop(0).close()
        await wait_for(lambda: streams_are(redis_client, topic_prefix, key[0], 2), what="the slot to be given back")
        held.append(await stream(b, key))  # the slot freed on a, taken on b
        await refused(a, key)
        await refused(b, key)
        for client in held:
            await client.close()
        await wait_for(lambda: streams_are(redis_client, topic_prefix, key[0], 0), what="every slot given back")
        assert PER_PROCESS not in a.log + b.log


async def test_the_streams_of_a_killed_process_free_themselves(
    keyed_db: str, redis_url: str, redis_client: redis.asyncio.Redis, topic_prefix: str
) -> None:
    """SIGKILL gives nothing back: the slots expire once the process no longer refreshes them."""
    key = await add_key(keyed_db, "two streams", connections=2)
    async with two_apis(keyed_db, redis_url, topic_prefix) as (a, b):
        doomed = [await stream(a, key), await stream(a, key)]
        await refused(b, key)
        os.kill(a.proc.pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            await a.proc.wait()
        await wait_for(lambda: streams_are(redis_client, topic_prefix, key[0], 0), what="the killed process's slots")
        held = [await stream(b, key), await stream(b, key)]
        await refused(b, key)
        for client in [*held, *doomed]:
            with contextlib.suppress(Exception):  # the doomed ones' server is gone
                await client.close()


async def test_requests_per_minute_are_counted_across_processes(
    keyed_db: str, redis_url: str, topic_prefix: str
) -> None:
    """5 a minute: five requests spread over both processes are admitted, the next is 429 on either."""
    key = await add_key(keyed_db, "five a minute", requests_per_minute=5)
    async with two_apis(keyed_db, redis_url, topic_prefix) as (a, b):
        headers = key_headers(*key)
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            for api in (a, b, a, b, a):
                assert (await http.get(api.url + ROUTE, params=PARAMS)).status_code == 200
            for api in (a, b):
                answer = await http.get(api.url + ROUTE, params=PARAMS)
                assert answer.status_code == 429, answer.text
                assert answer.json()["code"] == 42910000
                assert 1 <= int(answer.headers["Retry-After"]) <= 60


async def test_with_redis_stopped_each_process_counts_alone_and_shares_again_once_it_is_back(
    keyed_db: str, private_redis: EmbeddedRedis, topic_prefix: str
) -> None:
    """Redis stopped: both still serve, each with the key's whole limits (one stream, two requests), and
    each says so once; Redis back: each says so and puts its open streams in the shared count again."""
    key = await add_key(keyed_db, "redis away", connections=1, requests_per_minute=2)
    async with two_apis(keyed_db, private_redis.url, topic_prefix) as (a, b):
        await asyncio.to_thread(private_redis.stop)
        held = []
        async with httpx.AsyncClient(timeout=30, headers=key_headers(*key)) as http:
            for api in (a, b):
                for _ in range(2):
                    answer = await http.get(api.url + ROUTE, params=PARAMS)
                    assert answer.status_code == 200, answer.text
                assert (await http.get(api.url + ROUTE, params=PARAMS)).status_code == 429
                held.append(await stream(api, key))
                await refused(api, key)
        for api in (a, b):
            (warning,) = [line for line in api.lines if PER_PROCESS in line]
            assert "WARNING" in warning, warning

        await asyncio.to_thread(private_redis.restart)  # empty, on the same port
        for api in (a, b):
            await wait_for(functools.partial(said, api, SHARED_AGAIN), what="the API to share its counts again")
        client = redis.asyncio.from_url(private_redis.url)
        try:
            await wait_for(lambda: streams_are(client, topic_prefix, key[0], 2), what="both streams counted again")
            await refused(a, key)
        finally:
            await client.aclose()
        for ws in held:
            await ws.close()
        for api in (a, b):  # one warning per outage; its end said at INFO
            assert api.log.count(PER_PROCESS) == 1, api.log
            (info,) = [line for line in api.lines if SHARED_AGAIN in line]
            assert "INFO" in info, info
