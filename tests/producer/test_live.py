"""The live sink against a real Redis: what it publishes, what it keeps as the snapshot, what it drops and why."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio

from producer.live_sink import LiveSink
from producer.redis_wire import RedisReplyError, RespConnection
from producer.transcode import Transcoded, transcode_frame
from tests.helpers.producer import RedisCollector
from tests.helpers.waiting import wait_for
from tickpipe.codecs import decode_live, encode_wire_msgpack, to_alpaca_dict
from tickpipe.dev.embedded_redis import EmbeddedRedis
from tickpipe.events import Bar, Event, Quote, UpdatedBar


def quote(symbol: str, i: int) -> Quote:
    return Quote(
        symbol=symbol, timestamp=1_700_000_000_000_000_000 + i, bid_exchange="V", bid_price=10.0 + i / 100,
        bid_size=1, ask_exchange="V", ask_price=10.5 + i / 100, ask_size=2, conditions=("R",), tape="C",
    )  # fmt: skip


def bar(cls: type[Bar], symbol: str, close: float) -> Bar:
    return cls(symbol=symbol, timestamp=1_700_000_040_000_000_000, open=1.0, high=2.0, low=0.5, close=close, volume=10)


def ready_events(events: list[Event]) -> list[Transcoded]:
    return transcode_frame(encode_wire_msgpack([to_alpaca_dict(e) for e in events]), 1).events


async def run(sink: LiveSink) -> asyncio.Task[None]:
    return asyncio.create_task(sink.run(shutdown_timeout=2))


async def test_every_event_on_its_channel_in_order_and_the_last_one_in_the_snapshot(
    redis_url: str, redis_client: redis.asyncio.Redis, unique_symbol: Callable[[], str]
) -> None:
    a, b = unique_symbol(), unique_symbol()
    events: list[Event] = [*(quote(a, i) for i in range(300)), *(quote(b, i) for i in range(5))]
    events += [bar(Bar, a, 1.5), bar(UpdatedBar, a, 1.75)]  # the updated bar replaces the minute bar
    sink = LiveSink(redis_url, batch_max=64)
    async with RedisCollector(redis_url, [a, b]) as seen:
        task = await run(sink)
        sink.offer(ready_events(events))
        await wait_for(lambda: seen.total == len(events), what="every event published")
        sink.stop()
        await task
    assert [decode_live(p) for p in seen.messages[f"quotes:{a}"]] == events[:300]
    assert [decode_live(p) for p in seen.messages[f"bars:{a}"]] == events[-2:]
    snapshot = {name: await redis_client.hgetall(name) for name in ("latest:quotes", "latest:bars")}
    assert decode_live(snapshot["latest:quotes"][a.encode()]) == events[299]
    assert decode_live(snapshot["latest:quotes"][b.encode()]) == events[304]
    assert decode_live(snapshot["latest:bars"][a.encode()]) == events[-1]
    assert sink.published == len(events) and not sink.dropped


async def test_the_oldest_updates_are_dropped_and_counted_when_the_queue_is_full(redis_url: str) -> None:
    sink = LiveSink(redis_url, queue_size=100)
    events = ready_events([quote("QFULL", i) for i in range(250)])
    sink.offer(events)  # nothing sends yet: the sink's task is not running
    assert sink.dropped == {"queue_full": 150}
    assert list(sink.queue) == events[150:], "the newest kept"


async def test_redis_unreachable_drops_only_what_overflows_and_reconnects_by_itself(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("redis")
    with EmbeddedRedis(folder) as first:
        url, port = first.url, first.port
    server = EmbeddedRedis(folder, port=port)  # started later on the same port
    sink = LiveSink(url, queue_size=50, retry_max=0.05)
    task = await run(sink)
    try:
        sink.offer(ready_events([quote("RDOWN", i) for i in range(80)]))
        await wait_for(lambda: sink.last_error is not None, what="a failed connection attempt")
        assert sink.dropped == {"queue_full": 30} and not sink.connected
        server.start()
        await wait_for(lambda: sink.published == 50, what="the queued updates sent once Redis is back")
        assert sink.connected
    finally:
        sink.stop()
        await task
        server.stop()


async def test_refused_commands_are_counted_as_redis_errors(private_redis: EmbeddedRedis) -> None:
    client = redis.asyncio.from_url(private_redis.url)
    await client.set("latest:quotes", "not a hash")  # HSET on it fails with WRONGTYPE
    sink = LiveSink(private_redis.url)
    task = await run(sink)
    try:
        sink.offer(ready_events([quote("WRONG", i) for i in range(10)]))
        await wait_for(lambda: sink.published == 10, what="the batch written")
        assert sink.dropped == {"redis_error": 1}
    finally:
        sink.stop()
        await task
        await client.aclose()


async def test_the_bare_connection_authenticates_and_selects_the_database(private_redis: EmbeddedRedis) -> None:
    admin = redis.asyncio.from_url(private_redis.url)
    await admin.config_set("requirepass", "s3cret")
    try:
        url = f"redis://:s3cret@{private_redis.host}:{private_redis.port}/3"
        conn = await RespConnection.open(url)
        assert await conn.execute(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", 1) == 0
        await conn.close()
        with pytest.raises(RedisReplyError, match=r"WRONGPASS|invalid password"):
            await RespConnection.open(f"redis://:nope@{private_redis.host}:{private_redis.port}/0")
        db3 = redis.asyncio.from_url(f"redis://:s3cret@{private_redis.host}:{private_redis.port}/3")
        assert await db3.get("k") == b"v"
        await db3.aclose()
    finally:
        await admin.aclose()
