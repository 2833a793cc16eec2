"""``WS /v1beta1/opra`` (and ``/v1beta1/indicative``): the options feed at Alpaca's own paths, over what the
options producer publishes.

The real alpaca-py ``OptionDataStream`` (msgpack, its own models) connects unchanged, with only
``url_override``; every event goes into Redis through the producer's own live sink and transcoder
(:mod:`tests.helpers.options_live`), so channels and payloads are exactly the producer's. Counts are exact:
N published, N received, nothing else before the markers. Alpaca's option rules hold, from the feed's
declaration: msgpack only (a JSON client gets 412 and is closed), ``*`` refused on quotes (413).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import date
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from api.stream.protocol import FEED_CHANNELS
from tests.helpers.api import ApiServer, WsClient, api_settings, running_api
from tests.helpers.events import day_ns
from tests.helpers.feed_streams import alpaca_stream, stamp, stream_url
from tests.helpers.options_live import OptionsLive, option_quote, option_trade
from tests.helpers.waiting import wait_for
from tickpipe.feeds import OPTIONS, Feed

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since websockets 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.live.option import OptionDataStream
    from alpaca.data.models import Quote, Trade

DAY = date(2024, 3, 4)
OPTION_STREAMS = FEED_CHANNELS[OPTIONS.name].streams
PATHS = [OPTIONS.path.format(variant=variant) for variant in OPTIONS.variants]  # /v1beta1/opra, /v1beta1/indicative


@pytest.fixture
def feed() -> Feed:
    """The feed of this module's ``feed_api``, ``live`` and ``listed`` (tests/api/conftest.py)."""
    return OPTIONS


@pytest.fixture
def api_feeds() -> str:
    """Every feed configured: a JSON client refused on the option paths is still served on the others."""
    return "stocks,crypto,options"


def options_url(server: ApiServer, path: str = OPTIONS.stream_path) -> str:
    return stream_url(server, path)


def alpaca_options(
    url: str, subscribe: Callable[[OptionDataStream, Any], None]
) -> AbstractAsyncContextManager[list[Any]]:
    """alpaca-py's OptionDataStream in this event loop (:func:`tests.helpers.feed_streams.alpaca_stream`)."""
    return alpaca_stream(OptionDataStream, url, subscribe)


def same(model: Any, message: dict[str, Any]) -> bool:
    """An alpaca-py model carries what the published message carried (alpaca-py keeps microseconds)."""
    if (model.symbol, model.timestamp) != (message["S"], stamp(message["t"])):
        return False
    if message["T"] == "q":
        fields: tuple[str, ...] = ("bid_exchange", "bid_price", "bid_size", "ask_exchange", "ask_price", "ask_size")
        keys: tuple[str, ...] = ("bx", "bp", "bs", "ax", "ap", "as")
        model_type: type = Quote
    else:
        fields, keys, model_type = ("exchange", "price", "size"), ("x", "p", "s"), Trade
    got = tuple(getattr(model, name) for name in fields)
    conditions = model.conditions  # one code, not a list, on option messages
    return isinstance(model, model_type) and got == tuple(message[k] for k in keys) and conditions == message["c"]


@pytest.mark.parametrize("path", PATHS)
async def test_alpaca_option_clients_get_exactly_their_trades_and_quotes(
    feed_api: ApiServer, live: OptionsLive, listed: Callable[[], str], path: str
) -> None:
    a, b, c, nobody = (listed() for _ in range(4))

    def first_wants(stream: OptionDataStream, handler: Any) -> None:
        stream.subscribe_quotes(handler, a, b)
        stream.subscribe_trades(handler, a)

    def second_wants(stream: OptionDataStream, handler: Any) -> None:
        stream.subscribe_trades(handler, c)
        stream.subscribe_quotes(handler, c)

    hub = feed_api.app.state.api.hub
    url = options_url(feed_api, path)
    async with alpaca_options(url, first_wants) as first, alpaca_options(url, second_wants) as second:
        wanted = (("quotes", a), ("quotes", b), ("trades", a), ("trades", c), ("quotes", c))
        await wait_for(
            lambda: all(hub.clients_of(OPTION_STREAMS[kind], contract) == 1 for kind, contract in wanted),
            what="both alpaca-py option clients to subscribe",
        )
        ns = day_ns(DAY, 15)
        messages: list[dict[str, Any]] = []
        for n in range(25):
            t = ns + n * 1_000_000_000
            for contract in (a, b, c, nobody):
                messages.append(option_quote(contract, t, bid=1 + n / 100, size=n + 1))
                messages.append(option_trade(contract, t + 1_000, price=1.05 + n / 100, size=n + 1))
        await live.publish(*messages)
        first_codes = {a: {"q", "t"}, b: {"q"}}
        want_first = [m for m in messages if m["T"] in first_codes.get(m["S"], ())]
        want_second = [m for m in messages if m["S"] == c]
        assert len(want_first) == 75 and len(want_second) == 50
        await wait_for(
            lambda: len(first) >= len(want_first) and len(second) >= len(want_second),
            what="alpaca-py to receive the option events",
        )
        # Markers afterwards: anything extra would arrive before them.
        markers = option_quote(a, ns + 10**12), option_trade(c, ns + 10**12, size=999)
        await live.publish(*markers)
        await wait_for(lambda: len(first) > len(want_first) and len(second) > len(want_second), what="the markers")
        want_first.append(markers[0])
        want_second.append(markers[1])

    assert len(first) == len(want_first) and all(same(m, e) for m, e in zip(first, want_first, strict=True))
    assert len(second) == len(want_second) and all(same(m, e) for m, e in zip(second, want_second, strict=True))


