"""``WS /v1beta3/crypto/us``: the crypto feed at Alpaca's own path, over what the crypto producer publishes.

The real alpaca-py ``CryptoDataStream`` (msgpack, its own models) connects unchanged, with only
``url_override``; every event goes into Redis through the producer's own live sink and transcoder
(:mod:`tests.helpers.crypto_live`), so channels, payloads and the order-book hash are exactly the
producer's. Counts are exact: N published, N received, nothing else before the markers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import date
from typing import Any

import orjson
import pytest
import redis.asyncio

from api.stream.protocol import FEED_CHANNELS, STREAMS
from tests.helpers.api import ApiServer, WsClient, api_settings, publish, running_api
from tests.helpers.crypto_live import CryptoLive, crypto_bar, crypto_book, crypto_quote, crypto_trade, unique_pair
from tests.helpers.events import day_ns, quote
from tests.helpers.feed_streams import alpaca_stream, stamp, stream_url
from tests.helpers.simulator import Book, apply_book
from tests.helpers.waiting import wait_for
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.feeds import CRYPTO, Feed
from tickpipe.names import SYMBOLS_KEY, latest_hash

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since websockets 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.live import CryptoDataStream
    from alpaca.data.models import Bar, Orderbook, Quote, Trade

DAY = date(2024, 3, 4)
CRYPTO_STREAMS = FEED_CHANNELS[CRYPTO.name].streams


@pytest.fixture
def feed() -> Feed:
    """The feed of this module's ``feed_api``, ``live`` and ``listed`` (tests/api/conftest.py)."""
    return CRYPTO


def crypto_url(server: ApiServer) -> str:
    return stream_url(server, CRYPTO.stream_path)


def alpaca_crypto(
    url: str, subscribe: Callable[[CryptoDataStream, Any], None]
) -> AbstractAsyncContextManager[list[Any]]:
    """alpaca-py's CryptoDataStream in this event loop (:func:`tests.helpers.feed_streams.alpaca_stream`)."""
    return alpaca_stream(CryptoDataStream, url, subscribe)


def same(model: Any, message: dict[str, Any]) -> bool:
    """An alpaca-py model carries what the published message carried (alpaca-py keeps microseconds)."""
    kind = message["T"]
    if (model.symbol, model.timestamp) != (message["S"], stamp(message["t"])):
        return False
    if kind == "q":
        fields: tuple[str, ...] = ("bid_price", "bid_size", "ask_price", "ask_size")
        keys: tuple[str, ...] = ("bp", "bs", "ap", "as")
        model_type: type = Quote
    elif kind == "t":
        fields, keys, model_type = ("price", "size", "id"), ("p", "s", "i"), Trade
    elif kind in ("b", "u", "d"):
        fields = ("open", "high", "low", "close", "volume", "trade_count", "vwap")
        keys, model_type = ("o", "h", "l", "c", "v", "n", "vw"), Bar
    else:
        levels = ([(q.price, q.size) for q in model.bids], [(q.price, q.size) for q in model.asks])
        want_levels = ([(q["p"], q["s"]) for q in message["b"]], [(q["p"], q["s"]) for q in message["a"]])
        return isinstance(model, Orderbook) and levels == want_levels and model.reset == bool(message.get("r"))
    got = tuple(getattr(model, name) for name in fields)
    return isinstance(model, model_type) and got == tuple(message[key] for key in keys)


