"""What a new subscriber gets first: the latest events from Redis, and live ones only if newer."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import redis.asyncio

from api.stream.protocol import STREAMS
from api.stream.snapshots import latest_events, newer_than
from tickpipe.names import latest_hash


def event(code: str, symbol: str, t: str) -> bytes:
    return orjson.dumps({"T": code, "S": symbol, "t": t})


def test_live_events_not_newer_than_the_snapshot_are_dropped() -> None:
    snapshots = {("q", "AAPL"): event("q", "AAPL", "2024-03-04T14:30:00.000000002Z")}
    older = event("q", "AAPL", "2024-03-04T14:30:00.000000001Z")
    same = event("q", "AAPL", "2024-03-04T14:30:00.000000002Z")
    newer = event("q", "AAPL", "2024-03-04T14:30:00.000000003Z")
    other = event("t", "AAPL", "2024-03-04T14:29:00.000000000Z")  # no trade snapshot: kept
    assert newer_than(snapshots, [older, same, newer, other]) == [newer, other]
    assert newer_than({}, [older]) == [older]


async def test_latest_events_by_symbol_and_for_every_symbol(redis_url: str, unique_symbol: Callable[[], str]) -> None:
    client = redis.asyncio.from_url(redis_url)
    one, two = unique_symbol(), unique_symbol()
    quote_one, quote_two = event("q", one, "2024-03-04T14:30:00Z"), event("q", two, "2024-03-04T14:30:01Z")
    trade_one = event("t", one, "2024-03-04T14:30:02Z")
    try:
        await client.hset(latest_hash("quotes"), mapping={one: quote_one, two: quote_two})
        await client.hset(latest_hash("trades"), mapping={one: trade_one})
        found = await latest_events(client, [(STREAMS["quotes"], one), (STREAMS["trades"], one)])
        assert found == {("q", one): quote_one, ("t", one): trade_one}
        every = await latest_events(client, [(STREAMS["quotes"], "*")])
        assert every[("q", one)] == quote_one and every[("q", two)] == quote_two
        assert ("t", one) not in every
    finally:
        await client.hdel(latest_hash("quotes"), one, two)
        await client.hdel(latest_hash("trades"), one)
        await client.aclose()


async def test_a_redis_that_does_not_answer_means_no_snapshots() -> None:
    client = redis.asyncio.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)  # discard port: refused
    try:
        assert await latest_events(client, [(STREAMS["quotes"], "AAPL")]) == {}
    finally:
        await client.aclose()
