"""The real alpaca-py StockDataStream against the simulator, raw and parsed."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import msgpack
import pytest

from simulator import DEFAULT_START_NS, Faults, Simulator, SimulatorConfig, synthetic_symbols
from simulator.bars import NS
from tests.helpers.simulator import AlpacaThread, Bar, Handler, Quote, StockDataStream, Trade, alpaca
from tests.helpers.waiting import wait_for

# Paced, with the market clock 2 s before a minute mark so bars come soon. The market runs from start-up,
# not from the first subscription: a client slower than that gets the next minute's bars (hence 90 s to wait).
PACED = SimulatorConfig(rate=2000, start_ns=DEFAULT_START_NS + 58 * NS, record=True)


async def test_parsed_quotes_trades_and_bars_arrive_as_validated_models() -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_quotes(handler, "AAPL", "SPY")
        stream.subscribe_trades(handler, "*")
        stream.subscribe_bars(handler, "*")

    async with Simulator(PACED) as sim, alpaca(sim, subscribe) as client:
        await wait_for(lambda: all(client.of_type(k) for k in (Quote, Trade, Bar)), 90, "quotes, trades and bars")
        quotes = client.of_type(Quote)
        assert {q.symbol for q in quotes} <= {"AAPL", "SPY"}
        assert all(q.bid_price < q.ask_price and isinstance(q.timestamp, datetime) for q in quotes)
        assert all(t.price > 0 and t.size > 0 and t.id for t in client.of_type(Trade))
        bar = client.of_type(Bar)[0]
        assert bar.low <= bar.open <= bar.high and bar.volume > 0 and bar.timestamp.second == 0
        session = sim.sessions[0]
        assert session.encoding == "msgpack"
        assert session.received[0] == {"action": "auth", "key": "key", "secret": "secret"}


async def test_raw_mode_hands_over_the_wire_dicts() -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_trades(handler, "SPY")

    async with Simulator(PACED) as sim, alpaca(sim, subscribe, raw_data=True) as client:
        await wait_for(lambda: len(client.received) >= 20, 20, "20 raw trades")
        trade = client.received[0]
        assert trade["T"] == "t" and trade["S"] == "SPY"
        assert isinstance(trade["t"], msgpack.Timestamp)
        assert set(trade) == {"T", "S", "i", "x", "p", "s", "c", "z", "t"}


async def test_unsubscribe_stops_them() -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_quotes(handler, "AAPL")
        stream.subscribe_trades(handler, "*")

    async with Simulator(PACED) as sim, alpaca(sim, subscribe) as client:
        await wait_for(lambda: bool(client.of_type(Quote) and client.of_type(Trade)), 20, "quotes and trades")
        session = sim.sessions[0]
        await asyncio.to_thread(client.stream.unsubscribe_quotes, "AAPL")
        await sim.wait_for(lambda: not session.subscriptions.accepts("q", "AAPL"))
        sent_then = session.sent_total
        # Everything sent so far, and more, has been delivered: so has any quote.
        await sim.wait_for(lambda: session.sent_total > sent_then + 200)
        trades_then = session.sent["t"]
        await wait_for(lambda: len(client.of_type(Trade)) >= trades_then, 20, "the trades sent")
        quotes_sent = session.sent_by_symbol[("q", "AAPL")]
        assert len(client.of_type(Quote)) == quotes_sent
        assert session.sent_by_symbol[("q", "AAPL")] == quotes_sent, "expected no quotes after unsubscribe"


async def test_a_wrong_key_raises_alpaca_pys_own_auth_error() -> None:
    async with Simulator(key="key", secret="secret") as sim:
        stream = AlpacaThread(sim.url, key="key", secret="nope").stream
        with pytest.raises(ValueError, match="auth failed"):
            await stream._start_ws()
        await stream.close()
        assert sim.sessions[0].errors == [402]


async def test_a_running_stream_with_a_wrong_key_logs_the_auth_error(caplog: pytest.LogCaptureFixture) -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_trades(handler, "SPY")

    caplog.set_level(logging.ERROR, logger="alpaca")
    async with Simulator(key="key", secret="secret") as sim, alpaca(sim, subscribe, secret="nope") as client:
        await wait_for(lambda: "auth failed" in caplog.text, 10, "alpaca-py to log the auth error")
        assert client.received == []
        assert all(s.errors == [402] for s in sim.sessions)


async def test_insufficient_subscription_makes_alpaca_py_give_up() -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_trades(handler, "SPY")

    async with Simulator(entitled_feeds=("iex",), feed="sip") as sim:
        client = AlpacaThread(sim.url)
        subscribe(client.stream, client.handler)
        client.start()
        await wait_for(lambda: not client.thread.is_alive(), 10, "the stream to stop on its own")
        assert [s.errors for s in sim.sessions] == [[409]]


async def test_a_refused_connection_is_retried_and_then_streams() -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_trades(handler, "*")

    async with Simulator(rate=2000, faults=Faults(refuse_connections=1)) as sim, alpaca(sim, subscribe) as client:
        await wait_for(lambda: len(client.received) >= 10, 20, "trades after the retry")
        assert sim.sessions[0].errors == [406]
        assert sim.sessions[-1].authenticated


async def test_a_subscription_too_big_for_one_frame_arrives_whole() -> None:
    symbols = list(synthetic_symbols(8000))

    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_quotes(handler, *symbols)

    async with Simulator(symbols=symbols[:50], rate=1000) as sim, alpaca(sim, subscribe) as client:
        await sim.wait_for(lambda: bool(sim.sessions) and bool(sim.sessions[0].subscriptions))
        assert sim.sessions[0].subscriptions.listing()["quotes"] == symbols
        await wait_for(lambda: len(client.received) >= 10, 20, "quotes")
