"""A feed's recent past, kept so the REST API serves exactly what the stream sent.

The REST API must answer a window with the very events the stream sent (or
would have sent) in it: same ids, same prices, same nanoseconds. Regenerating
them is not possible once a paced market has moved on (its events depend on
when the ticker woke), so the ticker records every event it makes here.

Memory is bounded by design. Quotes and trades sit in typed arrays
(``array``), one set of columns per symbol and type, sorted by timestamp: a
quote costs 37 bytes, a trade 32 (single-character venues and tapes as one
byte, condition lists interned as two); a crypto quote 40, a crypto trade 33, an option trade 22
(option quotes are not kept: Alpaca has no history of them). Bars are dicts, one per symbol and
minute and one per symbol and day. What is older than ``retention_ns`` of
market time, or beyond ``max_events`` quotes and trades, is dropped; the drop
runs once an eighth more has piled up (a memmove of every column), so the
store holds at most 9/8 of either bound. Measured with bars and array
slack, about 38 bytes an event: the default hour at 1,000 events/s is some
4 million events, 150 MB; the default event bound (8 million) caps any
rate at about 340 MB per feed.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_CHAR, _FLOAT, _INT, _SIZE, _CONDITIONS = "B", "d", "q", "I", "H"
_DAY_NS = 86_400 * 1_000_000_000
_MINUTE_NS = 60 * 1_000_000_000
_CHARS = tuple(chr(i) for i in range(256))


@dataclass(frozen=True)
class Layout:
    """How one event type is kept: its REST fields in Alpaca's order and their column types."""

    fields: tuple[tuple[str, str], ...]


#: Alpaca's historical trade: ``{"t","x","p","s","c","i","z"}``.
TRADE = Layout((("x", _CHAR), ("p", _FLOAT), ("s", _SIZE), ("c", _CONDITIONS), ("i", _INT), ("z", _CHAR)))
#: Alpaca's historical quote: ``{"t","ax","ap","as","bx","bp","bs","c","z"}``.
QUOTE = Layout(
    (
        ("ax", _CHAR),
        ("ap", _FLOAT),
        ("as", _SIZE),
        ("bx", _CHAR),
        ("bp", _FLOAT),
        ("bs", _SIZE),
        ("c", _CONDITIONS),
        ("z", _CHAR),
    )
)
#: Alpaca's historical crypto trade: ``{"t","p","s","i","tks"}`` (fractional size, the taker's side).
CRYPTO_TRADE = Layout((("p", _FLOAT), ("s", _FLOAT), ("i", _INT), ("tks", _CHAR)))
#: Alpaca's historical crypto quote: ``{"t","bp","bs","ap","as"}`` (fractional sizes).
CRYPTO_QUOTE = Layout((("bp", _FLOAT), ("bs", _FLOAT), ("ap", _FLOAT), ("as", _FLOAT)))
#: Alpaca's historical option trade: ``{"t","x","p","s","c"}`` (whole contracts, one condition code).
OPTION_TRADE = Layout((("x", _CHAR), ("p", _FLOAT), ("s", _SIZE), ("c", _CHAR)))
#: The layouts of a feed's quotes (``q``) and trades (``t``): the stock feed's, the crypto feed's, the
#: option feed's (trades only: Alpaca has no history of option quotes, so none are kept).
STOCK_LAYOUTS: Mapping[str, Layout] = {"q": QUOTE, "t": TRADE}
CRYPTO_LAYOUTS: Mapping[str, Layout] = {"q": CRYPTO_QUOTE, "t": CRYPTO_TRADE}
OPTION_LAYOUTS: Mapping[str, Layout] = {"t": OPTION_TRADE}
#: Alpaca's bar, a stock's or a pair's: ``{"t","o","h","l","c","v","n","vw"}``.
BAR_FIELDS = ("t", "o", "h", "l", "c", "v", "n", "vw")


def bar_row(event: dict[str, Any]) -> dict[str, Any]:
    """A bar message as the REST API shows it (no ``T``, no ``S``)."""
    return {f: event[f] for f in BAR_FIELDS}


class Conditions:
    """Condition lists interned to small numbers: a market uses a handful of them."""

    def __init__(self) -> None:
        self._codes: dict[tuple[str, ...], int] = {}
        self._lists: list[list[str]] = []

    def code(self, conditions: Sequence[str]) -> int:
        key = tuple(conditions)
        code = self._codes.get(key)
        if code is None:
            code = self._codes[key] = len(self._lists)
            self._lists.append(list(key))
        return code

    def decode(self, code: int) -> list[str]:
        return [*self._lists[code]]


