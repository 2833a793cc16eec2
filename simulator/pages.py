"""Pages of history as Alpaca cuts them: by symbol, then by time, with an opaque token.

Alpaca orders a multi-symbol answer symbol by symbol (alphabetically), each
symbol's items by timestamp (``sort=desc`` reverses time, not symbols), and
``limit`` counts items over all symbols. ``next_page_token`` names the first
item not sent, and is null exactly when nothing is left. The token here is
base64 of ``SYMBOL|t|k``: the item is the ``k``-th of that symbol's items
stamped ``t`` in the page's direction, which stays right while new events
are appended and old ones dropped.

Bars for a timeframe are built here from the minute and daily bars the
stream sent: ``1Min`` is the final minute bar itself, ``1Day`` the last daily
bar, longer minutes and hours aggregate minute bars, weeks and months daily bars.
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from simulator.bars import MINUTE_NS, NS

NEW_YORK = ZoneInfo("America/New_York")


def parse_limit(text: str | None, default: int, most: int, error: Callable[[int, str], Exception]) -> int:
    """A request's ``limit`` as Alpaca reads it: ``default`` when absent, 400 for no integer, 422 out of
    1 to ``most``; ``error(status, message)`` is what the caller's route raises."""
    if not text:
        return default
    try:
        limit = int(text)
    except ValueError:
        raise error(400, f"invalid limit: {text!r}, expected an integer") from None
    if not 1 <= limit <= most:
        raise error(422, f"invalid limit: {limit}, expected 1 to {most}")
    return limit


_TIMEFRAME = re.compile(r"([1-9][0-9]?)(Min|T|Hour|H|Day|D|Week|W|Month|M)")
_UNITS = {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}
_MONTHS = (1, 2, 3, 4, 6, 12)


class Items(Protocol):
    """One symbol's quotes or trades in time order (a :class:`~simulator.history.Series`)."""

    @property
    def t(self) -> Sequence[int]: ...

    def __len__(self) -> int: ...

    def rows(self, lo: int, hi: int, desc: bool = False) -> list[dict[str, Any]]: ...


class Past(Protocol):
    """What pages are cut from: a feed's kept history, or a burst feed's rebuilt one."""

    clock_ns: int

    def series(self, kind: str, symbol: str) -> Items | None: ...

    def minute_bars(self, symbol: str) -> dict[int, dict[str, Any]]: ...

    def daily_bars(self, symbol: str) -> dict[int, dict[str, Any]]: ...


class PageError(ValueError):
    """A page token or timeframe that cannot be read (answered with 400)."""


@dataclass(frozen=True)
class View:
    """One symbol's items in time order: their timestamps, and ``rows(lo, hi, desc)`` reads items ``lo:hi``."""

    ts: Sequence[int]
    rows: Callable[[int, int, bool], list[dict[str, Any]]]


Rows = dict[str, list[dict[str, Any]]]


def encode_token(symbol: str, t: int, k: int) -> str:
    return base64.b64encode(f"{symbol}|{t}|{k}".encode()).decode()


def decode_token(token: str) -> tuple[str, int, int]:
    try:
        symbol, t, k = base64.b64decode(token, validate=True).decode().split("|")
        return symbol, int(t), int(k)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise PageError(f"invalid page token: {token!r}") from exc


def page(
    views: dict[str, View], start: int, end: int, limit: int, desc: bool, token: str | None
) -> tuple[Rows, str | None]:
    """Up to ``limit`` items stamped in [start, end] over ``views``, and the next page's token."""
    symbols = sorted(views)
    resume = decode_token(token) if token else None
    out: Rows = {}
    left = limit
    for symbol in symbols:
        if resume is not None and symbol < resume[0]:
            continue
        view = views[symbol]
        ts = view.ts
        lo, hi = bisect_left(ts, start), bisect_right(ts, end)
        if resume is not None and symbol == resume[0]:
            _, t, k = resume
            if desc:
                hi = min(hi, bisect_right(ts, t) - k)
            else:
                lo = max(lo, bisect_left(ts, t) + k)
        resume = None
        if lo >= hi:
            continue
        first, stop = (max(lo, hi - left), hi) if desc else (lo, min(hi, lo + left))
        if first < stop:
            out[symbol] = view.rows(first, stop, desc)
            left -= stop - first
        if stop - first < hi - lo:  # the page is full: the token names the first item left out
            j = first - 1 if desc else stop
            k = bisect_right(ts, ts[j]) - 1 - j if desc else j - bisect_left(ts, ts[j])
            return out, encode_token(symbol, ts[j], k)
    return out, None


