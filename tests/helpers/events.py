"""Sample events for tests: hypothesis strategies of every event type, and single quotes, trades and bars."""

from __future__ import annotations

import calendar
from datetime import date

from hypothesis import strategies as st

from tickpipe.events import (
    Bar,
    DailyBar,
    Quote,
    Trade,
    TradeCancel,
    TradeCorrection,
    TradingStatus,
    UpdatedBar,
)

# Alpaca timestamps: from 1970 to 2200, any nanosecond.
timestamps = st.integers(min_value=0, max_value=7_258_118_400 * 10**9)


prices = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)


sizes = st.integers(min_value=0, max_value=2**40)


ids = st.integers(min_value=0, max_value=2**63 - 1)


symbols = st.from_regex(r"[A-Z][A-Z0-9.]{0,7}", fullmatch=True)


codes = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=3)


conditions = st.lists(codes, max_size=4).map(tuple)


common = {"symbol": symbols, "timestamp": timestamps, "received_at": timestamps}


quotes = st.builds(
    Quote, **common, bid_exchange=codes, bid_price=prices, bid_size=sizes, ask_exchange=codes,
    ask_price=prices, ask_size=sizes, conditions=conditions, tape=codes,
)  # fmt: skip


trades = st.builds(
    Trade, **common, trade_id=ids, exchange=codes, price=prices, size=sizes, conditions=conditions, tape=codes
)


bar_fields = {"open": prices, "high": prices, "low": prices, "close": prices, "volume": sizes, "vwap": prices,
              "trade_count": sizes}  # fmt: skip


bars = st.one_of(
    st.builds(Bar, **common, **bar_fields),
    st.builds(UpdatedBar, **common, **bar_fields),
    st.builds(DailyBar, **common, **bar_fields),
)


statuses = st.builds(
    TradingStatus, **common, status_code=codes, status_message=st.text(max_size=40), reason_code=codes,
    reason_message=st.text(max_size=40), tape=codes,
)  # fmt: skip


corrections = st.builds(
    TradeCorrection, **common, exchange=codes, original_id=ids, original_price=prices, original_size=sizes,
    original_conditions=conditions, corrected_id=ids, corrected_price=prices, corrected_size=sizes,
    corrected_conditions=conditions, tape=codes,
)  # fmt: skip


cancels = st.builds(
    TradeCancel, **common, trade_id=ids, exchange=codes, price=prices, size=sizes, action=st.sampled_from("CX"),
    tape=codes,
)  # fmt: skip


events = st.one_of(quotes, trades, bars, statuses, corrections, cancels)


NS = 1_000_000_000


def day_ns(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Nanoseconds of ``day`` at this UTC time."""
    return (calendar.timegm(day.timetuple()) + (hour * 60 + minute) * 60 + second) * NS


def quote(symbol: str, ns: int, bid: float = 100.0, size: int = 100, conditions: tuple[str, ...] = ("R",)) -> Quote:
    return Quote(
        symbol=symbol,
        timestamp=ns,
        received_at=ns + 1000,
        bid_exchange="V",
        bid_price=bid,
        bid_size=size,
        ask_exchange="N",
        ask_price=bid + 0.01,
        ask_size=size + 1,
        conditions=conditions,
        tape="C",
    )


def trade(symbol: str, ns: int, trade_id: int, price: float = 100.0, exchange: str = "V") -> Trade:
    return Trade(
        symbol=symbol,
        timestamp=ns,
        received_at=ns + 1000,
        trade_id=trade_id,
        exchange=exchange,
        price=price,
        size=100,
        conditions=("@",),
        tape="C",
    )


def bar(symbol: str, ns: int, open_: float, close: float, volume: int = 1000) -> Bar:
    return Bar(
        symbol=symbol,
        timestamp=ns,
        received_at=ns,
        open=open_,
        high=max(open_, close) + 1,
        low=min(open_, close) - 1,
        close=close,
        volume=volume,
        vwap=(open_ + close) / 2,
        trade_count=10,
    )
