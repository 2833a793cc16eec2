"""The simulator's crypto historical REST API (``/v1beta3/crypto/us/...``), read by alpaca-py and by plain
HTTP, against what its own crypto stream sent."""

from __future__ import annotations

import asyncio
import warnings
from collections import defaultdict
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

import httpx
import pytest

from simulator import DEFAULT_START_NS, Simulator, SimulatorConfig
from simulator.bars import MINUTE_NS, NS
from simulator.config import CRYPTO_FEEDS
from simulator.crypto import CryptoMarket
from simulator.history import CRYPTO_LAYOUTS, History
from simulator.wire import rfc3339
from tests.helpers.simulator import KEYS, StreamClient, nanos, stream_shape
from tests.helpers.waiting import wait_for

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.common.enums import Sort
    from alpaca.common.exceptions import APIError
    from alpaca.data.historical import CryptoHistoricalDataClient
    from alpaca.data.models import Bar, BarSet, Orderbook, Quote, QuoteSet, Trade, TradeSet
    from alpaca.data.requests import (
        CryptoBarsRequest,
        CryptoLatestBarRequest,
        CryptoLatestOrderbookRequest,
        CryptoLatestQuoteRequest,
        CryptoLatestTradeRequest,
        CryptoQuoteRequest,
        CryptoTradesRequest,
    )
    from alpaca.data.timeframe import TimeFrame

FEED = CRYPTO_FEEDS[0]  # "crypto/us"
PAIRS = ["BTC/USD", "ETH/USD"]
# The configured feed is a stock one, so the crypto market starts with the test's subscription and the
# stream client sees every event it ever makes; its clock starts 2 s before a minute mark, so bars come soon
# (a client slower than that gets the next minute's: hence 90 s to wait for them).
PACED = SimulatorConfig(rate=1000, start_ns=DEFAULT_START_NS + 58 * NS, rest_rate_limit=100_000)
BASE = "/v1beta3/crypto/us"
TRADE_FIELDS = {"t", "p", "s", "i", "tks"}
QUOTE_FIELDS = {"t", "bp", "bs", "ap", "as"}
BAR_FIELDS = {"t", "o", "h", "l", "c", "v", "n", "vw"}


def test_the_crypto_history_keeps_every_trade_and_quote_exactly_late_ones_included() -> None:
    market = CryptoMarket(PAIRS, start_ns=DEFAULT_START_NS, late_rate=0.05)
    events = market.advance(20_000, DEFAULT_START_NS + 2 * MINUTE_NS)
    history = History(3600 * NS, 10**6, layouts=CRYPTO_LAYOUTS)
    history.record(events, market.clock_ns)
    trades = [e["t"] for e in events if e["T"] == "t"]
    assert any(t < newest for newest, t in zip(accumulate(trades, max), trades[1:], strict=False)), "expected late"
    for kind in ("t", "q"):
        for symbol in PAIRS:
            expected = [
                stream_shape(e) for e in sorted(events, key=lambda e: e["t"]) if (e["T"], e["S"]) == (kind, symbol)
            ]
            series = history.series(kind, symbol)
            assert series is not None and series.rows(0, len(series)) == expected
    for symbol in PAIRS:
        last = {e["t"]: stream_shape(e) for e in events if e["T"] in ("b", "u") and e["S"] == symbol}
        assert history.minute_bars(symbol) == last