def series_view(history: Past, kind: str, symbol: str) -> View | None:
    """The quotes (``q``) or trades (``t``) held for a symbol, or None."""
    series = history.series(kind, symbol)
    if series is None or not len(series):
        return None
    return View(series.t, series.rows)


@dataclass(frozen=True)
class Timeframe:
    """``5Min``, ``1Hour``, ``1Day``, ``1Week``, ``3Month``...: Alpaca's bar lengths."""

    amount: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        match = _TIMEFRAME.fullmatch(text)
        if match is None:
            raise PageError(f"invalid timeframe: {text!r}")
        amount, unit = int(match[1]), _UNITS.get(match[2], match[2])
        ok = {"Min": amount <= 59, "Hour": amount <= 23, "Day": amount == 1, "Week": amount == 1}
        if not ok.get(unit, amount in _MONTHS):
            raise PageError(f"invalid timeframe: {text!r}")
        return cls(amount, unit)


def bar_view(history: Past, symbol: str, timeframe: Timeframe, zone: ZoneInfo = NEW_YORK) -> View | None:
    """A symbol's bars of this timeframe, from what the stream sent, or None; weeks and months
    are those of ``zone``'s calendar (New York for stocks, US Central for crypto)."""
    if timeframe.unit in ("Min", "Hour"):
        minutes = history.minute_bars(symbol)
        if timeframe.amount == 1 and timeframe.unit == "Min":
            bars = [minutes[t] for t in sorted(minutes)]
        else:
            span = timeframe.amount * MINUTE_NS * (60 if timeframe.unit == "Hour" else 1)
            bars = _aggregate(minutes, lambda t: t - t % span)
    else:
        days = history.daily_bars(symbol)
        if timeframe.unit == "Day":
            bars = [days[t] for t in sorted(days)]
        else:
            bars = _aggregate(days, _period(timeframe, zone))
    if not bars:
        return None

    def rows(lo: int, hi: int, desc: bool) -> list[dict[str, Any]]:
        part = [dict(b) for b in bars[lo:hi]]
        return part[::-1] if desc else part

    return View([b["t"] for b in bars], rows)


def _period(timeframe: Timeframe, zone: ZoneInfo) -> Callable[[int], Any]:
    """The week (from Monday) or run of months a day of ``zone`` falls in."""

    def period(t: int) -> Any:
        day = datetime.fromtimestamp(t // NS, UTC).astimezone(zone).date()
        if timeframe.unit == "Week":
            return day - timedelta(days=day.weekday())
        return (day.year, (day.month - 1) // timeframe.amount)

    return period


def _aggregate(bars: dict[int, dict[str, Any]], bucket: Callable[[int], Any]) -> list[dict[str, Any]]:
    """Bars merged per bucket; a bucket's ``t`` is its own start for minutes and hours,
    its first bar's for weeks and months (Alpaca stamps those with their first trading day)."""
    out: dict[Any, dict[str, Any]] = {}
    for t in sorted(bars):
        b = bars[t]
        key = bucket(t)
        agg = out.get(key)
        if agg is None:
            out[key] = {**b, "t": key if isinstance(key, int) else t, "_pv": b["vw"] * b["v"]}
            continue
        agg["h"], agg["l"], agg["c"] = max(agg["h"], b["h"]), min(agg["l"], b["l"]), b["c"]
        agg["v"] += b["v"]
        agg["n"] += b["n"]
        agg["_pv"] += b["vw"] * b["v"]
    result = []
    for agg in out.values():
        pv = agg.pop("_pv")
        agg["vw"] = round(pv / agg["v"], 6) if agg["v"] else agg["vw"]
        result.append(agg)
    return result
