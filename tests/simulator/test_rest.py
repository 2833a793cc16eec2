"""The simulator's historical REST API, read by alpaca-py and by plain HTTP, against its own stream."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.data.requests import StockBarsRequest, StockQuotesRequest, StockTradesRequest
from alpaca.data.timeframe import TimeFrame

from simulator import DEFAULT_START_NS, DEFAULT_SYMBOLS, Simulator, SimulatorConfig
from simulator.bars import NS
from simulator.rest import RateLimit
from simulator.wire import rfc3339
from tests.helpers.simulator import KEYS, Quote, StreamClient, Trade, nanos, rest_client, stream_shape
from tests.helpers.waiting import wait_for

# Paced, the market clock a second before a minute mark so minute and daily bars come at once.
PACED = SimulatorConfig(rate=4000, start_ns=DEFAULT_START_NS + 59 * NS)
TRADE_FIELDS = {"t", "x", "p", "s", "c", "i", "z"}
QUOTE_FIELDS = {"t", "ax", "ap", "as", "bx", "bp", "bs", "c", "z"}
BAR_FIELDS = {"t", "o", "h", "l", "c", "v", "n", "vw"}


async def get(sim: Simulator, path: str, headers: dict[str, str] | None = KEYS, /, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.rest_url) as http:
        return await http.get(path, params=params, headers=headers)


async def pages(sim: Simulator, path: str, **params: Any) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Every page of a multi-symbol request, merged, and how many pages it took."""
    merged: dict[str, list[dict[str, Any]]] = defaultdict(list)
    kind = path.rsplit("/", 1)[1]
    token, count = None, 0
    while True:
        response = await get(sim, path, **params, **({"page_token": token} if token else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        count += 1
        for symbol, items in body[kind].items():
            merged[symbol].extend(items)
        token = body["next_page_token"]
        if token is None:
            return dict(merged), count


def by_symbol(events: list[dict[str, Any]], kind: str) -> dict[str, list[dict[str, Any]]]:
    """Stream messages of one type as the REST API groups them: per symbol, in time order."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sorted((e for e in events if e["T"] == kind), key=lambda e: nanos(e["t"])):
        out[e["S"]].append(stream_shape(e))
    return dict(out)


def final_bars(events: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The last version of each bar the stream sent (an updated bar replaces its minute bar)."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        if e["T"] in kinds:
            last[(e["S"], e["t"])] = e
    return by_symbol([{**e, "T": "bar"} for e in last.values()], "bar")


async def test_alpaca_py_reads_trades_quotes_and_bars_of_one_and_many_symbols() -> None:
    async with Simulator(PACED) as sim:
        history = sim.histories["iex"]
        await wait_for(lambda: bool(history.minute_bars("AAPL")) and history.held > 2_000, 20, "a minute of market")
        client = rest_client(sim)

        def read() -> tuple[Any, Any, Any]:
            one = client.get_stock_trades(StockTradesRequest(symbol_or_symbols="AAPL", feed="iex"))
            many = client.get_stock_quotes(StockQuotesRequest(symbol_or_symbols=["AAPL", "SPY", "MSFT"], feed="iex"))
            bars = client.get_stock_bars(
                StockBarsRequest(symbol_or_symbols=["AAPL", "SPY"], timeframe=TimeFrame.Minute, feed="iex")
            )
            return one, many, bars

        one, many, bars = await asyncio.to_thread(read)
        trades = one["AAPL"]
        assert trades and all(isinstance(t, Trade) and t.symbol == "AAPL" and t.exchange == "V" for t in trades)
        assert [t.timestamp for t in trades] == sorted(t.timestamp for t in trades)
        assert len({t.id for t in trades}) == len(trades)
        assert set(many.data) == {"AAPL", "SPY", "MSFT"}
        assert all(isinstance(q, Quote) and q.bid_price < q.ask_price for qs in many.data.values() for q in qs)
        bar = bars["AAPL"][0]
        assert bar.timestamp == datetime(2024, 6, 3, 13, 30, tzinfo=UTC)
        assert bar.low <= bar.open <= bar.high and bar.volume > 0 and bar.trade_count > 0
        assert set(bars.data) == {"AAPL", "SPY"}


async def test_single_and_multi_symbol_answers_have_alpacas_shapes() -> None:
    async with Simulator(PACED) as sim:
        history = sim.histories["iex"]
        await wait_for(lambda: bool(history.minute_bars("AAPL")) and history.held > 2_000, 20, "a minute of market")
        body = (await get(sim, "/v2/stocks/AAPL/trades", limit=5, feed="iex")).json()
        assert list(body) == ["trades", "symbol", "next_page_token"]
        assert body["symbol"] == "AAPL" and len(body["trades"]) == 5 and isinstance(body["next_page_token"], str)
        assert all(set(t) == TRADE_FIELDS and t["t"].endswith("Z") for t in body["trades"])
        quotes = (await get(sim, "/v2/stocks/quotes", symbols="AAPL,SPY", limit=3, feed="iex")).json()
        assert list(quotes) == ["quotes", "next_page_token"] and list(quotes["quotes"]) == ["AAPL"]
        assert all(set(q) == QUOTE_FIELDS for q in quotes["quotes"]["AAPL"])
        bars = (await get(sim, "/v2/stocks/AAPL/bars", timeframe="1Min", feed="iex")).json()
        assert [set(b) for b in bars["bars"]] == [BAR_FIELDS] and bars["bars"][0]["t"] == "2024-06-03T13:30:00Z"
        nothing = (await get(sim, "/v2/stocks/ZZZZ/trades", feed="iex")).json()
        assert nothing == {"trades": None, "symbol": "ZZZZ", "next_page_token": None}
        none = (await get(sim, "/v2/stocks/trades", symbols="ZZZZ,YYYY", feed="iex")).json()
        assert none == {"trades": {}, "next_page_token": None}


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_rest_answers_a_window_with_exactly_what_the_stream_sent_in_it(encoding: str) -> None:
    async with Simulator(rate=3000) as sim, StreamClient.connect(sim.url, encoding) as client:
        await client.login()
        await client.subscribe(trades=["*"], quotes=["*"])
        data = client.data
        while not any(m["T"] == "q" for m in data):
            await client.collect(len(data) + 1)
        # Everything stamped from the first quote on was made after the subscription, so it was sent;
        # a trade stamped by `end` is reported at most 2 s late, so it is in by a quote stamped 2 s later.
        start = next(nanos(m["t"]) for m in data if m["T"] == "q")
        end = start + NS
        while nanos(data[-1]["t"]) <= end + 2 * NS or data[-1]["T"] != "q":
            await client.collect(len(data) + 1)
        window = [m for m in data if start <= nanos(m["t"]) <= end]
        symbols = ",".join(sim.config.symbols)
        span = {"start": rfc3339(start), "end": rfc3339(end), "feed": "iex", "limit": 10_000}
        trades, _ = await pages(sim, "/v2/stocks/trades", symbols=symbols, **span)
        quotes, _ = await pages(sim, "/v2/stocks/quotes", symbols=symbols, **span)
    # msgpack carries `t` as a Timestamp: the same nanoseconds, in the text the REST API writes them.
    if encoding == "msgpack":
        window = [{**m, "t": rfc3339(nanos(m["t"]))} for m in window]
    assert trades == by_symbol(window, "t")
    assert quotes == by_symbol(window, "q")
    assert sum(map(len, trades.values())) > 100 and sum(map(len, quotes.values())) > 1_000


async def test_a_whole_finite_market_from_rest_equals_the_stream_bars_included() -> None:
    # The clock runs on while the finite market waits for its reader; 3 s of market leave it time to cross the mark.
    config = SimulatorConfig(rate=5000, max_events=15_000, start_ns=DEFAULT_START_NS + 59 * NS)
    async with Simulator(config) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(
            trades=["*"], quotes=["*"], bars=["*"], updatedBars=["*"], dailyBars=["*"], statuses=["*"]
        )
        events = await client.collect(15_000)
        assert sim.exhausted and len(events) == 15_000
        client_raw = rest_client(sim, raw_data=True)
        symbols = list(sim.config.symbols)

        def read() -> tuple[Any, ...]:
            return (
                client_raw.get_stock_trades(StockTradesRequest(symbol_or_symbols=symbols, feed="iex")),
                client_raw.get_stock_quotes(StockQuotesRequest(symbol_or_symbols=symbols, feed="iex")),
                client_raw.get_stock_bars(
                    StockBarsRequest(symbol_or_symbols=symbols, timeframe=TimeFrame.Minute, feed="iex")
                ),
                client_raw.get_stock_bars(
                    StockBarsRequest(symbol_or_symbols=symbols, timeframe=TimeFrame.Day, feed="iex")
                ),
            )

        trades, quotes, minutes, days = await asyncio.to_thread(read)
    assert trades == by_symbol(events, "t")
    assert quotes == by_symbol(events, "q")
    assert minutes == final_bars(events, ("b", "u")) and minutes
    assert days == final_bars(events, ("d",)) and days


async def test_events_made_while_nobody_was_connected_are_in_the_history() -> None:
    async with Simulator(rate=3000) as sim:
        history = sim.histories["iex"]
        await wait_for(lambda: history.held >= 1_000, 20, "1,000 quotes and trades with nobody connected")
        before = sum(len(s) for s in (history.series("t", symbol) for symbol in DEFAULT_SYMBOLS) if s is not None)
        client = rest_client(sim)
        request = StockTradesRequest(symbol_or_symbols=list(DEFAULT_SYMBOLS), feed="iex")
        trades = await asyncio.to_thread(client.get_stock_trades, request)
        assert not sim.sessions, "expected no client ever connected to the stream"
    assert sum(map(len, trades.data.values())) >= before > 0


async def test_paging_over_many_pages_asc_and_desc_gives_every_item_once() -> None:
    async with Simulator(rate=12_000) as sim:
        history = sim.histories["iex"]
        await wait_for(lambda: history.held >= 15_000, 30, "over 10,000 quotes")
        # Quotes are never reported late, so no quote stamped by `end` can come after this moment.
        end_us = history.clock_ns // 1_000
        end = datetime.fromtimestamp(end_us // 1_000_000, UTC).replace(microsecond=end_us % 1_000_000)
        client = rest_client(sim, raw_data=True)
        symbols = list(sim.config.symbols)

        def read(sort: Sort) -> Any:
            return client.get_stock_quotes(
                StockQuotesRequest(symbol_or_symbols=symbols, end=end, feed="iex", sort=sort)
            )

        asc = await asyncio.to_thread(read, Sort.ASC)
        desc = await asyncio.to_thread(read, Sort.DESC)
        assert sum(map(len, asc.values())) > 10_000, "expected more than one of alpaca-py's 10,000-item pages"
        assert desc == {s: items[::-1] for s, items in asc.items()}
        three = {"symbols": "AAPL,MSFT,SPY", "end": rfc3339(end_us * 1_000), "feed": "iex"}
        whole, one = await pages(sim, "/v2/stocks/quotes", **three, limit=10_000)
        small, many = await pages(sim, "/v2/stocks/quotes", **three, limit=97)
        small_desc, _ = await pages(sim, "/v2/stocks/quotes", **three, limit=97, sort="desc")
    assert one == 1 and many > 5
    assert small == whole == {s: asc[s] for s in ("AAPL", "MSFT", "SPY")}
    assert small_desc == {s: items[::-1] for s, items in whole.items()}
    ids = [(s, q["t"], q["bp"], q["ap"]) for s, items in small.items() for q in items]
    assert len(ids) == len(set(ids)), "expected no item twice across pages"


async def test_past_the_per_minute_limit_requests_get_429_with_alpacas_headers() -> None:
    async with Simulator(rate=1000, rest_rate_limit=3) as sim:
        answers = [await get(sim, "/v2/stocks/AAPL/trades", feed="iex") for _ in range(4)]
        other = await get(sim, "/v2/stocks/AAPL/trades", {**KEYS, "APCA-API-KEY-ID": "other"}, feed="iex")
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"3"}
    resets = {int(a.headers["X-RateLimit-Reset"]) for a in answers}
    assert len(resets) == 1 and resets.pop() > datetime.now(UTC).timestamp()
    assert answers[3].json() == {"message": "too many requests."}
    assert other.status_code == 200, "expected each key to have its own budget"


async def test_without_keys_401_and_with_wrong_keys_403() -> None:
    async with Simulator(rate=1000, key="key", secret="secret") as sim:
        missing = await get(sim, "/v2/stocks/AAPL/trades", None)
        half = await get(sim, "/v2/stocks/AAPL/trades", {"APCA-API-KEY-ID": "key"})
        client = rest_client(sim, secret="nope")
        with pytest.raises(APIError) as wrong:
            await asyncio.to_thread(client.get_stock_trades, StockTradesRequest(symbol_or_symbols="AAPL"))
    assert (missing.status_code, missing.json()) == (401, {"message": "unauthorized."})
    assert half.status_code == 401 and "X-RateLimit-Limit" not in missing.headers
    assert wrong.value.status_code == 403 and wrong.value.message == "forbidden."


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/v2/stocks/AAPL/trades", {"limit": "0"}, 422, "invalid limit: 0, expected 1 to 10000"),
        ("/v2/stocks/AAPL/trades", {"limit": "10001"}, 422, "invalid limit: 10001, expected 1 to 10000"),
        ("/v2/stocks/AAPL/trades", {"limit": "ten"}, 400, "invalid limit: 'ten', expected an integer"),
        ("/v2/stocks/AAPL/quotes", {"sort": "up"}, 400, "invalid sort: 'up', expected asc or desc"),
        ("/v2/stocks/AAPL/quotes", {"start": "yesterday"}, 400, "invalid start: 'yesterday'"),
        ("/v2/stocks/AAPL/quotes", {"start": "2024-06-04", "end": "2024-06-03"}, 422, "end should not be before"),
        ("/v2/stocks/AAPL/trades", {"feed": "otc"}, 400, "invalid feed: 'otc', expected one of iex, sip"),
        ("/v2/stocks/AAPL/trades", {"page_token": "not a token"}, 400, "invalid page token"),
        ("/v2/stocks/AAPL/trades", {"foo": "1", "bar": "2"}, 400, "unexpected query parameter(s): bar, foo"),
        ("/v2/stocks/AAPL/trades", {"timeframe": "1Min"}, 400, "unexpected query parameter(s): timeframe"),
        ("/v2/stocks/AAPL/bars", {}, 400, "timeframe missing"),
        ("/v2/stocks/AAPL/bars", {"timeframe": "7Day"}, 400, "invalid timeframe: '7Day'"),
        ("/v2/stocks/AAPL/bars", {"timeframe": "60Min"}, 400, "invalid timeframe: '60Min'"),
        ("/v2/stocks/trades", {}, 400, "symbols missing"),
        ("/v2/stocks/trades", {"symbols": "AAPL,nope!"}, 400, "invalid symbol: nope!"),
    ],
)
async def test_bad_parameters_are_refused_with_alpacas_status_and_a_message(
    path: str, params: dict[str, str], status: int, message: str
) -> None:
    async with Simulator(rate=1000) as sim:
        answer = await get(sim, path, **params)
    assert answer.status_code == status
    assert answer.json()["message"].startswith(message)


async def test_feeds_the_key_may_not_read_are_403_and_the_default_is_the_best_it_may() -> None:
    async with Simulator(rate=2000, entitled_feeds=("iex",)) as sim:
        history = sim.histories["iex"]
        await wait_for(lambda: history.held > 100, 20, "some market")
        refused = await get(sim, "/v2/stocks/trades", symbols="SPY", feed="sip")
        end = rfc3339(history.clock_ns)
        default = await get(sim, "/v2/stocks/quotes", symbols="SPY", end=end)
        explicit = await get(sim, "/v2/stocks/quotes", symbols="SPY", end=end, feed="iex")
    assert refused.status_code == 403 and "SIP" in refused.json()["message"]
    assert default.json() == explicit.json() and default.json()["quotes"]["SPY"]
    assert "sip" not in sim.histories, "expected no market started for a feed the key may not read"


async def test_a_burst_feed_answers_with_exactly_what_its_replays_sent() -> None:
    async with Simulator(max_events=150_000) as sim, StreamClient.connect(sim.url) as client:
        nothing = (await get(sim, "/v2/stocks/AAPL/trades", feed="sip")).json()
        await client.login()
        await client.subscribe(
            trades=["*"], quotes=["*"], bars=["*"], updatedBars=["*"], dailyBars=["*"], statuses=["*"]
        )
        events = await client.collect(150_000)
        assert len(events) > 2 * len(sim.burst_feed("iex").window.events), "expected the window replayed twice"
        symbols = ",".join(sim.config.symbols)
        trades, _ = await pages(sim, "/v2/stocks/trades", symbols=symbols, feed="iex", limit=10_000)
        quotes, _ = await pages(sim, "/v2/stocks/quotes", symbols=symbols, feed="iex", limit=10_000)
        desc, _ = await pages(sim, "/v2/stocks/trades", symbols="SPY", feed="iex", limit=999, sort="desc")
        minutes, _ = await pages(sim, "/v2/stocks/bars", symbols=symbols, feed="iex", timeframe="1Min", limit=10_000)
        days, _ = await pages(sim, "/v2/stocks/bars", symbols=symbols, feed="iex", timeframe="1Day")
    assert nothing == {"trades": None, "symbol": "AAPL", "next_page_token": None}, "no burst drawn from sip yet"
    assert trades == by_symbol(events, "t")
    assert quotes == by_symbol(events, "q")
    assert desc == {"SPY": trades["SPY"][::-1]}
    assert minutes == final_bars(events, ("b", "u")) and len(minutes["SPY"]) >= 2
    assert days == final_bars(events, ("d",))


def test_the_budget_is_a_fixed_minute_from_a_keys_first_request() -> None:
    limits = RateLimit(2)
    taken = [limits.take("key", now) for now in (1000.5, 1001.0, 1059.9, 1060.5, 1060.6)]
    assert [allowed for allowed, _ in taken] == [True, True, False, True, True]
    assert [h["X-RateLimit-Remaining"] for _, h in taken] == ["1", "0", "0", "1", "0"]
    assert [h["X-RateLimit-Reset"] for _, h in taken] == ["1060", "1060", "1060", "1120", "1120"]
    for i in range(2_000):  # many keys, each its own budget
        assert limits.take(f"k{i}", 1061.0)[0]
    assert limits.take("k0", 1130.0)[1]["X-RateLimit-Remaining"] == "1"
