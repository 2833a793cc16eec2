"""The REST history of a burst feed, rebuilt from its replayed window instead of kept.

A burst feed sends events ``0 .. position`` of an endless replay of one
window (:mod:`simulator.burst`), and event ``k`` is a pure function of ``k``:
the window's event ``k % size`` shifted by ``k // size`` windows. So nothing
is stored: each symbol's quotes and trades are the window's, sorted by time
once, repeated for every whole replay drawn, plus the part of the current
replay drawn so far. Memory is that one sorted index per symbol and type, at
any rate and for any length of run; history is never dropped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, overload

from simulator.burst import BurstFeed, Window, shifted
from simulator.history import QUOTE, TRADE, bar_row

Key = tuple[str, str]


class _Times(Sequence[int]):
    """The timestamps of one symbol's items over every replay drawn, in order, computed on demand."""

    def __init__(self, base: list[int], whole: int, partial: list[int], offset_ns: int, length_ns: int) -> None:
        self._base, self._whole, self._partial = base, whole, partial
        self._offset, self._length = offset_ns, length_ns

    def __len__(self) -> int:
        return self._whole * len(self._base) + len(self._partial)

    @overload
    def __getitem__(self, j: int) -> int: ...

    @overload
    def __getitem__(self, j: slice) -> list[int]: ...

    def __getitem__(self, j: int | slice) -> int | list[int]:
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        if j < 0:
            j += len(self)
        if not 0 <= j < len(self):
            raise IndexError(j)
        replay, r = divmod(j, len(self._base))  # the partial replay is no longer than a whole one
        return (self._base if replay < self._whole else self._partial)[r] + self._offset + replay * self._length


class BurstSeries:
    """One symbol's quotes or trades of a burst feed, read like a :class:`~simulator.history.Series`."""

    def __init__(self, history: BurstHistory, order: list[int], kind: str) -> None:
        window, cut = history.window, history.cut
        self._history = history
        self._order = order  # window indexes of this symbol and type, by (t, index)
        self._partial = [i for i in order if i < cut]
        self._fields = ("t", *(name for name, _ in (QUOTE if kind == "q" else TRADE).fields))
        base = [window.events[i]["t"] for i in order]
        partial = [window.events[i]["t"] for i in self._partial]
        self.t = _Times(base, history.whole, partial, history.offset_ns, window.length_ns)

    def __len__(self) -> int:
        return len(self.t)

    def rows(self, lo: int, hi: int, desc: bool = False) -> list[dict[str, Any]]:
        m, whole = len(self._order), self._history.whole
        out = []
        for j in range(lo, hi):
            replay, r = divmod(j, m)  # as in _Times
            e = self._history.event((self._order if replay < whole else self._partial)[r], replay)
            out.append({f: e[f] for f in self._fields})
        if desc:
            out.reverse()
        return out


class BurstHistory:
    """What a burst feed has sent so far, as the REST API reads a :class:`~simulator.history.History`."""

    def __init__(self, feed: BurstFeed) -> None:
        self.window: Window = feed.window
        self.offset_ns = feed.offset_ns
        self.whole, self.cut = divmod(feed.position, len(feed.window.events))
        last = feed.position - 1
        replay, index = divmod(max(last, 0), len(self.window.events))
        self.clock_ns = self.window.clocks[index] + self.offset_ns + replay * self.window.length_ns

    def event(self, index: int, replay: int) -> dict[str, Any]:
        """The window's event ``index`` as replay ``replay`` sent it."""
        w = self.window
        return shifted(w, w.events[index], w.clocks[index], replay, self.offset_ns)

    def series(self, kind: str, symbol: str) -> BurstSeries | None:
        order = _orders(self.window).get((kind, symbol))
        if order is None:
            return None
        series = BurstSeries(self, order, kind)
        return series if len(series) else None

    def minute_bars(self, symbol: str) -> dict[int, dict[str, Any]]:
        """The last version drawn of each minute bar (an updated bar follows its minute bar in the window)."""
        return self._last(symbol, ("b", "u"))

    def daily_bars(self, symbol: str) -> dict[int, dict[str, Any]]:
        return self._last(symbol, ("d",))

    def _last(self, symbol: str, kinds: tuple[str, ...]) -> dict[int, dict[str, Any]]:
        indexes = [i for kind in kinds for i in _orders(self.window).get((kind, symbol), [])]
        indexes.sort()
        out: dict[int, dict[str, Any]] = {}
        for replay in range(self.whole + 1):
            stop = len(indexes) if replay < self.whole else bisect_left(indexes, self.cut)
            for i in indexes[:stop]:
                e = self.event(i, replay)
                out[e["t"]] = bar_row(e)
        return dict(sorted(out.items()))


@lru_cache(maxsize=8)  # windows are hashed by identity, and few (market_window caches 8)
def _orders(window: Window) -> dict[Key, list[int]]:
    """Each (type, symbol)'s window indexes; quotes' and trades' sorted by (t, index)."""
    out: dict[Key, list[int]] = {}
    for i, e in enumerate(window.events):
        out.setdefault((e["T"], e["S"]), []).append(i)
    for key, order in out.items():
        if key[0] in ("q", "t"):
            order.sort(key=lambda i: window.events[i]["t"])
    return out
