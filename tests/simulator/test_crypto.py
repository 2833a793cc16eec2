"""The crypto feed: its declaration, its events, and the simulator serving it on ``/v1beta3/crypto/us``."""

from __future__ import annotations

import re
import threading
import warnings
from collections import Counter
from typing import Any

import msgpack
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulator import DEFAULT_START_NS, Faults, Simulator, SimulatorConfig
from simulator.bars import MINUTE_NS, NS
from simulator.config import CRYPTO_FEEDS, STREAMS
from simulator.crypto import DEFAULT_PAIRS, CryptoMarket
from simulator.server import feed_of
from simulator.subscriptions import CRYPTO_CHANNELS, STOCK_CHANNELS, Subscriptions
from tests.helpers.simulator import AlpacaThread, Book, StreamClient, apply_book, nanos
from tests.helpers.waiting import wait_for
from tickpipe.crypto_events import CRYPTO_EVENT_TYPES, AnyCryptoEvent, CryptoOrderbook, CryptoTrade
from tickpipe.feeds import CRYPTO, FEEDS, STOCK

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.live import CryptoDataStream
    from alpaca.data.models import Bar, Orderbook, Quote, Trade

FEED = CRYPTO_FEEDS[0]  # "crypto/us"
PAIRS = ["BTC/USD", "ETH/USD"]
# Paced, the crypto feed's market running from start-up with its clock 2 s before a minute mark, so bars
# come soon (a client slower than that gets the next minute's: hence 90 s to wait for them).
PACED = SimulatorConfig(rate=2000, start_ns=DEFAULT_START_NS + 58 * NS, record=True, feed=FEED)


async def collect_past(client: StreamClient, at: int) -> None:
    """Collect data until a message stamped after ``at`` (ns) has arrived."""
    while not client.data or nanos(client.data[-1]["t"]) <= at:
        await client.collect(len(client.data) + 1)


# --- the declaration --------------------------------------------------------------------------------


def test_the_crypto_feed_declares_alpacas_channels_codes_and_pairs() -> None:
    assert CRYPTO.listed == ("trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars")
    assert {name: kind.code for name, kind in CRYPTO.channel_types.items()} == {
        "trades": "t",
        "quotes": "q",
        "orderbooks": "o",
        "bars": "b",
        "updatedBars": "u",
        "dailyBars": "d",
    }
    assert CRYPTO.family_of == {"t": "trades", "q": "quotes", "b": "bars", "u": "bars", "d": "bars", "o": "orderbooks"}
    assert CRYPTO.path.format(variant="us") == CRYPTO.stream_path == "/v1beta3/crypto/us"
    pair = re.compile(CRYPTO.symbol_pattern)
    assert all(pair.fullmatch(s) for s in ("BTC/USD", "ETH/USDT", "ETH/BTC", "1INCH/USD", *DEFAULT_PAIRS))
    assert not any(pair.fullmatch(s) for s in ("AAPL", "BRK.B", "btc/usd", "BTC/", "BTC-USD", "*"))
    # Carried end to end: among the feeds whose contract (tests/core/test_feeds.py) holds it to its tables.
    assert CRYPTO in FEEDS
    assert [family.table for family in CRYPTO.tables] == ["crypto_trades", "crypto_quotes", "crypto_bars",
                                                          "crypto_orderbooks"]  # fmt: skip


def test_the_simulator_derives_the_crypto_channels_from_the_declaration() -> None:
    assert CRYPTO_CHANNELS.channels == {name: kind.code for name, kind in CRYPTO.channel_types.items()}
    assert CRYPTO_CHANNELS.derived == {} and CRYPTO_CHANNELS.follows == {}
    assert list(Subscriptions(CRYPTO_CHANNELS).listing()) == list(CRYPTO.listed)
    assert list(Subscriptions().listing()) == list(STOCK.listed), "expected the stock channels unchanged"
    assert Subscriptions().channels is STOCK_CHANNELS
    assert STREAMS[FEED] == (CRYPTO, "/v1beta3/crypto/us")
    assert feed_of("/v1beta3/crypto/us") == FEED and feed_of("/v1beta3/crypto/us?x=1") == FEED
    assert feed_of("/v1beta3/crypto/eu") is None and feed_of("/v2/crypto") is None


