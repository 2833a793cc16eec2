"""Bars built from the simulator's own trades, so every bar agrees with the tape.

A minute bar is the aggregate of the trades stamped inside that minute, net
of cancels and corrections; an updated bar re-sends a minute after a late
trade landed in it; a daily bar aggregates every minute bar of the day so far.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

NS = 1_000_000_000
MINUTE_NS = 60 * NS
_NEW_YORK = ZoneInfo("America/New_York")

#: One trade as the aggregator needs it: (timestamp ns, price, size).
TradeTick = tuple[int, float, int]


#: Trade sizes: whole shares (stocks) or fractions (crypto).
Size = TypeVar("Size", int, float)


@dataclass(slots=True)
class Aggregate(Generic[Size]):
    """Open, high, low, close, volume, count and price*volume over some trades."""

    first_t: int
    o: float
    h: float
    low: float
    last_t: int
    c: float
    v: Size
    n: int
    pv: float

    @classmethod
    def of_trade(cls, t: int, p: float, s: Size) -> Aggregate[Size]:
        """The aggregate of one trade."""
        return cls(t, p, p, p, t, p, s, 1, p * s)

    def add(self, t: int, p: float, s: Size) -> None:
        """Fold one more trade in; open and close follow the timestamps, not arrival order."""
        if t < self.first_t:
            self.first_t, self.o = t, p
        if t >= self.last_t:
            self.last_t, self.c = t, p
        self.h = max(self.h, p)
        self.low = min(self.low, p)
        self.v += s
        self.n += 1
        self.pv += p * s

    def merge(self, other: Aggregate[Size]) -> None:
        """Fold another aggregate in (a later minute into the day, say)."""
        if other.first_t < self.first_t:
            self.first_t, self.o = other.first_t, other.o
        if other.last_t >= self.last_t:
            self.last_t, self.c = other.last_t, other.c
        self.h = max(self.h, other.h)
        self.low = min(self.low, other.low)
        self.v += other.v
        self.n += other.n
        self.pv += other.pv

    def copy(self) -> Aggregate[Size]:
        """An independent copy, so a sent bar never changes afterwards."""
        return Aggregate(self.first_t, self.o, self.h, self.low, self.last_t, self.c, self.v, self.n, self.pv)


def aggregate(trades: Iterable[TradeTick]) -> Aggregate[int] | None:
    """The aggregate of some trades, or None when there are none."""
    agg: Aggregate[int] | None = None
    for t, p, s in trades:
        if agg is None:
            agg = Aggregate.of_trade(t, p, s)
        else:
            agg.add(t, p, s)
    return agg


def bar(kind: str, symbol: str, agg: Aggregate[Any], t: int) -> dict[str, Any]:
    """A bar message (``T`` = b, u or d) in Alpaca's field order; ``t`` in ns."""
    return {
        "T": kind,
        "S": symbol,
        "o": agg.o,
        "h": agg.h,
        "l": agg.low,
        "c": agg.c,
        "v": agg.v,
        "t": t,
        "n": agg.n,
        "vw": round(agg.pv / agg.v, 6),
    }


def minute_start(t: int) -> int:
    """Start of the minute containing ``t`` (ns)."""
    return t - t % MINUTE_NS


@lru_cache(maxsize=64)
def _day_start(utc_day: int) -> int:
    moment = datetime.fromtimestamp(utc_day * 86400 + 43200, UTC).astimezone(_NEW_YORK)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(midnight.timestamp()) * NS


def day_start(t: int) -> int:
    """Midnight in New York of the trading day containing ``t``, as Alpaca stamps daily bars."""
    start = _day_start(t // (86400 * NS))
    if start > t:  # before New York midnight of this UTC day: the previous one
        start = _day_start(t // (86400 * NS) - 1)
    elif t - start >= 86400 * NS:
        start = _day_start(t // (86400 * NS) + 1)
    return start