async def test_alpaca_crypto_clients_get_exactly_their_quotes_trades_and_bars(
    feed_api: ApiServer, live: CryptoLive, listed: Callable[[], str]
) -> None:
    a, b, c, nobody = (listed() for _ in range(4))

    def first_wants(stream: CryptoDataStream, handler: Any) -> None:
        stream.subscribe_quotes(handler, a, b)
        stream.subscribe_trades(handler, a)
        stream.subscribe_bars(handler, b)
        stream.subscribe_updated_bars(handler, b)

    def second_wants(stream: CryptoDataStream, handler: Any) -> None:
        stream.subscribe_trades(handler, c)
        stream.subscribe_daily_bars(handler, c)

    hub = feed_api.app.state.api.hub
    url = crypto_url(feed_api)
    async with alpaca_crypto(url, first_wants) as first, alpaca_crypto(url, second_wants) as second:
        wanted = (("quotes", a), ("trades", a), ("updatedBars", b), ("trades", c), ("dailyBars", c))
        await wait_for(
            lambda: all(hub.clients_of(CRYPTO_STREAMS[kind], pair) == 1 for kind, pair in wanted),
            what="both alpaca-py crypto clients to subscribe",
        )
        ns = day_ns(DAY, 15)
        messages: list[dict[str, Any]] = []
        for n in range(25):
            t = ns + n * 1_000_000_000
            for pair in (a, b, c, nobody):
                messages.append(crypto_quote(pair, t, bid=60_000 + n / 8))
                messages.append(crypto_trade(pair, t + 1_000, trade_id=n, price=60_001 + n / 4))
                for kind in ("b", "u", "d"):
                    messages.append(crypto_bar(pair, t, kind, close=60_000 + n))
        await live.publish(*messages)
        first_codes = {a: {"q", "t"}, b: {"q", "b", "u"}}
        want_first = [m for m in messages if m["T"] in first_codes.get(m["S"], ())]
        want_second = [m for m in messages if m["S"] == c and m["T"] in ("t", "d")]
        await wait_for(
            lambda: len(first) >= len(want_first) and len(second) >= len(want_second),
            what="alpaca-py to receive the crypto events",
        )
        # Markers afterwards: anything extra would arrive before them.
        markers = crypto_quote(a, ns + 10**12), crypto_trade(c, ns + 10**12, trade_id=999)
        await live.publish(*markers)
        await wait_for(lambda: len(first) > len(want_first) and len(second) > len(want_second), what="the markers")
        want_first.append(markers[0])
        want_second.append(markers[1])

    assert len(first) == len(want_first) and all(same(m, e) for m, e in zip(first, want_first, strict=True))
    assert len(second) == len(want_second) and all(same(m, e) for m, e in zip(second, want_second, strict=True))


async def test_alpaca_orderbook_subscriber_gets_the_whole_book_first_then_every_update(
    feed_api: ApiServer, live: CryptoLive
) -> None:
    pair = unique_pair()
    ns = day_ns(DAY, 16)
    # Before anyone subscribes: the upstream's snapshot and some updates; the hash keeps the whole book.
    start = crypto_book(pair, ns, [(100.0, 1.0), (99.5, 2.0), (99.0, 3.0)], [(100.5, 1.5), (101.0, 2.5)], reset=True)
    early = [
        crypto_book(pair, ns + 1_000, [(99.5, 0.0)], []),
        crypto_book(pair, ns + 2_000, [], [(100.25, 0.5)]),
    ]
    await live.publish(start, *early)
    expected: dict[str, Book] = {}
    for message in (start, *early):
        apply_book(expected, message)
    try:

        def wants(stream: CryptoDataStream, handler: Any) -> None:
            stream.subscribe_orderbooks(handler, pair)

        async with alpaca_crypto(crypto_url(feed_api), wants) as received:
            await wait_for(lambda: received, what="the whole book first")
            whole = received[0]
            assert isinstance(whole, Orderbook) and whole.reset and whole.timestamp == stamp(ns + 2_000)
            book = {"b": {q.price: q.size for q in whole.bids}, "a": {q.price: q.size for q in whole.asks}}
            assert book == expected[pair]
            assert [q.price for q in whole.bids] == [100.0, 99.0] and [q.price for q in whole.asks] == [
                100.25,
                100.5,
                101.0,
            ]
            updates = [
                crypto_book(pair, ns + 10_000 + n * 1_000, [(98.0 - n / 4, 1.0 + n)], [(100.25, float(n % 3))])
                for n in range(40)
            ]
            await live.publish(*updates)
            await wait_for(lambda: len(received) >= 1 + len(updates), what="every book update")
            marker = crypto_book(pair, ns + 10**9, [], [(102.0, 1.0)])
            await live.publish(marker)
            await wait_for(lambda: len(received) > 1 + len(updates), what="the marker")
        assert len(received) == 2 + len(updates)
        assert all(same(m, e) for m, e in zip(received[1:], [*updates, marker], strict=True))
        # What the client built from them is the book the producer keeps.
        for message in [*updates, marker]:
            apply_book(expected, message)
        kept = orjson.loads(await live_book(feed_api, pair))
        assert {"b": {q["p"]: q["s"] for q in kept["b"]}, "a": {q["p"]: q["s"] for q in kept["a"]}} == expected[pair]
    finally:
        client = feed_api.app.state.api.redis
        await client.hdel(latest_hash(CRYPTO.word("orderbooks")), pair)


async def live_book(server: ApiServer, pair: str) -> bytes:
    book: bytes = await server.app.state.api.redis.hget(latest_hash(CRYPTO.word("orderbooks")), pair)
    return book