def test_every_crypto_message_decodes_into_its_struct() -> None:
    market = CryptoMarket(PAIRS, start_ns=DEFAULT_START_NS)
    events = [market.snapshot("BTC/USD"), *market.advance(5000, DEFAULT_START_NS + 2 * MINUTE_NS)]
    assert {e["T"] for e in events} >= {"t", "q", "o", "b", "d"}
    for event in events:
        decoded = msgspec.convert(event, AnyCryptoEvent)
        assert type(decoded) is CRYPTO_EVENT_TYPES[event["T"]]
        assert decoded.symbol == event["S"] and decoded.timestamp == event["t"]
        assert decoded.family == CRYPTO.family_of[event["T"]]
        unset = {"r": False} if event["T"] == "o" else {}  # an update leaves the reset flag out
        assert msgspec.json.decode(msgspec.json.encode(decoded)) == {**unset, **event, "_r": 0, "_v": 1}
    trade = next(msgspec.convert(e, CryptoTrade) for e in events if e["T"] == "t")
    assert trade.taker_side in ("B", "S") and trade.size > 0
    snapshot = msgspec.convert(events[0], CryptoOrderbook)
    assert snapshot.reset and snapshot.bids[0].price < snapshot.asks[0].price


# --- the market -------------------------------------------------------------------------------------


def test_the_books_rebuilt_from_the_updates_are_the_markets_and_agree_with_quotes_and_trades() -> None:
    market = CryptoMarket(start_ns=DEFAULT_START_NS, seed=3)
    books: dict[str, Book] = {}
    for symbol in market.symbols:
        apply_book(books, market.snapshot(symbol))
    events = market.advance(20_000, DEFAULT_START_NS + 3 * MINUTE_NS)
    sizes = Counter(type(e["s"]) for e in events if e["T"] == "t")
    assert sizes[float] and not sizes[int], "expected fractional trade sizes"
    for e in events:
        if e["T"] == "o":
            assert "r" not in e and (e["b"] or e["a"]), f"expected an update naming levels, got {e}"
            apply_book(books, e)
            bids, asks = books[e["S"]]["b"], books[e["S"]]["a"]
            assert max(bids) < min(asks), f"expected an uncrossed book after {e}"
        elif e["T"] == "q":
            bids, asks = books[e["S"]]["b"], books[e["S"]]["a"]
            assert (e["bp"], e["bs"], e["ap"], e["as"]) == (max(bids), bids[max(bids)], min(asks), asks[min(asks)])
        elif e["T"] == "t":  # printed at the best level of the side the taker hit, before its update
            bids, asks = books[e["S"]]["b"], books[e["S"]]["a"]
            assert e["p"] == (min(asks) if e["tks"] == "B" else max(bids)), f"expected a trade at the top, got {e}"
    for symbol in market.symbols:
        bids, asks = market.book(symbol)
        assert books[symbol] == {"b": bids, "a": asks}


def test_bars_aggregate_the_trades_every_minute_around_the_clock() -> None:
    saturday_night = 1_717_885_800 * NS  # 2024-06-08T22:30:00Z: no stock market, the crypto one trades
    market = CryptoMarket(PAIRS, start_ns=saturday_night, late_rate=0)
    events = market.advance(30_000, saturday_night + 2 * MINUTE_NS)
    trades = [e for e in events if e["T"] == "t"]
    bars = [e for e in events if e["T"] == "b"]
    assert [(b["S"], b["t"]) for b in bars] == [(s, saturday_night + m * MINUTE_NS) for m in (0, 1) for s in PAIRS]
    for bar in bars:
        mine = [t for t in trades if t["S"] == bar["S"] and bar["t"] <= t["t"] < bar["t"] + MINUTE_NS]
        assert bar["n"] == len(mine) and bar["v"] == pytest.approx(sum(t["s"] for t in mine))
        assert (bar["h"], bar["l"]) == (max(t["p"] for t in mine), min(t["p"] for t in mine))
    dailies = [e for e in events if e["T"] == "d"]
    assert len(dailies) == 2 * len(PAIRS)
    assert dailies[-1]["n"] == sum(b["n"] for b in bars if b["S"] == dailies[-1]["S"])


