"""``WS /v2/stream`` under abuse: every per-client and per-process bound ends in the code a client expects.

Each test runs a real uvicorn (both send paths, as ``test_api_stream``) on
the session's PostgreSQL and Redis, and asserts the bound itself (bytes
queued, Redis channels taken), never a duration.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import httpx
import orjson
import psutil
import pytest
import redis.asyncio

from api.stream.direct import DirectWebSocketProtocol
from api.stream.outbox import Outbox
from api.stream.protocol import ECHO_CHARS
from tests.helpers.api import ApiServer, WsClient, api_process, api_settings, numsub, publish, running_api
from tests.helpers.events import day_ns, quote
from tests.helpers.waiting import wait_for
from tickpipe.codecs import encode_live
from tickpipe.names import latest_hash

DAY = date(2024, 3, 5)
#: The smallest byte bound the settings allow: a client that stops reading is cut soon.
QUEUE_BYTES = 65_536
FRAME_BYTES = 1_024
PATHS: dict[str, str | type[asyncio.Protocol]] = {"direct": DirectWebSocketProtocol, "asgi": "websockets-sansio"}


@pytest.fixture(params=list(PATHS))
async def bounded(request: pytest.FixtureRequest, migrated_db: str, redis_url: str) -> AsyncIterator[ApiServer]:
    """The API with small bounds, on each send path (tickpipe's direct writes, plain ASGI sends)."""
    settings = api_settings(
        migrated_db,
        redis_url,
        ws_client_queue_bytes=QUEUE_BYTES,
        ws_max_redis_channels=4,
        ws_max_symbols=1_000,
    )
    async with running_api(settings, PATHS[request.param]) as server:
        yield server


def made_up(count: int, tag: str) -> list[str]:
    """Symbols nobody trades (valid tickers, in no snapshot hash and not listed by the producer)."""
    return [f"Z{tag}{n:04d}"[:16] for n in range(count)]


async def test_a_client_that_stops_reading_and_repeats_unsubscribe_is_cut_with_407(bounded: ApiServer) -> None:
    """The replies to control messages count toward the byte bound: before, this grew the server without end."""
    symbols = made_up(1_000, "UNS")
    client = await WsClient.connect(bounded.ws_url, rcvbuf=4096, max_queue=1)
    await client.login()
    reply = await client.subscribe(quotes=symbols)
    assert len(reply["quotes"]) == 1_000
    hub = bounded.app.state.api.hub
    (outbox,) = hub.outboxes_of(symbols[0])
    assert isinstance(outbox, Outbox)
    peak = sent = 0
    # From here the client reads nothing; each unsubscribe is answered with the 1,000-symbol list (~11 KB).
    while not outbox.closed:
        await client.send({"action": "unsubscribe", "quotes": ["NOTHERE"]})
        sent += 1
        peak = max(peak, outbox.queued_bytes)
        assert sent < 20_000, "the client was never cut"
        if sent % 50 == 0:
            await asyncio.sleep(0)  # let the server's tasks run between bursts (not a wait for time)
    assert peak <= QUEUE_BYTES
    got, code = await client.until_closed()
    assert got[-1] == {"T": "error", "code": 407, "msg": "slow client"}
    assert all(message["T"] == "subscription" for message in got[:-1])
    assert code == 1008
    assert bounded.app.state.api.metrics.ws_slow_disconnects._value.get() == 1
    await wait_for(lambda: not hub.outboxes_of(symbols[0]), what="the session to leave the hub")
    assert not hub.parked_symbols & set(symbols)


@pytest.mark.parametrize("refused_by", ["uvicorn", "handler"])
async def test_a_frame_above_the_limit_closes_with_1009(migrated_db: str, redis_url: str, refused_by: str) -> None:
    """Refused by uvicorn (ws_max_size, as ``tickpipe api`` sets it) or, under a server not told, by the session."""
    settings = api_settings(migrated_db, redis_url, ws_max_frame_bytes=FRAME_BYTES)
    wire_limit = None if refused_by == "uvicorn" else 16 * 1024 * 1024
    for ws in PATHS.values():
        async with running_api(settings, ws, ws_max_size=wire_limit) as server:
            client = await WsClient.connect(server.ws_url)
            await client.ws.send("x" * FRAME_BYTES)  # at the limit: read, and answered (it is no JSON)
            assert (await client.message())["code"] == 400
            await client.ws.send("x" * (FRAME_BYTES + 1))  # before auth, as anyone can
            got, code = await client.until_closed()
            assert (got, code) == ([], 1009)


async def test_errors_repeat_at_most_a_short_prefix_of_what_the_client_sent(bounded: ApiServer) -> None:
    client = await WsClient.connect(bounded.ws_url)
    long = "Q" * 900
    attempts: list[str | dict[str, Any]] = [
        {"action": long},
        {"action": "subscribe", long: ["AAPL"]},
        {"action": "subscribe", "quotes": [long]},
        {"action": "subscribe", "quotes": [long[:40]]},
        {"action": "subscribe", "quotes": "AAPL," + long},
        "[" * 900,
        '{"action": "auth", "key": "' + long,
    ]
    for attempt in attempts:  # all before auth: nothing of the input comes back beyond a short prefix
        await client.ws.send(attempt if isinstance(attempt, str) else orjson.dumps(attempt).decode())
        error = await client.message()
        assert (error["T"], error["code"]) == ("error", 400), error
        assert long[: ECHO_CHARS + 1] not in error.get("detail", ""), error
        assert len(error.get("detail", "")) <= 3 * ECHO_CHARS + 100, error
    await client.close()


async def test_redis_channels_per_process_are_bounded_with_405(
    bounded: ApiServer, redis_client: redis.asyncio.Redis, listed_symbol: Callable[[], str]
) -> None:
    hub = bounded.app.state.api.hub
    s1, s2, s3, s4, s5 = (listed_symbol() for _ in range(5))
    first = await WsClient.connect(bounded.ws_url)
    second = await WsClient.connect(bounded.ws_url)
    for client in (first, second):
        await client.login()
    await first.subscribe(quotes=[s1, s2, s3])
    await second.subscribe(quotes=[s1])  # a channel already taken costs nothing
    assert len(hub.redis_names) == 3
    await second.send({"action": "subscribe", "quotes": [s4, s5]})
    error = await second.message()
    assert (error["code"], error["msg"]) == (405, "symbol limit exceeded")
    assert "at most 4 Redis channels" in error["detail"]
    assert hub.redis_names == {f"quotes:{s}".encode() for s in (s1, s2, s3)}
    # Refused whole: the client's subscription is what it was, and it stays connected.
    assert (await second.subscribe(quotes=made_up(200, "CAP")))["quotes"] == sorted([s1, *made_up(200, "CAP")])
    assert len(hub.redis_names) == 3  # symbols that exist nowhere take no channel
    await first.subscribe("unsubscribe", quotes=[s2, s3])
    await wait_for(lambda: len(hub.redis_names) == 1, what="the channels to be released")
    assert (await second.subscribe(quotes=[s4, s5]))["quotes"] == sorted([s1, s4, s5, *made_up(200, "CAP")])
    assert await numsub(redis_client, f"quotes:{s5}") == 1
    for client in (first, second):
        await client.close()


async def test_unknown_symbols_cost_no_channel_until_they_trade(
    bounded: ApiServer, redis_client: redis.asyncio.Redis, unique_symbol: Callable[[], str]
) -> None:
    hub = bounded.app.state.api.hub
    newcomer = unique_symbol()
    symbols = [*made_up(999, "NEW"), newcomer]
    client = await WsClient.connect(bounded.ws_url)
    await client.login()
    try:
        assert len((await client.subscribe(quotes=symbols, trades=symbols))["trades"]) == 1_000
        assert hub.redis_names == set() and await numsub(redis_client, f"quotes:{newcomer}") == 0
        assert hub.parked_symbols >= set(symbols)
        first = quote(newcomer, day_ns(DAY, 14))
        await publish(redis_client, first, snapshot=True)  # it trades: the producer writes its snapshot
        await wait_for(lambda: f"quotes:{newcomer}".encode() in hub.redis_names, what="the newcomer's channel")
        assert newcomer not in hub.parked_symbols
        # Its quotes, and its trades with the corrections and cancels they bring: 4 channels, the bound.
        assert hub.redis_names == {
            f"{name}:{newcomer}".encode() for name in ("quotes", "trades", "corrections", "cancels")
        }
        later = quote(newcomer, day_ns(DAY, 14, 1))
        await publish(redis_client, later)
        # What it traded before its channel was subscribed comes as its snapshot first, then every update.
        assert await client.messages(2) == [orjson.loads(encode_live(first)), orjson.loads(encode_live(later))]
    finally:
        await redis_client.hdel(latest_hash("quotes"), newcomer)
        await client.close()
    await wait_for(lambda: not hub.parked_symbols and not hub.redis_names, what="everything to be released")


async def slow_disconnects(http: httpx.AsyncClient) -> float:
    """``tickpipe_api_ws_slow_client_disconnects_total`` as the process reports it."""
    text = (await http.get("/metrics")).text
    found = re.search(r"^tickpipe_api_ws_slow_client_disconnects_total (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


async def test_a_tickpipe_api_process_stays_within_its_memory_bound_under_abuse(
    migrated_db: str, redis_url: str
) -> None:
    """Eight clients each subscribe to 1,000 made-up symbols, stop reading and repeat unsubscribe; then one
    sends a frame over the default WS_MAX_FRAME_BYTES.

    Each may make the process hold about twice WS_CLIENT_QUEUE_BYTES (its
    outbox, and one flush's worth in the transport). Without the byte bound
    each of them held every reply sent to it: up to SENDS x ~11 KB = 33 MB a
    client, 264 MB in all, where the bound allows 8 x 2 MiB plus slack.
    """
    clients, sends, queue_bytes = 8, 3_000, 1024 * 1024
    slack = 48 * 1024 * 1024  # the interpreter's own growth: sessions, frames parsed, allocator pools
    async with (
        api_process(migrated_db, redis_url, WS_CLIENT_QUEUE_BYTES=str(queue_bytes)) as (pid, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        ws_url = url.replace("http", "ws") + "/v2/stream"
        process = psutil.Process(pid)
        warm = await WsClient.connect(ws_url)  # one polite client first: what a session costs anyway
        await warm.login()
        await warm.subscribe(quotes=made_up(1_000, "RSS"))
        for _ in range(20):
            await warm.subscribe("unsubscribe", quotes=["NOTHERE"])
        await warm.close()
        before = peak = process.memory_info().rss
        abusers: list[WsClient] = []
        for n in range(clients):
            client = await WsClient.connect(ws_url, rcvbuf=4096, max_queue=1)
            abusers.append(client)
            await client.login()
            await client.subscribe(quotes=made_up(1_000, "RSS"))
            for sent in range(1, sends + 1):
                await client.send({"action": "unsubscribe", "quotes": ["NOTHERE"]})
                if sent % 25 == 0:
                    peak = max(peak, process.memory_info().rss)
                    if await slow_disconnects(http) > n:
                        break
            else:
                raise AssertionError(f"client {n} sent {sends} unsubscribes without being cut")
        peak = max(peak, process.memory_info().rss)
        assert peak - before <= clients * 2 * queue_bytes + slack, f"grew {(peak - before) / 2**20:.0f} MiB"
        for client in abusers:
            _, code = await client.until_closed()
            assert code == 1008
        # And its frame bound is uvicorn's own (ws_max_size): WS_MAX_FRAME_BYTES, 64 KiB by default.
        big = await WsClient.connect(ws_url)
        await big.ws.send("x" * (64 * 1024 + 1))
        assert await big.until_closed() == ([], 1009)
