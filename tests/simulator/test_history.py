"""The REST API's memory of the market: exact, sorted, bounded; and the pages cut from it."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import DEFAULT_START_NS, Market
from simulator.bars import MINUTE_NS, NS
from simulator.history import History
from simulator.pages import PageError, Timeframe, View, bar_view, decode_token, page, series_view

HOUR_NS = 3600 * NS


def market_minutes(minutes: int, seed: int = 1) -> list[dict[str, Any]]:
    """Every event of some whole minutes of a busy market, late trades and bars included."""
    market = Market(seed=seed, start_ns=DEFAULT_START_NS, mean_gap_ns=4_000_000, late_rate=0.05)
    return market.window(minutes)


def test_every_quote_and_trade_comes_back_exactly_in_time_order() -> None:
    events = market_minutes(2)
    history = History(HOUR_NS, 10**6)
    history.record(events, events[-1]["t"])
    for kind in ("q", "t"):
        for symbol in {e["S"] for e in events if e["T"] == kind}:
            sent = sorted((e for e in events if e["T"] == kind and e["S"] == symbol), key=lambda e: e["t"])
            series = history.series(kind, symbol)
            assert series is not None
            expected = [{k: v for k, v in e.items() if k not in ("T", "S")} for e in sent]
            assert [series.row(i) for i in range(len(series))] == expected
            assert series.rows(0, len(series), desc=True) == expected[::-1]
    late, newest = 0, 0
    for e in events:
        if e["T"] in ("q", "t"):
            late += e["t"] < newest
            newest = max(newest, e["t"])
    assert late, "expected the market to report some trades late (out of time order)"


def test_minute_bars_keep_their_last_version_and_daily_bars_their_last() -> None:
    events = market_minutes(3)
    history = History(HOUR_NS, 10**6)
    history.record(events, events[-1]["t"])
    for symbol in ("SPY", "AAPL"):
        last = {e["t"]: e for e in events if e["S"] == symbol and e["T"] in ("b", "u")}
        assert {t: b["v"] for t, b in history.minute_bars(symbol).items()} == {t: b["v"] for t, b in last.items()}
        daily = [e for e in events if e["S"] == symbol and e["T"] == "d"][-1]
        assert history.daily_bars(symbol)[daily["t"]]["v"] == daily["v"]


def test_what_is_older_than_the_retention_goes_but_never_a_ninth_more() -> None:
    retention = 20 * NS
    history = History(retention, 10**9)
    market = Market(seed=2, start_ns=DEFAULT_START_NS)
    for second in range(1, 121):
        until = DEFAULT_START_NS + second * NS
        history.record(market.advance(200, until), until)
        oldest = min(s.t[0] for s in (history.series("q", sym) for sym in market.symbols) if s is not None and len(s))
        assert oldest >= until - retention - retention // 8 - 3 * NS  # a late trade may reach 2 s further back
    assert history.held < 200 * 20 * 9 // 8 + 400
    assert history.daily_bars("SPY"), "expected the day's bar kept while its day lasts"
    assert min(history.minute_bars("SPY")) >= DEFAULT_START_NS + 120 * NS - retention - retention // 8 - MINUTE_NS


def test_the_event_bound_holds_whatever_the_retention() -> None:
    history = History(10 * HOUR_NS, 5_000)
    market = Market(seed=3, start_ns=DEFAULT_START_NS)
    for second in range(1, 61):
        until = DEFAULT_START_NS + second * NS
        history.record(market.advance(500, until), until)
        assert history.held <= 5_000 + 5_000 // 8 + 500
    assert history.recorded > 25_000


def _view(ts: list[int]) -> View:
    def rows(lo: int, hi: int, desc: bool) -> list[dict[str, Any]]:
        items = [{"t": ts[i], "n": i} for i in range(lo, hi)]
        return items[::-1] if desc else items

    return View(ts, rows)


@pytest.mark.parametrize("desc", [False, True])
@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_pages_resume_exactly_across_equal_timestamps_and_symbols(desc: bool, limit: int) -> None:
    views = {"B": _view([1, 2, 2, 2, 3, 5]), "A": _view([2, 2, 4]), "C": _view([9])}
    whole, token = page(views, 2, 5, 100, desc, None)
    assert token is None and list(whole) == ["A", "B"]
    assert [r["n"] for r in whole["B"]] == ([5, 4, 3, 2, 1] if desc else [1, 2, 3, 4, 5])
    merged: dict[str, list[dict[str, Any]]] = {}
    token, pages = None, 0
    while True:
        rows, token = page(views, 2, 5, limit, desc, token)
        pages += 1
        assert sum(map(len, rows.values())) <= limit
        for symbol, items in rows.items():
            merged.setdefault(symbol, []).extend(items)
        if token is None:
            break
        assert decode_token(token)[0] in views
    assert merged == whole
    assert pages == -(-8 // limit), "expected a token only when something is left"


def test_a_token_that_is_not_one_is_refused() -> None:
    with pytest.raises(PageError, match="invalid page token"):
        page({"A": _view([1])}, 0, 9, 10, False, "not a token")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1Min", (1, "Min")), ("15T", (15, "Min")), ("23H", (23, "Hour")), ("1Day", (1, "Day")), ("3M", (3, "Month"))],
)
def test_timeframes_read_as_alpaca_writes_them(text: str, expected: tuple[int, str]) -> None:
    timeframe = Timeframe.parse(text)
    assert (timeframe.amount, timeframe.unit) == expected


@pytest.mark.parametrize("text", ["0Min", "60Min", "24Hour", "2Day", "2Week", "5Month", "1Sec", "Min"])
def test_timeframes_alpaca_refuses_are_refused(text: str) -> None:
    with pytest.raises(PageError, match="invalid timeframe"):
        Timeframe.parse(text)


def test_longer_bars_aggregate_the_minute_bars_the_stream_sent() -> None:
    events = market_minutes(7)
    history = History(HOUR_NS, 10**6)
    history.record(events, events[-1]["t"])
    minutes = history.minute_bars("SPY")
    five = bar_view(history, "SPY", Timeframe.parse("5Min"))
    assert five is not None
    bars = five.rows(0, len(five.ts), False)
    assert all(b["t"] % (5 * MINUTE_NS) == 0 for b in bars)
    for b in bars:
        inside = [minutes[t] for t in sorted(minutes) if b["t"] <= t < b["t"] + 5 * MINUTE_NS]
        assert (b["o"], b["c"]) == (inside[0]["o"], inside[-1]["c"])
        assert (b["h"], b["l"]) == (max(m["h"] for m in inside), min(m["l"] for m in inside))
        assert (b["v"], b["n"]) == (sum(m["v"] for m in inside), sum(m["n"] for m in inside))
    week = bar_view(history, "SPY", Timeframe.parse("1Week"))
    assert week is not None and len(week.ts) == 1
    assert series_view(history, "q", "NOPE") is None