def test_a_trade_reported_late_updates_its_minutes_bar_half_a_minute_on() -> None:
    market = CryptoMarket(PAIRS, start_ns=DEFAULT_START_NS, late_rate=0.5)
    events = market.advance(20_000, DEFAULT_START_NS + 3 * MINUTE_NS)
    updates = [(i, e) for i, e in enumerate(events) if e["T"] == "u"]
    assert updates, "expected updated bars"
    for i, update in updates:
        j, bar = next(
            (j, e) for j, e in enumerate(events) if e["T"] == "b" and (e["S"], e["t"]) == (update["S"], update["t"])
        )
        late = [
            e for e in events[j:i] if e["T"] == "t" and e["S"] == bar["S"] and bar["t"] <= e["t"] < bar["t"] + MINUTE_NS
        ]
        assert late and update["n"] == bar["n"] + len(late)
        assert nanos(events[i - 1]["t"]) <= bar["t"] + MINUTE_NS + 30 * NS + 1, "expected it half a minute on"


# --- alpaca-py ----------------------------------------------------------------------------------------


class CryptoThread(AlpacaThread):
    """alpaca-py's CryptoDataStream on a thread of its own, as :class:`AlpacaThread` runs the stock one."""

    def __init__(self, url: str, raw_data: bool = False) -> None:
        self.stream = CryptoDataStream("key", "secret", raw_data=raw_data, url_override=url)  # type: ignore[assignment]
        self.stream._reconnect_min_backoff = 0.05
        self.received: list[Any] = []
        self.thread = threading.Thread(target=self.stream.run, name="alpaca-crypto-stream", daemon=True)


def subscribe_everything(client: CryptoThread) -> None:
    stream: Any = client.stream
    for subscribe in (stream.subscribe_trades, stream.subscribe_quotes, stream.subscribe_bars):
        subscribe(client.handler, *PAIRS)
    stream.subscribe_orderbooks(client.handler, *PAIRS)


async def test_alpaca_py_crypto_stream_gets_trades_quotes_bars_and_books_as_its_models() -> None:
    async with Simulator(PACED) as sim:
        client = CryptoThread(sim.url)
        subscribe_everything(client)
        client.start()
        try:
            kinds = (Trade, Quote, Bar, Orderbook)
            await wait_for(lambda: all(client.of_type(k) for k in kinds), 90, "trades, quotes, bars and books")
            for kind in kinds:
                assert {m.symbol for m in client.of_type(kind)} <= set(PAIRS), f"expected only {PAIRS}: {kind}"
            await wait_for(lambda: {b.symbol for b in client.of_type(Orderbook)} == set(PAIRS), 20, "both books")
            for pair in PAIRS:
                books = [b for b in client.of_type(Orderbook) if b.symbol == pair]
                assert books[0].reset and len(books[0].bids) >= 10 and len(books[0].asks) >= 10
                assert not any(b.reset for b in books[1:])
            trade = client.of_type(Trade)[0]
            assert trade.price > 0 and trade.size > 0 and trade.id
            quote = client.of_type(Quote)[0]
            assert quote.bid_price < quote.ask_price
            bar = client.of_type(Bar)[0]
            assert bar.low <= bar.open <= bar.high and bar.timestamp.second == 0
            session = sim.sessions[0]
            assert session.feed == FEED and session.encoding == "msgpack"
            assert session.received[1]["orderbooks"] == PAIRS
        finally:
            await client.stop(sim)


async def test_alpaca_py_raw_crypto_trades_carry_the_taker_side() -> None:
    async with Simulator(PACED) as sim:
        client = CryptoThread(sim.url, raw_data=True)
        client.stream.subscribe_trades(client.handler, "BTC/USD")
        client.start()
        try:
            await wait_for(lambda: len(client.received) >= 10, 30, "10 raw trades")
            trade = client.received[0]
            assert set(trade) == {"T", "S", "p", "s", "t", "i", "tks"} and trade["S"] == "BTC/USD"
            assert isinstance(trade["t"], msgpack.Timestamp) and trade["tks"] in ("B", "S")
        finally:
            await client.stop(sim)