async def test_a_subscriber_gets_the_last_quote_and_trade_first(
    feed_api: ApiServer, live: OptionsLive, listed: Callable[[], str]
) -> None:
    contract = listed()
    ns = day_ns(DAY, 14)
    old = [option_quote(contract, ns, bid=2.0), option_trade(contract, ns + 1, price=2.05)]
    await live.publish(*old)  # nobody listens yet: only the snapshots stay
    client = await WsClient.connect(options_url(feed_api), use_msgpack=True)
    try:
        await client.login()
        reply = await client.subscribe(trades=[contract.lower()], quotes=[contract])
        assert reply == {"T": "subscription", "trades": [contract], "quotes": [contract]}
        first = await client.messages(2)
        assert sorted((m["T"], m["t"].to_unix_nano()) for m in first) == [("q", ns), ("t", ns + 1)]
        updates = [option_trade(contract, ns + 10 + n, size=n + 1) for n in range(10)]
        await live.publish(*updates)
        got = await client.messages(len(updates))
        assert [(m["T"], m["S"], m["s"], m["c"], m["t"].to_unix_nano()) for m in got] == [
            ("t", contract, u["s"], u["c"], u["t"]) for u in updates
        ]
    finally:
        await client.close()


@pytest.mark.parametrize("path", PATHS)
async def test_a_json_client_gets_412_and_is_closed(feed_api: ApiServer, path: str) -> None:
    """Alpaca's option stream speaks msgpack only: a JSON client is refused before anything else."""
    async with ws_connect(options_url(feed_api, path)) as ws:
        frame = await ws.recv()
        assert isinstance(frame, str), "the refusal is in the client's own encoding"
        (error,) = orjson.loads(frame)
        assert (error["T"], error["code"], error["msg"]) == (
            "error", 412, "option messages are only available in MsgPack format",
        )  # fmt: skip
        assert "Content-Type: application/msgpack" in error["detail"]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    # The stock and crypto paths of the same API still take JSON.
    for stock_or_crypto in ("/v2/stream", "/v1beta3/crypto/us"):
        other = await WsClient.connect(options_url(feed_api, stock_or_crypto))
        await other.login()
        await other.close()


async def test_star_is_refused_on_quotes_with_413_and_allowed_on_trades(
    feed_api: ApiServer, live: OptionsLive, listed: Callable[[], str]
) -> None:
    contract = listed()
    client = await WsClient.connect(options_url(feed_api), use_msgpack=True)
    try:
        await client.login()
        await client.send({"action": "subscribe", "quotes": ["*"]})
        error = await client.message()
        assert (error["T"], error["code"], error["msg"]) == (
            "error", 413, "star subscription is not allowed for option quotes",
        )  # fmt: skip
        await client.send({"action": "subscribe", "trades": [contract], "quotes": [contract, "*"]})
        assert (await client.message())["code"] == 413  # the whole subscribe is refused, as any error refuses it
        await client.send({"action": "subscribe", "quotes": ["AAPL"]})
        error = await client.message()
        assert error["code"] == 400 and "expected an OCC option contract" in error["detail"]
        # The connection is still open: '*' on trades is Alpaca's and ours.
        reply = await client.subscribe(trades=["*"], quotes=[contract])
        assert reply == {"T": "subscription", "trades": ["*"], "quotes": [contract]}
        hub = feed_api.app.state.api.hub
        await wait_for(lambda: hub.clients_of(OPTION_STREAMS["quotes"], contract) == 1, what="the subscription")
        ns = day_ns(DAY, 16)
        await live.publish(option_quote(contract, ns), option_trade(contract, ns + 1))
        got = await client.messages(2)
        assert [(m["T"], m["S"]) for m in got] == [("q", contract), ("t", contract)]
    finally:
        await client.close()


async def test_the_options_feed_not_configured_says_so_and_closes(migrated_db: str, redis_url: str) -> None:
    async with running_api(api_settings(migrated_db, redis_url, alpaca_feeds="stocks")) as server:
        stream = OptionDataStream("any-key", "any-secret", url_override=options_url(server))
        try:
            await stream._connect()
            with pytest.raises(ValueError, match="insufficient subscription"):
                await stream._auth()
        finally:
            await stream.close()
