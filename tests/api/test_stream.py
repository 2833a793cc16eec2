"""``WS /v2/stream``: Alpaca's protocol over real Redis channels, with raw WebSocket clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import msgpack
import orjson
import pytest
import redis.asyncio
import redis.exceptions
from websockets.exceptions import ConnectionClosed

from api.stream.direct import DirectWebSocketProtocol
from tests.helpers.api import ApiServer, WsClient, api_settings, numsub, publish, running_api
from tests.helpers.events import bar, day_ns, quote, trade
from tests.helpers.waiting import wait_for
from tickpipe.codecs import encode_live
from tickpipe.dev.services import EmbeddedRedis
from tickpipe.events import DailyBar, Event, TradeCorrection, UpdatedBar
from tickpipe.names import SYMBOLS_KEY, latest_hash

DAY = date(2024, 3, 4)


def wire(event: Event) -> dict[str, Any]:
    """The event as a JSON client receives it."""
    decoded: dict[str, Any] = orjson.loads(encode_live(event))
    return decoded


@pytest.fixture(params=["direct", "asgi"])
async def stream(request: pytest.FixtureRequest, migrated_db: str, redis_url: str) -> AsyncIterator[ApiServer]:
    """The API with each send path: tickpipe's direct socket writes, and plain ASGI sends (uvicorn's own
    protocol, as under another server); every stream test must hold for both."""
    settings = api_settings(migrated_db, redis_url, ws_max_symbols=5, ws_client_queue_size=5000)
    ws = DirectWebSocketProtocol if request.param == "direct" else "websockets-sansio"
    async with running_api(settings, ws) as server:
        yield server
    counts = server.app.state.api.metrics.stream
    used = counts.direct_sessions if request.param == "direct" else counts.asgi_sessions
    other = counts.asgi_sessions if request.param == "direct" else counts.direct_sessions
    assert (used > 0 or counts.messages_sent == 0) and other == 0, "the session did not use the path under test"


async def test_handshake_auth_and_protocol_errors(stream: ApiServer) -> None:
    client = await WsClient.connect(stream.ws_url)
    await client.send({"action": "subscribe", "quotes": ["AAPL"]})
    assert await client.message() == {"T": "error", "code": 401, "msg": "not authenticated"}
    await client.login()
    await client.send({"action": "auth", "key": "k", "secret": "s"})
    assert await client.message() == {"T": "error", "code": 403, "msg": "already authenticated"}
    await client.ws.send("{not json")
    error = await client.message()
    assert (error["code"], error["msg"]) == (400, "invalid syntax") and "JSON or msgpack" in error["detail"]
    await client.send({"action": "subscribe", "lulds": ["AAPL"]})
    assert (await client.message())["code"] == 410
    await client.send({"action": "subscribe", "orderbooks": ["AAPL"]})
    error = await client.message()
    assert error["code"] == 400 and "expected channels among trades, quotes" in error["detail"]
    await client.send({"action": "subscribe", "quotes": ["AA PL"]})
    error = await client.message()
    assert error["code"] == 400 and "ticker symbol" in error["detail"]
    await client.send({"action": "listen"})
    assert "expected action auth, subscribe or unsubscribe" in (await client.message())["detail"]
    reply = await client.subscribe(trades=["AAPL"], quotes=["MSFT", "*"])
    assert reply == {
        "T": "subscription",
        "trades": ["AAPL"],
        "quotes": ["*", "MSFT"],
        "bars": [],
        "updatedBars": [],
        "dailyBars": [],
        "statuses": [],
        "lulds": [],
        "corrections": ["AAPL"],
        "cancelErrors": ["AAPL"],
    }
    await client.close()


async def test_keys_are_checked_when_configured(migrated_db: str, redis_url: str) -> None:
    settings = api_settings(migrated_db, redis_url, tickpipe_api_keys="key1:secret1,key2:secret2")
    async with running_api(settings) as server:
        wrong = await WsClient.connect(server.ws_url)
        await wrong.send({"action": "auth", "key": "key1", "secret": "secret2"})
        assert await wrong.message() == {"T": "error", "code": 402, "msg": "auth failed"}
        assert (await wrong.until_closed())[1] == 1008
        right = await WsClient.connect(server.ws_url)
        await right.login("key2", "secret2")
        by_header = await WsClient.connect(
            server.ws_url, headers={"APCA-API-KEY-ID": "key1", "APCA-API-SECRET-KEY": "secret1"}
        )
        assert await by_header.message() == {"T": "success", "msg": "authenticated"}
        await right.close()
        await by_header.close()


async def test_no_auth_in_time_closes_with_404(migrated_db: str, redis_url: str) -> None:
    async with running_api(api_settings(migrated_db, redis_url, ws_auth_timeout_s=0.2)) as server:
        client = await WsClient.connect(server.ws_url)
        assert await client.message() == {"T": "error", "code": 404, "msg": "auth timeout"}
        assert (await client.until_closed())[1] == 1008


async def test_snapshot_first_then_every_update(
    stream: ApiServer, redis_client: redis.asyncio.Redis, listed_symbol: Callable[[], str]
) -> None:
    seen, fresh = listed_symbol(), listed_symbol()
    old = quote(seen, day_ns(DAY, 14), bid=10)
    await publish(redis_client, old, snapshot=True)  # nobody listens yet: only the snapshot stays
    client = await WsClient.connect(stream.ws_url)
    await client.login()
    try:
        assert (await client.subscribe(quotes=[seen, fresh]))["quotes"] == sorted([seen, fresh])
        assert await client.message() == wire(old)
        updates = [quote(symbol, day_ns(DAY, 14, 1, n), bid=20 + n) for n in range(20) for symbol in (seen, fresh)]
        await publish(redis_client, *updates, snapshot=True)
        assert await client.messages(len(updates)) == [wire(q) for q in updates]
    finally:
        await redis_client.hdel(latest_hash("quotes"), seen, fresh)
        await client.close()


async def test_each_client_gets_only_its_channels_and_types(
    stream: ApiServer, redis_client: redis.asyncio.Redis, listed_symbol: Callable[[], str]
) -> None:
    a, b = listed_symbol(), listed_symbol()
    minute = await WsClient.connect(stream.ws_url)
    updated = await WsClient.connect(stream.ws_url)
    everything = await WsClient.connect(stream.ws_url)
    for client in (minute, updated, everything):
        await client.login()
    await minute.subscribe(bars=[a], trades=[b])
    await updated.subscribe(updatedBars=[a, b])
    await everything.subscribe(quotes=["*", a], bars=["*"])
    ns = day_ns(DAY, 15)
    events: list[Event] = [
        bar(a, ns, 1, 2),
        UpdatedBar(symbol=a, timestamp=ns, open=1, high=3, low=1, close=2, volume=5),
        DailyBar(symbol=a, timestamp=ns, open=1, high=3, low=1, close=2, volume=50),
        quote(a, ns),
        trade(b, ns, 1),
        TradeCorrection(
            symbol=b,
            timestamp=ns,
            exchange="V",
            original_id=1,
            original_price=1,
            original_size=1,
            corrected_id=2,
            corrected_price=2,
            corrected_size=1,
        ),
        quote(b, ns + 1),
        bar(b, ns, 5, 6),
    ]
    marker = quote(a, ns + 2)  # the last event every client waits for
    await publish(redis_client, *events, marker)
    sent = [wire(e) for e in events]
    assert await minute.messages(3) == [sent[0], sent[4], sent[5]]  # minute bar of a; trade and correction of b
    assert await updated.messages(1) == [sent[1]]
    # The wildcard sees every symbol (a shared Redis may carry others' too): keep this test's own.
    ours: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while wire(marker) not in ours:
            message = await everything.message()
            if message.get("S") in (a, b):
                ours.append(message)
    assert ours == [sent[0], sent[3], sent[6], sent[7], wire(marker)]
    # Nothing else was queued for them: the next message of each is the next thing published.
    last = [bar(a, ns + 60, 1, 1), UpdatedBar(symbol=b, timestamp=ns, open=1, high=1, low=1, close=1, volume=1)]
    await publish(redis_client, *last)
    assert await minute.message() == wire(last[0])
    assert await updated.message() == wire(last[1])
    for client in (minute, updated, everything):
        await client.close()


async def test_unsubscribe_stops_updates(
    stream: ApiServer, redis_client: redis.asyncio.Redis, listed_symbol: Callable[[], str]
) -> None:
    a, b = listed_symbol(), listed_symbol()
    client = await WsClient.connect(stream.ws_url)
    await client.login()
    await client.subscribe(quotes=[a, b], trades=[a])
    reply = await client.subscribe("unsubscribe", quotes=[a], trades=[a])
    assert (reply["quotes"], reply["trades"], reply["corrections"]) == ([b], [], [])
    ns = day_ns(DAY, 16)
    await publish(redis_client, quote(a, ns), trade(a, ns, 3), quote(b, ns))
    assert await client.message() == wire(quote(b, ns))
    await client.close()


async def test_too_many_symbols_is_405_and_the_connection_stays(
    stream: ApiServer, listed_symbol: Callable[[], str]
) -> None:
    client = await WsClient.connect(stream.ws_url)
    await client.login()
    symbols = [listed_symbol() for _ in range(6)]
    await client.subscribe(quotes=symbols[:3], trades=symbols[:2])
    await client.send({"action": "subscribe", "bars": symbols[3:6]})
    error = await client.message()
    assert (error["code"], error["msg"]) == (405, "symbol limit exceeded")
    assert "at most 5 symbols per connection; this subscribe would make 6" in error["detail"]
    assert (await client.subscribe(bars=symbols[2:4]))["bars"] == sorted(symbols[2:4])
    await client.close()


async def test_redis_channels_are_counted_and_released(
    stream: ApiServer, redis_client: redis.asyncio.Redis, listed_symbol: Callable[[], str]
) -> None:
    symbol = listed_symbol()
    channel = f"quotes:{symbol}"
    first, second = await WsClient.connect(stream.ws_url), await WsClient.connect(stream.ws_url)
    for client in (first, second):
        await client.login()
        await client.subscribe(quotes=[symbol])
    hub = stream.app.state.api.hub
    from api.stream.protocol import STREAMS

    assert hub.clients_of(STREAMS["quotes"], symbol) == 2
    assert await numsub(redis_client, channel) == 1  # one Redis subscription for both clients
    await first.close()
    await wait_for(lambda: hub.clients_of(STREAMS["quotes"], symbol) == 1, what="the first client to leave")
    assert await numsub(redis_client, channel) == 1
    await second.close()
    await wait_for(lambda: _released(redis_client, channel), what="the channel to be released")


async def _released(client: redis.asyncio.Redis, channel: str) -> bool:
    return await numsub(client, channel) == 0


async def test_msgpack_clients_get_msgpack_with_timestamps(
    stream: ApiServer, redis_client: redis.asyncio.Redis, listed_symbol: Callable[[], str]
) -> None:
    symbol = listed_symbol()
    client = await WsClient.connect(stream.ws_url, use_msgpack=True)
    await client.login()
    await client.subscribe(trades=[symbol])
    event = trade(symbol, day_ns(DAY, 15) + 123_456_789, 42)
    await publish(redis_client, event)
    (message,) = await client.messages(1)
    assert isinstance(message["t"], msgpack.Timestamp) and message["t"].to_unix_nano() == event.timestamp
    assert {k: v for k, v in message.items() if k != "t"} == {
        k: v for k, v in orjson.loads(encode_live(event)).items() if k != "t"
    }
    await client.close()


async def test_slow_client_gets_407_and_the_fast_one_misses_nothing(
    stream: ApiServer, redis_client: redis.asyncio.Redis, listed_symbol: Callable[[], str]
) -> None:
    symbol = listed_symbol()
    fast = await WsClient.connect(stream.ws_url)
    slow = await WsClient.connect(stream.ws_url, rcvbuf=4096, max_queue=1)
    for client in (fast, slow):
        await client.login()
        await client.subscribe(quotes=[symbol])
    metrics = stream.app.state.api.metrics
    published: list[dict[str, object]] = []
    received: list[dict[str, object]] = []

    async def read_fast() -> None:
        while True:
            received.extend(await fast.recv(timeout=30))

    reader = asyncio.create_task(read_fast())
    ns = day_ns(DAY, 17)
    while metrics.ws_slow_disconnects._value.get() == 0:  # publish until the slow client is cut
        batch = [quote(symbol, ns + len(published) + n, bid=100 + n, conditions=("R",) * 20) for n in range(200)]
        await publish(redis_client, *batch)
        published += [wire(q) for q in batch]
        assert len(published) < 2_000_000, "the slow client was never cut"
    await wait_for(lambda: len(received) >= len(published), what="the fast client to get everything")
    reader.cancel()
    assert received == published  # all of it, in order, nothing extra

    tail: list[dict[str, object]] = []
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(30):
            while True:
                tail.extend(await slow.recv())
    assert tail[-1] == {"T": "error", "code": 407, "msg": "slow client"}
    assert tail[:-1] == published[: len(tail) - 1]  # what it got before being cut was in order
    assert slow.ws.close_code == 1008
    await fast.close()


async def test_clients_stay_connected_through_a_redis_restart(
    migrated_db: str, private_redis: EmbeddedRedis, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    async with running_api(api_settings(migrated_db, private_redis.url)) as server:
        publisher = redis.asyncio.from_url(private_redis.url)
        await publisher.sadd(SYMBOLS_KEY, symbol)  # the producer lists it: subscribed in Redis at once
        client = await WsClient.connect(server.ws_url)
        await client.login()
        await client.subscribe(quotes=[symbol])
        try:
            before = quote(symbol, day_ns(DAY, 18))
            await publish(publisher, before)
            assert await client.message() == wire(before)
            await asyncio.to_thread(private_redis.restart)
            await wait_for(lambda: _subscribed(publisher, f"quotes:{symbol}"), what="the hub to resubscribe")
            after = quote(symbol, day_ns(DAY, 18, 1))
            await publish(publisher, after)
            assert await client.message() == wire(after)
            metrics = server.app.state.api.metrics
            assert metrics.redis_reconnects._value.get() >= 1
        finally:
            await publisher.aclose()
            await client.close()


async def _subscribed(client: redis.asyncio.Redis, channel: str) -> bool:
    try:
        return await numsub(client, channel) == 1
    except (redis.exceptions.ConnectionError, OSError):
        return False