# --- the raw protocol ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_the_ack_lists_the_crypto_channels_and_each_book_starts_with_a_snapshot(encoding: str) -> None:
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url, encoding) as client:
        await client.login()
        reply = await client.subscribe(orderbooks=PAIRS, trades=["BTC/USD"])
        assert list(reply) == ["T", *CRYPTO.listed]
        assert reply == {
            "T": "subscription",
            "trades": ["BTC/USD"],
            "quotes": [],
            "orderbooks": PAIRS,
            "bars": [],
            "updatedBars": [],
            "dailyBars": [],
        }
        data = await client.collect(300)
        assert {(m["T"], m["S"]) for m in data} <= {("o", "BTC/USD"), ("o", "ETH/USD"), ("t", "BTC/USD")}
        stamp = str if encoding == "json" else msgpack.Timestamp
        assert all(isinstance(m["t"], stamp) for m in data)
        for pair in PAIRS:
            books = [m for m in data if m["T"] == "o" and m["S"] == pair]
            assert books, f"expected {pair}'s book"
            assert books[0]["r"] is True and not any("r" in m for m in books[1:])
            times = [nanos(m["t"]) for m in books]
            assert times == sorted(times), "expected a pair's book messages in order"
        assert all(m["s"] > 0 for m in data if m["T"] == "t")


async def test_a_book_rebuilt_from_the_updates_equals_a_later_subscribers_snapshot() -> None:
    async with (
        Simulator(PACED) as sim,
        StreamClient.connect(sim.url, "msgpack") as early,
        StreamClient.connect(sim.url, "msgpack") as late,
    ):
        await early.login()
        await early.subscribe(orderbooks=["*"])
        await early.collect(2000)
        await late.login()
        await late.subscribe(orderbooks=["BTC/USD"])
        snapshot = (await late.collect(1))[0]
        assert snapshot["r"] is True and snapshot["S"] == "BTC/USD"
        at = nanos(snapshot["t"])
        # Every update the market made before the snapshot is stamped at or before it; those after, later.
        await collect_past(early, at)
        early_books: dict[str, Book] = {}
        first: dict[str, dict[str, Any]] = {}
        for m in early.data:
            first.setdefault(m["S"], m)
            if nanos(m["t"]) <= at:
                apply_book(early_books, m)
        assert set(first) == set(DEFAULT_PAIRS) and all(m["r"] for m in first.values())
        late_books: dict[str, Book] = {}
        apply_book(late_books, snapshot)
        assert late_books["BTC/USD"] == early_books["BTC/USD"]
        # From the snapshot on, both connections apply the same updates in the same order.
        await late.collect(200)
        until = min(nanos(late.data[-1]["t"]), nanos(early.data[-1]["t"]))
        for m in late.data[1:]:
            if nanos(m["t"]) <= until:
                apply_book(late_books, m)
        for m in early.data:
            if at < nanos(m["t"]) <= until:
                apply_book(early_books, m)
        assert late_books["BTC/USD"] == early_books["BTC/USD"]


async def test_unsubscribing_and_subscribing_again_starts_over_with_a_snapshot() -> None:
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(orderbooks=["ETH/USD"])
        await client.collect(20)
        await client.subscribe("unsubscribe", orderbooks=["ETH/USD"])
        client.data.clear()
        await client.subscribe(orderbooks=["ETH/USD"], quotes=["ETH/USD"])
        books = [m for m in await client.collect(50) if m["T"] == "o"]
        assert books[0]["r"] is True and not any("r" in m for m in books[1:])


async def test_the_stock_and_crypto_feeds_run_side_by_side() -> None:
    async with (
        Simulator(rate=2000, connection_limit=1) as sim,
        StreamClient.connect(sim.url) as stocks,
        StreamClient.connect(sim.url_for(FEED)) as crypto,
    ):
        await stocks.login()
        await crypto.login()  # one connection per endpoint: the stock one does not count here
        reply = await stocks.subscribe(trades=["*"])
        assert list(reply) == ["T", *STOCK.listed]
        await crypto.subscribe(trades=["*"])
        assert {m["S"] for m in await stocks.collect(100)} <= set(sim.config.symbols)
        assert {m["S"] for m in await crypto.collect(100)} <= set(DEFAULT_PAIRS)
        assert "tks" in crypto.data[0] and "x" in stocks.data[0]


