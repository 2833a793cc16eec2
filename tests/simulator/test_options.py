"""The options feed: its declaration, its events, and the simulator serving it on ``/v1beta1/{opra,indicative}``."""

from __future__ import annotations

import re
import threading
import warnings
from collections import Counter
from typing import Any

import msgpack
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from simulator import DEFAULT_START_NS, Simulator, SimulatorConfig
from simulator.config import OPTION_FEEDS, STREAMS
from simulator.options import (
    TRADE_CONDITIONS,
    VENUES,
    OptionMarket,
    black_scholes,
    chain,
    occ_symbol,
    parse_occ,
    tick_size,
)
from simulator.server import feed_of
from simulator.subscriptions import OPTION_CHANNELS, Subscriptions
from tests.helpers.simulator import AlpacaThread, StreamClient, nanos
from tests.helpers.waiting import wait_for
from tickpipe.feeds import FEEDS, OPTIONS
from tickpipe.option_events import OPTION_EVENT_TYPES, OptionQuote, OptionTrade

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.live.option import OptionDataStream
    from alpaca.data.models import Quote, Trade

OPRA, INDICATIVE = OPTION_FEEDS  # "options/opra", "options/indicative"
#: A small chain (one expiry, 10 strikes of SPY, calls and puts), so every contract is busy.
SMALL = tuple(chain(["SPY"], DEFAULT_START_NS, expiries=1, strikes=10))
PACED = SimulatorConfig(rate=2000, start_ns=DEFAULT_START_NS, record=True, feed=OPRA, option_symbols=SMALL)
VENUE_CODES = {code for code, _ in VENUES}


# --- the declaration --------------------------------------------------------------------------------


def test_the_options_feed_declares_alpacas_paths_channels_codes_and_contracts() -> None:
    assert OPTIONS.listed == ("trades", "quotes")
    assert {name: kind.code for name, kind in OPTIONS.channel_types.items()} == {"trades": "t", "quotes": "q"}
    assert OPTIONS.family_of == {"t": "trades", "q": "quotes"}
    assert OPTIONS.word_of == {"t": "options.trades", "q": "options.quotes"}
    assert [OPTIONS.path.format(variant=v) for v in OPTIONS.variants] == ["/v1beta1/opra", "/v1beta1/indicative"]
    assert OPTIONS.encodings == ("msgpack",) and OPTIONS.starless == ("quotes",)
    occ = re.compile(OPTIONS.symbol_pattern)
    good = ("AAPL240621C00190000", "SPY240621P00530000", "SPXW241220C05000000", "BRK2240621C00400500")
    assert all(occ.fullmatch(s) for s in (*good, OPTIONS.example))
    bad = ("AAPL", "AAPL240621X00190000", "AAPL24062C00190000", "aapl240621C00190000", "TOOLONG240621C00190000", "*")
    assert not any(occ.fullmatch(s) for s in bad)
    # Carried end to end: among the feeds whose contract (tests/core/test_feeds.py) holds it to its tables.
    assert OPTIONS in FEEDS and [family.table for family in OPTIONS.tables] == ["options_trades", "options_quotes"]


def test_occ_symbols_round_trip() -> None:
    from datetime import date

    assert occ_symbol("AAPL", date(2024, 6, 21), "C", 190) == "AAPL240621C00190000"
    assert occ_symbol("F", date(2024, 6, 21), "P", 12.5) == "F240621P00012500"
    assert parse_occ("SPXW241220C05000000") == ("SPXW", date(2024, 12, 20), "C", 5000.0)
    with pytest.raises(ValueError, match="expected an OCC contract symbol"):
        parse_occ("AAPL")


def test_the_simulator_derives_the_option_channels_from_the_declaration() -> None:
    assert OPTION_CHANNELS.channels == {"trades": "t", "quotes": "q"}
    assert OPTION_CHANNELS.derived == {} and OPTION_CHANNELS.starless == ("quotes",)
    assert list(Subscriptions(OPTION_CHANNELS).listing()) == ["trades", "quotes"]
    assert STREAMS[OPRA] == (OPTIONS, "/v1beta1/opra") and STREAMS[INDICATIVE] == (OPTIONS, "/v1beta1/indicative")
    assert feed_of("/v1beta1/opra") == OPRA and feed_of("/v1beta1/indicative?x=1") == INDICATIVE
    assert feed_of("/v1beta1/crypto") is None and feed_of("/v1beta2/opra") is None


# --- the market -------------------------------------------------------------------------------------