class PagedClient(CryptoHistoricalDataClient):
    """alpaca-py's crypto client as it is, but cutting its pages at ``page`` items (its own is 10,000),
    counting the requests it makes."""

    def __init__(self, url: str, page: int, **kwargs: Any) -> None:
        super().__init__(url_override=url, **kwargs)
        self.page = page
        self.requests: list[dict[str, Any]] = []

    def _get_marketdata(
        self,
        path: str,
        params: dict[str, Any],
        page_limit: int = 10_000,
        page_size: int | None = None,
        no_sub_key: bool = False,
    ) -> dict[str, list[Any]]:
        return super()._get_marketdata(path, params, min(page_limit, self.page), page_size, no_sub_key)

    def get(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        self.requests.append(dict(data or {}))
        return super().get(path, data, **kwargs)


async def get(sim: Simulator, path: str, headers: dict[str, str] | None = None, /, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.rest_url) as http:
        return await http.get(BASE + path, params=params, headers=headers)


async def pages(sim: Simulator, path: str, **params: Any) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Every page of a request over plain HTTP (no keys), merged, and how many pages it took."""
    merged: dict[str, list[dict[str, Any]]] = defaultdict(list)
    kind = path.rsplit("/", 1)[1]
    token, count = None, 0
    while True:
        response = await get(sim, path, None, **params, **({"page_token": token} if token else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {kind, "next_page_token"}
        count += 1
        for symbol, items in body[kind].items():
            merged[symbol].extend(items)
        token = body["next_page_token"]
        if token is None:
            return dict(merged), count


def sent(client: StreamClient, kind: str, start: int, end: int) -> dict[str, list[dict[str, Any]]]:
    """The stream's messages of one type stamped in [start, end], per pair in time order, as REST shows them."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sorted((e for e in client.data if e["T"] == kind), key=lambda e: nanos(e["t"])):
        if start <= nanos(e["t"]) <= end:
            out[e["S"]].append(stream_shape(e))
    return dict(out)


def bar_versions(client: StreamClient) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Every version of each minute bar the stream sent (the bar, then any updated bars), by pair and minute."""
    versions: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for e in client.data:
        if e["T"] in ("b", "u"):
            versions[(e["S"], nanos(e["t"]))].append({**stream_shape(e), "t": nanos(e["t"])})
    return versions


def with_ns(items: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {s: [{**item, "t": nanos(item["t"])} for item in rows] for s, rows in items.items()}


async def collect_past(client: StreamClient, at: int) -> None:
    """Collect stream data until a message stamped after ``at`` (ns) has arrived: the stream sends in time
    order but for trades reported late, up to 2 s back, so pass the window's end plus 2 s."""
    while not client.data or nanos(client.data[-1]["t"]) <= at:
        await client.collect(len(client.data) + 1)


def utc(ns: int) -> datetime:
    """alpaca-py takes datetimes: microseconds, so windows in these tests are whole microseconds."""
    assert ns % 1000 == 0
    return datetime.fromtimestamp(ns // NS, UTC).replace(microsecond=ns // 1000 % 1_000_000)


async def streamed_minute(sim: Simulator, client: StreamClient) -> int:
    """Subscribe the client to everything of PAIRS but books, and collect until a minute bar of each pair
    has come; the crypto market's start (ns)."""
    await client.login()
    await client.subscribe(trades=PAIRS, quotes=PAIRS, bars=PAIRS, updatedBars=PAIRS)
    opened = sim.markets[FEED].clock_ns  # started by the subscription: nothing was made before it

    async def bars_of_every_pair() -> bool:
        await client.collect(len(client.data) + 1, timeout=30)
        return {e["S"] for e in client.data if e["T"] == "b"} == set(PAIRS)

    await wait_for(bars_of_every_pair, 90, "a minute bar of every pair")
    return opened


async def test_alpaca_py_pages_through_exactly_what_the_crypto_stream_sent() -> None:
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url_for(FEED)) as client:
        opened = await streamed_minute(sim, client)
        start = opened // NS * NS - MINUTE_NS  # the market's first (partial) minute bar included
        bars_end = max(nanos(e["t"]) for e in client.data if e["T"] == "b")  # every bar up to here has come
        end = max(nanos(e["t"]) for e in client.data if e["T"] == "q") // 1000 * 1000
        await collect_past(client, end + 2 * NS)  # late trades stamped up to `end` have come too

        fewest = min(len(rows) for kind in ("t", "q") for rows in sent(client, kind, start, end).values())
        page = max(1, fewest // 3)  # so each pair's trades and quotes take some pages
        reader = PagedClient(sim.rest_url, page=page)  # no keys: Alpaca's crypto data needs none
        window = {"symbol_or_symbols": PAIRS, "start": utc(start), "end": utc(end)}
        trades = await asyncio.to_thread(reader.get_crypto_trades, CryptoTradesRequest(**window))
        trade_pages = len(reader.requests)
        quotes = await asyncio.to_thread(reader.get_crypto_quotes, CryptoQuoteRequest(**window))
        bar_window = {**window, "end": utc(bars_end)}
        bars = await asyncio.to_thread(
            reader.get_crypto_bars, CryptoBarsRequest(**bar_window, timeframe=TimeFrame.Minute)
        )
        await collect_past(client, sim.market_now_ns())  # any bar updated meanwhile has come
        assert isinstance(trades, TradeSet) and isinstance(quotes, QuoteSet) and isinstance(bars, BarSet)

        stream_trades, stream_quotes = sent(client, "t", start, end), sent(client, "q", start, end)
        assert set(stream_trades) == set(stream_quotes) == set(PAIRS)
        assert trade_pages >= 3, f"expected several pages, got {trade_pages}"
        assert all(r["limit"] <= page for r in reader.requests)
        for symbol in PAIRS:
            got = [(t.timestamp, t.price, t.size, t.id) for t in trades.data[symbol]]
            assert all(isinstance(t, Trade) for t in trades.data[symbol])
            assert got == [(utc(nanos(e["t"]) // 1000 * 1000), e["p"], e["s"], e["i"]) for e in stream_trades[symbol]]
            assert len({t.id for t in trades.data[symbol]}) == len(got), "expected no trade twice"
            got_quotes = [(q.timestamp, q.bid_price, q.bid_size, q.ask_price, q.ask_size) for q in quotes.data[symbol]]
            assert all(isinstance(q, Quote) for q in quotes.data[symbol])
            expected = [
                (utc(nanos(e["t"]) // 1000 * 1000), e["bp"], e["bs"], e["ap"], e["as"]) for e in stream_quotes[symbol]
            ]
            assert got_quotes == expected
        versions = bar_versions(client)
        expected_minutes = sorted((s, t) for s, t in versions if start <= t <= bars_end)
        got_minutes = sorted((s, int(b.timestamp.timestamp()) * NS) for s in bars.data for b in bars.data[s])
        assert got_minutes == expected_minutes, "expected every minute bar sent in the window, once"
        for symbol in PAIRS:
            for b in bars.data[symbol]:
                assert isinstance(b, Bar)
                seen = versions[(symbol, int(b.timestamp.timestamp()) * NS)]
                fields = (b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.vwap)
                assert fields in [(v["o"], v["h"], v["l"], v["c"], v["v"], v["n"], v["vw"]) for v in seen]


async def test_plain_http_gets_alpacas_shapes_exact_to_the_nanosecond_in_either_order() -> None:
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url_for(FEED)) as client:
        opened = await streamed_minute(sim, client)
        start = opened // NS * NS - MINUTE_NS
        end = max(nanos(e["t"]) for e in client.data if e["T"] == "q")
        await collect_past(client, end + 2 * NS)
        fewest = min(len(rows) for kind in ("t", "q") for rows in sent(client, kind, start, end).values())
        limit = max(1, fewest // 3)
        window = {"symbols": ",".join(PAIRS), "start": rfc3339(start), "end": rfc3339(end), "limit": limit}

        trades, trade_pages = await pages(sim, "/trades", **window)
        quotes, quote_pages = await pages(sim, "/quotes", **window, sort="desc")
        assert trade_pages >= 3 and quote_pages >= 3, "expected several pages"
        assert {k for rows in trades.values() for item in rows for k in item} == TRADE_FIELDS
        assert {k for rows in quotes.values() for item in rows for k in item} == QUOTE_FIELDS
        assert with_ns(trades) == with_ns(sent(client, "t", start, end))
        expected_quotes = sent(client, "q", start, end)
        assert with_ns(quotes) == with_ns({s: rows[::-1] for s, rows in expected_quotes.items()})
        bars, _ = await pages(sim, "/bars", **window, timeframe="1Min")
        assert {k for rows in bars.values() for item in rows for k in item} == BAR_FIELDS
        assert all(isinstance(item["v"], float) for rows in bars.values() for item in rows)


async def test_latest_trades_quotes_bars_and_books_are_the_newest_the_stream_sent() -> None:
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url_for(FEED)) as client:
        await streamed_minute(sim, client)
        newest_before = {
            (kind, symbol): max(nanos(e["t"]) for e in client.data if e["T"] == kind and e["S"] == symbol)
            for kind in ("t", "q", "b")
            for symbol in PAIRS
        }
        reader = CryptoHistoricalDataClient(url_override=sim.rest_url)

        def read() -> tuple[Any, Any, Any, Any]:
            return (
                reader.get_crypto_latest_trade(CryptoLatestTradeRequest(symbol_or_symbols=PAIRS)),
                reader.get_crypto_latest_quote(CryptoLatestQuoteRequest(symbol_or_symbols=PAIRS)),
                reader.get_crypto_latest_bar(CryptoLatestBarRequest(symbol_or_symbols=PAIRS)),
                reader.get_crypto_latest_orderbook(CryptoLatestOrderbookRequest(symbol_or_symbols=PAIRS)),
            )

        trades, quotes, bars, books = await asyncio.to_thread(read)
        await collect_past(client, sim.market_now_ns() + 2 * NS)
        for symbol in PAIRS:
            trade, quote, bar, book = trades[symbol], quotes[symbol], bars[symbol], books[symbol]
            assert isinstance(trade, Trade) and isinstance(quote, Quote) and isinstance(bar, Bar)
            stream_trades = [e for e in client.data if e["T"] == "t" and e["S"] == symbol]
            assert trade.id in {e["i"] for e in stream_trades}
            assert trade.timestamp >= utc(newest_before[("t", symbol)] // 1000 * 1000)
            stream_quotes = {
                (e["bp"], e["bs"], e["ap"], e["as"]) for e in client.data if e["T"] == "q" and e["S"] == symbol
            }
            assert (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size) in stream_quotes
            assert quote.timestamp >= utc(newest_before[("q", symbol)] // 1000 * 1000)
            assert int(bar.timestamp.timestamp()) * NS >= newest_before[("b", symbol)]
            assert isinstance(book, Orderbook) and book.bids and book.asks
            bids, asks = [b.price for b in book.bids], [a.price for a in book.asks]
            assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
        missing = await get(sim, "/latest/trades", None, symbols="XRP/USD")
        assert missing.status_code == 200 and missing.json() == {"trades": {}}


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/trades", {"symbols": "AAPL"}, 400, "invalid symbol: AAPL, expected a pair such as BTC/USD"),
        ("/quotes", {"symbols": "BTC/USD,btc/usd"}, 400, "invalid symbol: btc/usd"),
        ("/trades", {}, 400, "symbols missing"),
        (
            "/trades",
            {"symbols": "BTC/USD", "start": "2024-06-03T14:00:00Z", "end": "2024-06-03T13:00:00Z"},
            422,
            "end should not be before start",
        ),
        ("/trades", {"symbols": "BTC/USD", "start": "yesterday"}, 400, "invalid start: 'yesterday'"),
        ("/bars", {"symbols": "BTC/USD", "timeframe": "2Day"}, 400, "invalid timeframe: '2Day'"),
        ("/bars", {"symbols": "BTC/USD"}, 400, "timeframe missing"),
        ("/trades", {"symbols": "BTC/USD", "page_token": "not a token"}, 400, "invalid page token"),
        ("/trades", {"symbols": "BTC/USD", "limit": "0"}, 422, "invalid limit: 0, expected 1 to 10000"),
        ("/trades", {"symbols": "BTC/USD", "sort": "up"}, 400, "invalid sort: 'up'"),
        ("/trades", {"symbols": "BTC/USD", "feed": "us"}, 400, "unexpected query parameter(s): feed"),
        ("/latest/trades", {"symbols": "BTC/USD", "limit": "5"}, 400, "unexpected query parameter(s): limit"),
        ("/BTC/USD/trades", {}, 404, "Not Found"),
        ("/latest/orderbook", {"symbols": "BTC/USD"}, 404, "Not Found"),
    ],
)
async def test_bad_parameters_are_refused_with_alpacas_status_and_a_message(
    path: str, params: dict[str, str], status: int, message: str
) -> None:
    async with Simulator(rate=100) as sim:
        response = await get(sim, path, None, **params)
        assert response.status_code == status, response.text
        assert message in response.json()["message"]


async def test_alpaca_py_raises_the_message_of_a_refusal() -> None:
    async with Simulator(rate=100) as sim:
        reader = CryptoHistoricalDataClient(url_override=sim.rest_url)
        request = CryptoTradesRequest(symbol_or_symbols="AAPL", start=datetime(2024, 6, 3, tzinfo=UTC))
        with pytest.raises(APIError, match="invalid symbol: AAPL"):
            await asyncio.to_thread(reader.get_crypto_trades, request)
        backwards = CryptoBarsRequest(
            symbol_or_symbols="BTC/USD",
            timeframe=TimeFrame.Hour,
            start=datetime(2024, 6, 4, tzinfo=UTC),
            end=datetime(2024, 6, 3, tzinfo=UTC),
            sort=Sort.DESC,
        )
        with pytest.raises(APIError, match="end should not be before start"):
            await asyncio.to_thread(reader.get_crypto_bars, backwards)


async def test_no_key_is_needed_but_a_wrong_or_half_one_is_refused() -> None:
    async with Simulator(rate=100, key="key", secret="secret") as sim:
        params = {"symbols": "BTC/USD"}
        keyless = await get(sim, "/trades", None, **params)
        assert keyless.status_code == 200 and "X-RateLimit-Remaining" in keyless.headers
        assert (await get(sim, "/trades", KEYS, **params)).status_code == 200
        wrong = await get(sim, "/trades", {**KEYS, "APCA-API-SECRET-KEY": "nope"}, **params)
        assert (wrong.status_code, wrong.json()) == (403, {"message": "forbidden."})
        half = await get(sim, "/trades", {"APCA-API-KEY-ID": "key"}, **params)
        assert (half.status_code, half.json()) == (401, {"message": "unauthorized."})
        async with httpx.AsyncClient(base_url=sim.rest_url) as http:
            stocks = await http.get("/v2/stocks/trades", params={"symbols": "AAPL"})
        assert stocks.status_code == 401, "expected the stock API to want keys still"


async def test_the_crypto_history_serves_a_burst_simulator_too() -> None:
    async with Simulator(SimulatorConfig(start_ns=DEFAULT_START_NS)) as sim:  # burst: crypto paced regardless
        assert not sim.config.rate
        response = await get(sim, "/trades", None, symbols="BTC/USD")
        assert response.status_code == 200 and response.json() == {"trades": {}, "next_page_token": None}
        history = sim.histories[FEED]
        await wait_for(lambda: history.series("t", "BTC/USD") is not None, 20, "a BTC/USD trade recorded")
        response = await get(sim, "/trades", None, symbols="BTC/USD", start=rfc3339(DEFAULT_START_NS))
        assert response.status_code == 200 and response.json()["trades"]["BTC/USD"]
