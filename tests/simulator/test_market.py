"""The simulated market on its own: deterministic, consistent, believable."""

from __future__ import annotations

import itertools
import re
from typing import Any

import msgpack
import pytest

from simulator import DEFAULT_START_NS, DEFAULT_SYMBOLS, Market, synthetic_symbols
from simulator.bars import MINUTE_NS, NS, day_start
from simulator.symbols import listings
from simulator.wire import encode_events
from tests.helpers.simulator import (
    Bar,
    Quote,
    StockDataStream,
    Trade,
    TradeCancel,
    TradeCorrection,
    TradingStatus,
    check_tape,
    nanos,
)
from tickpipe.codecs import decode_frame

# Busy enough to exercise every rule in a few simulated minutes.
EVENTFUL: dict[str, Any] = {
    "mean_gap_ns": 5_000_000,
    "late_rate": 0.05,
    "correction_rate": 0.02,
    "cancel_rate": 0.02,
    "halt_rate": 0.001,
}


def test_same_seed_same_market_other_seed_other_market() -> None:
    first = Market(seed=7).events(3000, "raw")
    assert first == Market(seed=7).events(3000, "raw")
    assert first != Market(seed=8).events(3000, "raw")


def test_events_returns_exactly_n_in_the_encoding_asked() -> None:
    market = Market(seed=1)
    packed = market.events(500)
    assert len(packed) == 500
    assert all(isinstance(e["t"], msgpack.Timestamp) for e in packed)
    texts = Market(seed=1).events(500, "json")
    assert [nanos(e["t"]) for e in texts] == [nanos(e["t"]) for e in packed]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", e["t"]) for e in texts)


def test_trades_bars_and_daily_bars_agree_over_minutes_of_market() -> None:
    market = Market(seed=3, **EVENTFUL)
    events = market.ticks(60_000)  # five simulated minutes
    checked = check_tape(events)
    assert checked["trades"] > 10_000
    assert checked["bars"] >= 4 * len(DEFAULT_SYMBOLS)
    assert checked["daily"] >= 4 * len(DEFAULT_SYMBOLS)
    for rule in ("updated", "corrections", "cancels"):
        assert checked[rule] > 0, f"expected the run to exercise {rule}"


def test_some_trades_print_strictly_inside_the_spread() -> None:
    events = Market(seed=4).ticks(20_000)
    last: dict[str, tuple[float, float]] = {}
    inside = 0
    for e in events:
        if e["T"] == "q":
            last[e["S"]] = (e["bp"], e["ap"])
        elif e["T"] == "t" and e["S"] in last:
            inside += last[e["S"]][0] < e["p"] < last[e["S"]][1]
    assert inside > 100


def test_timestamps_have_real_nanoseconds_and_prices_are_cents() -> None:
    events = Market(seed=5).ticks(5000)
    ticks = [e for e in events if e["T"] in ("q", "t")]
    assert sum(e["t"] % 1000 != 0 for e in ticks) > 0.9 * len(ticks)
    assert all(a["t"] < b["t"] for a, b in itertools.pairwise(ticks) if b["T"] == "q")
    quotes = [e for e in ticks if e["T"] == "q"]
    assert all(round(e["bp"], 2) == e["bp"] and round(e["ap"], 2) == e["ap"] for e in quotes)
    assert all(isinstance(e["bs"], int) and isinstance(e["as"], int) for e in quotes)
    assert {e["c"][0] for e in ticks if e["T"] == "t"} == {"@"}
    assert {e["z"] for e in ticks} == {"A", "B", "C"}


def test_bars_are_stamped_on_the_minute_and_daily_bars_at_new_york_midnight() -> None:
    events = Market(seed=6).ticks(70_000)
    bars = [e for e in events if e["T"] == "b"]
    dailies = [e for e in events if e["T"] == "d"]
    assert bars and dailies
    assert all(b["t"] % MINUTE_NS == 0 for b in bars)
    midnight = day_start(DEFAULT_START_NS)
    assert {d["t"] for d in dailies} == {midnight}
    assert DEFAULT_START_NS - midnight == (13 * 3600 + 1800 - 4 * 3600) * NS  # 09:30 EDT


def test_a_halted_symbol_neither_quotes_nor_trades_until_it_resumes() -> None:
    events = Market(seed=9, **EVENTFUL).ticks(40_000)
    halted: set[str] = set()
    halts = 0
    for e in events:
        if e["T"] == "s":
            assert e["sc"] in ("2", "3", "H", "T"), e
            if e["sc"] in ("2", "H"):
                halted.add(e["S"])
                halts += 1
            else:
                halted.discard(e["S"])
        elif e["T"] in ("q", "t"):
            assert e["S"] not in halted, f"expected no ticks while {e['S']} is halted, got {e}"
    assert halts > 0


def test_the_iex_feed_reports_every_quote_and_trade_from_iex() -> None:
    events = Market(seed=2, feed="iex").ticks(2000)
    assert {e["bx"] for e in events if e["T"] == "q"} == {"V"}
    assert {e["x"] for e in events if e["T"] == "t"} == {"V"}
    assert len({e["x"] for e in Market(seed=2).ticks(2000) if e["T"] == "t"}) > 5


def test_advance_spreads_ticks_over_the_interval_it_is_given() -> None:
    market = Market(seed=1)
    start = market.clock_ns
    events = market.advance(100, start + NS)
    ticks = [e for e in events if e["T"] in ("q", "t")]
    assert 0 < len(ticks) <= 100
    assert all(start < e["t"] <= start + NS for e in ticks)
    assert market.clock_ns == start + NS


def test_default_universe_is_about_fifty_real_tickers_and_synthetic_ones_are_distinct() -> None:
    assert 45 <= len(DEFAULT_SYMBOLS) <= 60
    assert {"AAPL", "SPY", "MSFT"} <= set(DEFAULT_SYMBOLS)
    made_up = synthetic_symbols(1000)
    assert len(set(made_up)) == 1000
    assert not set(made_up) & set(DEFAULT_SYMBOLS)
    assert listings(list(made_up[:3]), seed=1) == listings(list(made_up[:3]), seed=1)
    events = Market(made_up[:20], seed=1).ticks(1000)
    assert {e["S"] for e in events} <= set(made_up[:20])
    with pytest.raises(ValueError, match="positive"):
        synthetic_symbols(0)


def test_every_message_type_validates_as_an_alpaca_py_model() -> None:
    stream = StockDataStream("key", "secret")
    models = {
        "q": Quote,
        "t": Trade,
        "b": Bar,
        "u": Bar,
        "d": Bar,
        "s": TradingStatus,
        "c": TradeCorrection,
        "x": TradeCancel,
    }
    seen = set()
    for event in Market(seed=3, **EVENTFUL).events(60_000):
        if event["T"] in seen:
            continue
        parsed = stream._cast(dict(event))
        assert isinstance(parsed, models[event["T"]]), f"expected {models[event['T']]}, got {parsed!r}"
        assert getattr(parsed, "symbol", None) == event["S"]
        seen.add(event["T"])
    assert seen == set(models)


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_tickpipe_decodes_every_simulated_message(encoding: str) -> None:
    raw = Market(seed=3, **EVENTFUL).events(20_000, "raw")
    frame = encode_events(raw, encoding)  # type: ignore[arg-type]
    decoded = decode_frame(frame.decode() if encoding == "json" else frame, received_at=1)
    assert decoded.rejected == []
    assert len(decoded.events) == len(raw)
    assert [e.timestamp for e in decoded.events] == [e["t"] for e in raw]