def test_the_default_chain_has_thousands_of_contracts_on_coming_fridays() -> None:
    contracts = chain(start_ns=DEFAULT_START_NS)
    assert len(contracts) == len(set(contracts)) >= 2000
    occ = re.compile(OPTIONS.symbol_pattern)
    assert all(occ.fullmatch(c) for c in contracts)
    expiries = {parse_occ(c)[1] for c in contracts}
    assert len(expiries) == 4 and all(e.weekday() == 4 for e in expiries)  # Fridays
    assert {parse_occ(c)[2] for c in contracts} == {"C", "P"}


def test_prices_are_intrinsic_plus_time_value() -> None:
    for call in (True, False):
        for strike in (80.0, 100.0, 120.0):
            intrinsic = max(0.0, 100 - strike) if call else max(0.0, strike - 100)
            month = black_scholes(100.0, strike, 30 / 365, 0.3, call)
            year = black_scholes(100.0, strike, 1.0, 0.3, call)
            assert month >= intrinsic and year > month > 0  # time value grows with time
            assert black_scholes(100.0, strike, 0.0, 0.3, call) == intrinsic
    assert tick_size(2.99) == 0.01 and tick_size(3.0) == 0.05


def test_the_market_is_deterministic_mostly_quotes_and_believable() -> None:
    one = OptionMarket(seed=7, start_ns=DEFAULT_START_NS).ticks(20_000)
    two = OptionMarket(seed=7, start_ns=DEFAULT_START_NS).ticks(20_000)
    assert one == two, "expected the same seed to give the same events"
    assert one != OptionMarket(seed=8, start_ns=DEFAULT_START_NS).ticks(20_000)
    kinds = Counter(e["T"] for e in one)
    assert set(kinds) == {"q", "t"} and kinds["q"] > 5 * kinds["t"] > 0
    assert len({e["S"] for e in one}) > 1000, "expected activity across the chain"
    stamps = [e["t"] for e in one]
    assert stamps == sorted(stamps)
    conditions = {c for c, _ in TRADE_CONDITIONS}
    for e in one:
        if e["T"] == "q":
            assert list(e) == ["T", "S", "t", "bx", "bp", "bs", "ax", "ap", "as", "c"]
            assert 0 <= e["bp"] < e["ap"] and e["bx"] in VENUE_CODES and e["ax"] in VENUE_CODES
            for price in (e["bp"], e["ap"]):
                tick = tick_size(price) if price >= 3.0 else 0.01
                assert abs(price / tick - round(price / tick)) < 1e-6, f"expected {price} on its tick"
            assert isinstance(e["bs"], int) and isinstance(e["as"], int) and e["as"] >= 1
        else:
            assert list(e) == ["T", "S", "t", "p", "s", "x", "c"]
            assert e["p"] > 0 and isinstance(e["s"], int) and e["s"] >= 1
            assert e["x"] in VENUE_CODES and e["c"] in conditions


def test_every_option_message_decodes_into_its_struct() -> None:
    for event in OptionMarket(SMALL, start_ns=DEFAULT_START_NS).ticks(500):
        decoded = msgspec.msgpack.decode(msgpack.packb(event), type=OPTION_EVENT_TYPES[event["T"]])
        assert decoded.symbol == event["S"] and decoded.timestamp == event["t"]
        assert msgspec.json.decode(msgspec.json.encode(decoded)) == {**event, "_r": 0, "_v": 1}
        assert decoded.family == ("trades" if event["T"] == "t" else "quotes")


# --- the stream -------------------------------------------------------------------------------------


@pytest.mark.parametrize("feed", OPTION_FEEDS)
async def test_a_json_client_is_told_412_and_closed(feed: str) -> None:
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url_for(feed)) as client:
        assert await client.control() == {
            "T": "error",
            "code": 412,
            "msg": "option messages are only available in MsgPack format",
        }
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 1003


