"""The simulator's option history (``/v1beta1/options/trades``) against what its option stream sent, and
its two option paths (``/v1beta1/opra``, ``/v1beta1/indicative``) showing one market.

Alpaca keeps option trades (``OptionHistoricalDataClient.get_option_trades``) and no option quotes of a
past window, at most 100 contracts a request: the simulator keeps and serves the same.
"""

from __future__ import annotations

import asyncio
import warnings
from datetime import UTC, datetime
from typing import Any

import httpx

from simulator import DEFAULT_START_NS, Simulator, SimulatorConfig
from simulator.bars import NS
from simulator.config import OPTION_FEEDS, market_of
from simulator.history import OPTION_LAYOUTS, History
from simulator.options import OptionMarket, chain
from tests.helpers.simulator import KEYS, StreamClient, nanos, stream_shape
from tests.helpers.waiting import wait_for

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.historical.option import OptionHistoricalDataClient
    from alpaca.data.models import Trade, TradeSet
    from alpaca.data.requests import OptionTradesRequest

OPRA, INDICATIVE = OPTION_FEEDS
#: One expiry of SPY, 8 strikes, calls and puts: 16 contracts, each busy.
SMALL = tuple(chain(["SPY"], DEFAULT_START_NS, expiries=1, strikes=8))
PACED = SimulatorConfig(rate=2000, start_ns=DEFAULT_START_NS, option_symbols=SMALL, rest_rate_limit=100_000, feed=OPRA)
TRADES = "/v1beta1/options/trades"


def test_the_option_history_keeps_every_trade_exactly_and_no_quote() -> None:
    market = OptionMarket(SMALL, start_ns=DEFAULT_START_NS)
    events = market.ticks(10_000)
    history = History(3600 * NS, 10**6, layouts=OPTION_LAYOUTS)
    history.record(events, market.clock_ns)
    trades = [e for e in events if e["T"] == "t"]
    assert 0 < len(trades) < len(events) // 5, "expected quotes to outnumber trades"
    assert history.held == history.recorded == len(trades), "expected option quotes not to be kept"
    for symbol in SMALL:
        assert history.series("q", symbol) is None
        expected = [stream_shape(e) for e in trades if e["S"] == symbol]
        series = history.series("t", symbol)
        assert series is not None and series.rows(0, len(series)) == expected
        assert list(series.row(0)) == ["t", "x", "p", "s", "c"], "expected Alpaca's order of fields"


async def test_opra_and_indicative_show_one_market() -> None:
    """A client of either path gets the same events; the REST history is that market's."""
    assert market_of(INDICATIVE) == market_of(OPRA) == OPRA
    async with (
        Simulator(PACED) as sim,
        StreamClient.connect(sim.url_for(OPRA), "msgpack") as opra,
        StreamClient.connect(sim.url_for(INDICATIVE), "msgpack") as indicative,
    ):
        for client in (opra, indicative):
            await client.login()
            await client.subscribe(trades=list(SMALL), quotes=list(SMALL))
        await opra.collect(3000, timeout=30)
        await indicative.collect(3000, timeout=30)
        assert list(sim.markets) == [OPRA] and list(sim.histories) == [OPRA]
        assert sim.history(INDICATIVE) is sim.history(OPRA)
    a = [{**m, "t": nanos(m["t"])} for m in opra.data]
    b = [{**m, "t": nanos(m["t"])} for m in indicative.data]
    lo, hi = max(a[0]["t"], b[0]["t"]), min(a[-1]["t"], b[-1]["t"])
    common = [m for m in a if lo <= m["t"] <= hi]
    assert len(common) > 1000 and common == [m for m in b if lo <= m["t"] <= hi]


def utc(ns: int) -> datetime:
    """alpaca-py takes datetimes: microseconds."""
    assert ns % 1000 == 0
    return datetime.fromtimestamp(ns // NS, UTC).replace(microsecond=ns // 1000 % 1_000_000)


async def test_alpaca_py_reads_exactly_the_option_trades_the_indicative_stream_sent() -> None:
    async with Simulator(PACED) as sim:
        async with StreamClient.connect(sim.url_for(INDICATIVE), "msgpack") as client:
            await client.login()
            await client.subscribe(trades=list(SMALL))
            await client.collect(400, timeout=60)
        streamed = [{**m, "t": nanos(m["t"])} for m in client.data]
        # Whole microseconds inside what was streamed: nothing in the window was made before the subscription.
        start, end = (streamed[0]["t"] // 1000 + 1) * 1000, streamed[-1]["t"] // 1000 * 1000
        reader = OptionHistoricalDataClient("key", "secret", url_override=sim.rest_url)
        request = OptionTradesRequest(symbol_or_symbols=list(SMALL), start=utc(start), end=utc(end))
        trades = await asyncio.to_thread(reader.get_option_trades, request)
    want: dict[str, list[tuple[Any, ...]]] = {}
    for m in streamed:
        if start <= m["t"] <= end:
            want.setdefault(m["S"], []).append((utc(m["t"] // 1000 * 1000), m["x"], m["p"], m["s"], m["c"]))
    assert isinstance(trades, TradeSet) and len(want) > 5
    got = {
        symbol: [(t.timestamp, t.exchange, t.price, t.size, t.conditions) for t in items]
        for symbol, items in trades.data.items()
    }
    assert all(isinstance(t, Trade) for items in trades.data.values() for t in items)
    assert got == want


async def test_the_option_history_pages_and_refuses_as_alpaca_does() -> None:
    async with Simulator(PACED) as sim, httpx.AsyncClient(base_url=sim.rest_url, headers=KEYS) as http:
        history = sim.history(OPRA)
        assert isinstance(history, History)
        await wait_for(lambda: history.recorded >= 300, 30, "300 option trades made")
        window = {"symbols": ",".join(SMALL), "start": "2024-06-03", "limit": "7"}
        items, pages, token = 0, 0, None
        while True:
            answer = await http.get(TRADES, params={**window, **({"page_token": token} if token else {})})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            items += sum(len(v) for v in body["trades"].values())
            pages += 1
            token = body["next_page_token"]
            if not token or pages == 5:
                break
        assert pages == 5 and items == 35, "expected pages of the limit asked for"

        refusals = [
            ({"symbols": ",".join(chain(["SPY"], DEFAULT_START_NS, expiries=2, strikes=26))}, 400, "too many symbols"),
            ({"symbols": "AAPL"}, 400, "invalid symbol: AAPL, expected an OCC contract"),
            ({"symbols": SMALL[0], "feed": "opra"}, 400, "unexpected query parameter(s): feed"),
            ({"symbols": SMALL[0], "limit": "10001"}, 422, "invalid limit"),
        ]
        for params, status, message in refusals:
            answer = await http.get(TRADES, params=params)
            assert (answer.status_code, answer.json()["message"][: len(message)]) == (status, message)
        assert (await http.get("/v1beta1/options/quotes", params={"symbols": SMALL[0]})).status_code == 404
        async with httpx.AsyncClient(base_url=sim.rest_url) as keyless:
            assert (await keyless.get(TRADES, params={"symbols": SMALL[0]})).status_code == 401, "Alpaca's needs keys"