async def test_crypto_json_client_snapshots_and_errors(
    feed_api: ApiServer, live: CryptoLive, listed: Callable[[], str]
) -> None:
    pair, fresh = listed(), listed()
    old = crypto_quote(pair, day_ns(DAY, 14), bid=10)
    await live.publish(old)  # nobody listens yet: only the snapshot stays
    client = await WsClient.connect(crypto_url(feed_api))
    await client.login()
    try:
        await client.send({"action": "subscribe", "quotes": ["AAPL"]})
        error = await client.message()
        assert (error["code"], error["msg"]) == (400, "invalid syntax")
        assert "expected a crypto pair like BTC/USD, got 'AAPL'" in error["detail"]
        await client.send({"action": "subscribe", "lulds": [pair]})
        error = await client.message()
        assert error["code"] == 400
        assert "expected channels among trades, quotes, orderbooks, bars, updatedBars, dailyBars" in error["detail"]
        await client.send({"action": "subscribe", "quotes": ["A" * 30 + "/USD"]})
        assert "at most 25 characters" in (await client.message())["detail"]
        reply = await client.subscribe(quotes=[pair.lower(), fresh], orderbooks=[pair])
        assert reply == {
            "T": "subscription",
            "trades": [],
            "quotes": sorted([pair, fresh]),
            "orderbooks": [pair],
            "bars": [],
            "updatedBars": [],
            "dailyBars": [],
        }
        assert await client.message() == {**old, "t": format_rfc3339_ns(old["t"])}
        updates = [crypto_quote(p, day_ns(DAY, 14, 1, n), bid=20 + n) for n in range(10) for p in (pair, fresh)]
        await live.publish(*updates)
        assert await client.messages(len(updates)) == [{**m, "t": format_rfc3339_ns(m["t"])} for m in updates]
    finally:
        await client.close()


async def test_stock_and_crypto_streams_keep_to_their_own_feed(
    feed_api: ApiServer,
    live: CryptoLive,
    redis_client: redis.asyncio.Redis,
    listed: Callable[[], str],
    listed_symbol: Callable[[], str],
) -> None:
    """The same text names a stock and a pair on each path (tickers may hold '/'): each client gets its feed's."""
    pair = listed()
    added = await redis_client.sadd(SYMBOLS_KEY, pair)  # the stock producer lists it too
    stocks = await WsClient.connect(feed_api.ws_url)
    crypto = await WsClient.connect(crypto_url(feed_api))
    try:
        for client in (stocks, crypto):
            await client.login()
        await stocks.subscribe(quotes=[pair])
        await crypto.subscribe(quotes=[pair])
        hub = feed_api.app.state.api.hub
        await wait_for(
            lambda: (
                hub.clients_of(STREAMS["quotes"], pair) == 1 and hub.clients_of(CRYPTO_STREAMS["quotes"], pair) == 1
            ),
            what="both clients to subscribe",
        )
        ns = day_ns(DAY, 15)
        stock_quote = quote(pair, ns, bid=5)
        await publish(redis_client, stock_quote)
        crypto_one = crypto_quote(pair, ns, bid=60_000)
        await live.publish(crypto_one)
        got_stock = await stocks.message()
        assert (got_stock["T"], got_stock["bp"], got_stock["bx"]) == ("q", 5, stock_quote.bid_exchange)
        assert await crypto.message() == {**crypto_one, "t": format_rfc3339_ns(ns)}
        # Nothing else came: the next message of each is the next thing published on its own feed.
        await live.publish(crypto_quote(pair, ns + 1, bid=60_001))
        await publish(redis_client, quote(pair, ns + 1, bid=6))
        assert (await crypto.message())["bp"] == 60_001
        assert (await stocks.message())["bp"] == 6
    finally:
        if added:
            await redis_client.srem(SYMBOLS_KEY, pair)
        await redis_client.hdel(latest_hash("quotes"), pair)
        await stocks.close()
        await crypto.close()


async def test_a_feed_not_configured_says_so_and_closes(migrated_db: str, redis_url: str) -> None:
    async with running_api(api_settings(migrated_db, redis_url, alpaca_feeds="stocks")) as server:
        client = await WsClient.connect(crypto_url(server))
        await client.send({"action": "auth", "key": "key", "secret": "secret"})
        messages, code = await client.until_closed()
        assert code == 1008 and len(messages) == 1
        error = messages[0]
        assert (error["T"], error["code"], error["msg"]) == ("error", 409, "insufficient subscription")
        assert "the crypto feed is not configured on this API (ALPACA_FEEDS=stocks)" in error["detail"]
        # alpaca-py reports it where a wrong key is reported: its auth fails with Alpaca's text.
        stream = CryptoDataStream("any-key", "any-secret", url_override=crypto_url(server))
        try:
            await stream._connect()
            with pytest.raises(ValueError, match="insufficient subscription"):
                await stream._auth()
        finally:
            await stream.close()
        # The stock path of the same API is as before.
        stocks = await WsClient.connect(server.ws_url)
        await stocks.login()
        assert (await stocks.subscribe(quotes=["AAPL"]))["quotes"] == ["AAPL"]
        await stocks.close()