class Series:
    """One symbol's events of one type, sorted by timestamp, in parallel typed arrays.

    Events almost always arrive in time order; a late-reported trade is
    inserted before the newer ones (stable: equal timestamps keep arrival order).
    """

    def __init__(self, layout: Layout, conditions: Conditions) -> None:
        self.layout = layout
        self.t = array("q")
        self._columns = [array(code) for _, code in layout.fields]
        self._conditions = conditions
        #: (field, encoder, column) per field; None: the value is stored as it is
        self._slots = [
            (name, self._encoder(code), column)
            for (name, code), column in zip(layout.fields, self._columns, strict=True)
        ]

    def _encoder(self, code: str) -> Callable[[Any], int] | None:
        if code == _CHAR:
            return ord
        if code == _CONDITIONS:
            return self._conditions.code
        return None

    def __len__(self) -> int:
        return len(self.t)

    def add(self, event: dict[str, Any]) -> None:
        ts, t = self.t, event["t"]
        i = len(ts) if not ts or t >= ts[-1] else bisect_right(ts, t)  # at the end but for a late trade
        ts.insert(i, t)
        for name, encode, column in self._slots:
            value = event[name]
            column.insert(i, value if encode is None else encode(value))

    def drop_before(self, cutoff_ns: int) -> None:
        k = bisect_left(self.t, cutoff_ns)
        if k:
            del self.t[:k]
            for column in self._columns:
                del column[:k]

    def row(self, i: int) -> dict[str, Any]:
        """Event ``i`` with ``t`` as int nanoseconds, fields in Alpaca's REST order."""
        return self.rows(i, i + 1)[0]

    def rows(self, lo: int, hi: int, desc: bool = False) -> list[dict[str, Any]]:
        """Events ``lo:hi`` (reversed if ``desc``), built column by column: a 10,000-item
        page is built while the stream waits, so it goes at C speed where it can."""
        names = ("t", *(name for name, _ in self.layout.fields))
        columns: list[Sequence[Any]] = [self.t[lo:hi]]
        for (_, code), column in zip(self.layout.fields, self._columns, strict=True):
            part: Sequence[Any] = column[lo:hi]
            if code == _CHAR:
                part = [_CHARS[v] for v in part]
            elif code == _CONDITIONS:
                part = [self._conditions.decode(v) for v in part]
            columns.append(part)
        out = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        if desc:
            out.reverse()
        return out


class History:
    """Everything one feed's market made lately: quotes, trades, minute and daily bars.

    ``layouts`` says how quotes and trades are kept: the stock feed's (:data:`STOCK_LAYOUTS`,
    the default), the crypto feed's (:data:`CRYPTO_LAYOUTS`) or the option feed's (:data:`OPTION_LAYOUTS`,
    trades only); a type without a layout is not kept. Bars are the same for every feed.

    Minute bars keep the last version sent (an updated bar replaces its
    minute bar, as Alpaca's history holds the corrected minute); daily bars
    keep the last daily bar sent for each day.
    """

    def __init__(
        self, retention_ns: int, max_events: int, clock_ns: int = 0, *, layouts: Mapping[str, Layout] = STOCK_LAYOUTS
    ) -> None:
        if retention_ns <= 0 or max_events <= 0:
            raise ValueError(f"expected a positive retention and event bound, got {retention_ns}, {max_events}")
        self.retention_ns = retention_ns
        self.max_events = max_events
        self.newest_ns = 0
        self.clock_ns = clock_ns
        """The market clock the history is complete up to: any event made later is stamped after it,
        except a trade reported late (up to 2 s before it), as on a real tape."""
        self.recorded = 0
        self._layouts = layouts
        self._conditions = Conditions()
        self._series: dict[tuple[str, str], Series] = {}
        self._bars: dict[str, dict[int, dict[str, Any]]] = {}
        self._dailies: dict[str, dict[int, dict[str, Any]]] = {}
        self._batches: deque[tuple[int, int]] = deque()  # (newest t, count) per record call
        self._held = 0

    def record(self, events: Iterable[dict[str, Any]], clock_ns: int) -> None:
        """Keep what the stream sends, made up to market time ``clock_ns``; statuses,
        corrections and cancels have no REST history, nor has a type without a layout (option quotes)."""
        count = 0
        newest = self.newest_ns
        for e in events:
            kind = e["T"]
            if kind == "q" or kind == "t":
                key = (kind, e["S"])
                series = self._series.get(key)
                if series is None:
                    layout = self._layouts.get(kind)
                    if layout is None:
                        continue
                    series = self._series[key] = Series(layout, self._conditions)
                series.add(e)
                count += 1
                newest = max(newest, e["t"])
            elif kind == "b" or kind == "u" or kind == "d":
                bars = self._dailies if kind == "d" else self._bars
                bars.setdefault(e["S"], {})[e["t"]] = bar_row(e)
        self.newest_ns = newest
        self.clock_ns = max(self.clock_ns, clock_ns)
        self.recorded += count
        self._held += count
        if count:
            self._batches.append((newest, count))
        self._trim()

    def _trim(self) -> None:
        """Drop what is past either bound, once an eighth more than the bound has piled up."""
        cutoff = self.newest_ns - self.retention_ns
        oldest = min((s.t[0] for s in self._series.values() if len(s)), default=cutoff)
        over_time = oldest < cutoff - self.retention_ns // 8
        over_count = self._held > self.max_events + self.max_events // 8
        if not over_time and not over_count:
            return
        held = self._held
        while self._batches and (self._batches[0][0] < cutoff or held > self.max_events):
            newest, count = self._batches.popleft()
            held -= count
            cutoff = max(cutoff, newest + 1)
        for series in self._series.values():
            series.drop_before(cutoff)
        for tables, span in ((self._bars, _MINUTE_NS), (self._dailies, _DAY_NS)):
            for table in tables.values():
                for t in [t for t in table if t + span <= cutoff]:  # a bar goes once its whole span has
                    del table[t]
        self._held = sum(len(s) for s in self._series.values())

    @property
    def held(self) -> int:
        """Quotes and trades held now."""
        return self._held

    def series(self, kind: str, symbol: str) -> Series | None:
        """The quotes (``q``) or trades (``t``) of one symbol, or None if it has none."""
        return self._series.get((kind, symbol))

    def minute_bars(self, symbol: str) -> dict[int, dict[str, Any]]:
        """The final minute bar of each minute held, by start (ns)."""
        return self._bars.get(symbol, {})

    def daily_bars(self, symbol: str) -> dict[int, dict[str, Any]]:
        """The last daily bar sent for each day held, by New York midnight (ns)."""
        return self._dailies.get(symbol, {})