@pytest.mark.parametrize("feed", OPTION_FEEDS)
async def test_msgpack_clients_get_exactly_their_contracts_and_star_quotes_are_refused(feed: str) -> None:
    wanted = list(SMALL[:4])
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url_for(feed), "msgpack") as client:
        await client.login()
        await client.send({"action": "subscribe", "quotes": ["*"]})
        assert await client.control() == {
            "T": "error",
            "code": 413,
            "msg": "star subscription is not allowed for option quotes",
        }
        await client.send({"action": "subscribe", "trades": ["AAPL"]})
        assert (await client.control())["code"] == 400  # not an OCC symbol
        reply = await client.subscribe(trades=["*"], quotes=wanted)
        assert reply == {"T": "subscription", "trades": ["*"], "quotes": wanted}
        await client.collect(300)
        session = sim.sessions[-1]
        assert session.feed == feed
        await wait_for(lambda: session.sent_total >= len(client.data), 10, "the session's count")
        kinds = Counter(m["T"] for m in client.data)
        assert kinds["q"] > 0
        assert {m["S"] for m in client.data if m["T"] == "q"} <= set(wanted)
        assert all(isinstance(m["t"], msgpack.Timestamp) for m in client.data)
        # What the client got is what the simulator recorded as sent, in order.
        sent = [{**m, "t": nanos(m["t"])} for m in session.sent_events()]
        assert [{**m, "t": nanos(m["t"])} for m in client.data] == sent[: len(client.data)]


async def test_an_option_feed_outside_the_plan_answers_409() -> None:
    async with (
        Simulator(PACED, entitled_feeds=(INDICATIVE,)) as sim,
        StreamClient.connect(sim.url_for(OPRA), "msgpack") as client,
    ):
        assert await client.control() == {"T": "success", "msg": "connected"}
        await client.send({"action": "auth", "key": "key", "secret": "secret"})
        assert await client.control() == {"T": "error", "code": 409, "msg": "insufficient subscription"}


class OptionThread(AlpacaThread):
    """alpaca-py's OptionDataStream on a thread of its own, as :class:`AlpacaThread` runs the stock one."""

    def __init__(self, url: str) -> None:
        self.stream = OptionDataStream("key", "secret", url_override=url)  # type: ignore[assignment]
        self.stream._reconnect_min_backoff = 0.05
        self.received: list[Any] = []
        self.thread = threading.Thread(target=self.stream.run, name="alpaca-option-stream", daemon=True)


async def test_alpaca_py_option_stream_gets_trades_and_quotes_of_its_contracts_as_its_models() -> None:
    wanted = SMALL[:6]
    async with Simulator(PACED) as sim:
        client = OptionThread(sim.url)
        stream: Any = client.stream
        stream.subscribe_trades(client.handler, *wanted)
        stream.subscribe_quotes(client.handler, *wanted)
        client.start()
        try:
            await wait_for(lambda: client.of_type(Trade) and client.of_type(Quote), 60, "option trades and quotes")
            trades, quotes = client.of_type(Trade), client.of_type(Quote)
            assert {m.symbol for m in trades + quotes} <= set(wanted)
            trade, quote = trades[0], quotes[0]
            assert trade.price > 0 and trade.size >= 1 and trade.exchange in VENUE_CODES
            assert 0 <= quote.bid_price < quote.ask_price and quote.ask_exchange in VENUE_CODES
            assert quote.conditions == "A" and trade.timestamp.tzinfo is not None
        finally:
            await client.stop(sim)
        # Every message alpaca-py handled is one the simulator sent on its connection.
        sent = Counter((m["T"], m["S"]) for s in sim.sessions for m in s.sent_events())
        got = Counter(("t" if isinstance(m, Trade) else "q", m.symbol) for m in client.received)
        assert got and not got - sent


def test_option_trades_and_quotes_parse_as_alpaca_py_models() -> None:
    """alpaca-py's models take the option messages' fields (their conditions one code, not a list)."""
    market = OptionMarket(SMALL, start_ns=DEFAULT_START_NS)
    events = market.ticks(400)
    trade = next(e for e in events if e["T"] == "t")
    quote = next(e for e in events if e["T"] == "q")
    stamp = msgpack.Timestamp.from_unix_nano(trade["t"]).to_datetime()  # as alpaca-py's _cast does
    assert Trade(trade["S"], {**trade, "t": stamp}).conditions == trade["c"]
    assert Quote(quote["S"], {**quote, "t": stamp}).bid_size == quote["bs"]
    assert isinstance(msgspec.convert(trade, OptionTrade), OptionTrade)
    assert isinstance(msgspec.convert(quote, OptionQuote), OptionQuote)


async def test_a_contract_outside_the_chain_is_listed_when_a_client_names_it() -> None:
    extra = "AAPL240621C00190000"
    assert extra not in SMALL
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url_for(OPRA), "msgpack") as client:
        await client.login()
        await client.subscribe(quotes=[extra])
        await client.collect(20)
        assert {m["S"] for m in client.data} == {extra}
        market = sim.markets[OPRA]
        assert isinstance(market, OptionMarket) and extra in market.symbols and SMALL[0] in market.symbols