async def test_a_burst_simulator_serves_crypto_paced() -> None:
    async with Simulator(record=True) as sim, StreamClient.connect(sim.url_for(FEED), "msgpack") as client:
        assert sim.config.rate is None
        await client.login()
        await client.subscribe(quotes=["*"])
        assert {m["T"] for m in await client.collect(50)} == {"q"}
        assert sim.paced(FEED) and not sim.paced("iex")


# --- errors as Alpaca answers them -------------------------------------------------------------------


async def test_crypto_errors_as_alpaca_sends_them() -> None:
    async with Simulator(PACED, key="key", secret="secret") as sim, StreamClient.connect(sim.url) as client:
        assert await client.control() == {"T": "success", "msg": "connected"}
        await client.send({"action": "subscribe", "trades": ["BTC/USD"]})
        assert await client.control() == {"T": "error", "code": 401, "msg": "not authenticated"}
        await client.send({"action": "auth", "key": "key", "secret": "wrong"})
        assert await client.control() == {"T": "error", "code": 402, "msg": "auth failed"}
        await client.send({"action": "auth", "key": "key", "secret": "secret"})
        assert await client.control() == {"T": "success", "msg": "authenticated"}
        await client.send({"action": "auth", "key": "key", "secret": "secret"})
        assert await client.control() == {"T": "error", "code": 403, "msg": "already authenticated"}
        invalid = {"T": "error", "code": 400, "msg": "invalid syntax"}
        for bad in ("{not json", '{"action": "dance"}', '{"action": "subscribe", "trades": "BTC/USD"}'):
            await client.ws.send(bad)
            assert await client.control() == invalid
        for not_a_pair in (["AAPL"], ["BTC-USD"], ["btc/usd"]):
            await client.send({"action": "subscribe", "trades": not_a_pair})
            assert await client.control() == invalid
        for stock_only in ("statuses", "lulds", "corrections", "cancelErrors", "news"):
            await client.send({"action": "subscribe", stock_only: ["BTC/USD"]})
            assert await client.control() == {
                "T": "error",
                "code": 410,
                "msg": "invalid subscribe action for this feed",
            }
        assert sim.sessions[0].errors == [401, 402, 403, 400, 400, 400, 400, 400, 400, 410, 410, 410, 410, 410]
        assert (await client.subscribe(trades=["BTC/USD"]))["trades"] == ["BTC/USD"]


async def test_crypto_limits_and_entitlement() -> None:
    async with Simulator(PACED, symbol_limit=2, connection_limit=1, entitled_feeds=(FEED,)) as sim:
        async with StreamClient.connect(sim.url) as first, StreamClient.connect(sim.url) as second:
            await first.login()
            await first.subscribe(orderbooks=["BTC/USD"])
            await first.send({"action": "subscribe", "trades": ["ETH/USD", "SOL/USD"]})
            assert await first.control() == {"T": "error", "code": 405, "msg": "symbol limit exceeded"}
            assert sim.sessions[0].subscriptions.listing()["trades"] == []
            assert (await second.control())["msg"] == "connected"
            await second.send({"action": "auth", "key": "k", "secret": "s"})
            assert await second.control() == {"T": "error", "code": 406, "msg": "connection limit exceeded"}
        async with StreamClient.connect(sim.url_for("iex")) as stocks:
            assert (await stocks.control())["msg"] == "connected"
            await stocks.send({"action": "auth", "key": "k", "secret": "s"})
            assert await stocks.control() == {"T": "error", "code": 409, "msg": "insufficient subscription"}
            with pytest.raises(ConnectionClosed):
                await stocks.recv()


async def test_an_unknown_crypto_path_is_refused_naming_the_crypto_one() -> None:
    async with Simulator() as sim:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(sim.url_for(FEED).replace("/us", "/eu")):
                pass
        assert refused.value.response.status_code == 404
        assert b"/v1beta3/crypto/us" in refused.value.response.body


async def test_faults_apply_to_the_crypto_feed() -> None:
    async with Simulator(PACED, faults=Faults(close_after=100)) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(quotes=["*"], orderbooks=["*"])
        with pytest.raises(ConnectionClosed):
            await client.collect(10_000)
        assert len(client.data) == 100 == sim.sessions[0].sent_total
        assert client.ws.close_code == 1001
