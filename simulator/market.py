"""A believable, deterministic stock market that speaks in Alpaca's raw messages.

Each symbol's mid price walks randomly; quotes straddle it with a spread of
whole ticks; trades print at the bid, at the ask or between them; minute bars,
updated bars and daily bars are aggregated from those very trades; now and
then a symbol halts and resumes, and a trade is corrected or cancelled. The
same seed and start time always give the same messages.

Events are dicts with Alpaca's short field names, in Alpaca's order, except
that ``t`` is an int of nanoseconds: the wire module turns it into a msgpack
Timestamp or an RFC 3339 string for whichever encoding a client asked for.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections import deque
from collections.abc import Sequence
from itertools import accumulate
from typing import Any, Literal

from simulator.bars import MINUTE_NS, NS, Aggregate, aggregate, bar, day_start, minute_start
from simulator.book import Book
from simulator.symbols import DEFAULT_SYMBOLS, listings
from simulator.wire import to_wire

Event = dict[str, Any]

#: 2024-06-03T13:30:00Z, a Monday 09:30 in New York: the default opening bell.
DEFAULT_START_NS = 1_717_421_400 * NS


class Market:
    """The simulated market: call :meth:`ticks`, :meth:`advance` or :meth:`events`."""

    def __init__(
        self,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        seed: int = 0,
        *,
        feed: str = "sip",
        start_ns: int = DEFAULT_START_NS,
        mean_gap_ns: int = 1_000_000,
        trade_ratio: float = 0.2,
        halt_rate: float = 2e-5,
        late_rate: float = 0.005,
        correction_rate: float = 0.002,
        cancel_rate: float = 0.002,
    ) -> None:
        if not symbols:
            raise ValueError("expected at least one symbol, got none")
        self._rng = random.Random(seed)
        self._books = [Book(listing, self._rng) for listing in listings(tuple(symbols), seed)]
        self._cumulative = list(accumulate(b.listing.weight for b in self._books))
        self._iex = feed == "iex"
        self.clock_ns = start_ns
        self._opened_ns = start_ns  # no trade is stamped before the market (or a window) opened
        self._mean_gap = mean_gap_ns
        self._trade_ratio = trade_ratio
        self._halt_rate = halt_rate
        self._late_rate = late_rate
        self._correction_rate = correction_rate
        self._cancel_rate = cancel_rate
        self._minute_end = minute_start(start_ns) + MINUTE_NS
        self._update_at: int | None = None
        self._next_id = 1 + self._rng.randrange(10**6)
        self._backlog: deque[Event] = deque()

    @property
    def symbols(self) -> list[str]:
        """The tickers this market trades."""
        return [b.listing.symbol for b in self._books]

    def ticks(self, n: int) -> list[Event]:
        """The next ``n`` quotes and trades, spaced by random gaps, with every bar,
        status, correction and cancel that falls due among them (not counted in ``n``)."""
        out: list[Event] = []
        made = 0
        expo = self._rng.expovariate
        rate = 1.0 / self._mean_gap
        while made < n:
            t = self.clock_ns + 1 + int(expo(rate))
            made += self._tick(t, out)
        return out

    def advance(self, n: int, until_ns: int) -> list[Event]:
        """``n`` quotes and trades spread over (clock, until_ns], then the bars due by then.

        This is how a paced feed follows the wall clock.
        """
        out: list[Event] = []
        span = until_ns - self.clock_ns
        if span <= 0:
            return out
        stamps = sorted(self.clock_ns + 1 + int(self._rng.random() * span) for _ in range(n))
        for t in stamps:
            self._tick(t, out)
        self._roll(until_ns, out)
        self.clock_ns = max(self.clock_ns, until_ns)
        return out

    def window(self, minutes: int) -> list[Event]:
        """Every event of the next ``minutes`` whole minutes, closing bars included.

        The clock first moves to the next minute mark, so a window can be
        replayed minute-aligned: burst mode repeats one window with shifted times.
        """
        start = self._minute_end if self.clock_ns % MINUTE_NS else self.clock_ns
        out: list[Event] = []
        self._roll(start, out)
        out.clear()
        # An opening quote per symbol, so even a replay's first trades follow a quote of theirs.
        for i, book in enumerate(self._books):
            out.append(book.quote(start + 1 + i, self._rng, self._iex))
        self.clock_ns = self._opened_ns = start + len(self._books)
        end = start + minutes * MINUTE_NS
        expo = self._rng.expovariate
        rate = 1.0 / self._mean_gap
        while True:
            t = self.clock_ns + 1 + int(expo(rate))
            if t >= end:
                break
            self._tick(t, out)
        self._roll(end, out)
        self.clock_ns = end
        return out

    def events(self, n: int, encoding: Literal["msgpack", "json", "raw"] = "msgpack") -> list[Event]:
        """Exactly ``n`` messages, every kind counted, shaped as the wire carries them:
        ``t`` a msgpack Timestamp (``msgpack``), an RFC 3339 string (``json``) or
        int nanoseconds (``raw``)."""
        while len(self._backlog) < n:
            self._backlog.extend(self.ticks(max(64, n - len(self._backlog))))
        taken = [self._backlog.popleft() for _ in range(n)]
        return taken if encoding == "raw" else [to_wire(e, encoding) for e in taken]

    # -- one step --------------------------------------------------------------

    def _tick(self, t: int, out: list[Event]) -> int:
        """Emit what happens at ``t``; return 1 if that was a quote or trade."""
        rng = self._rng
        self._roll(t, out)
        self.clock_ns = t
        book = self._books[bisect(self._cumulative, rng.random() * self._cumulative[-1])]
        if book.halted_until is not None:
            if t < book.halted_until:
                return 0
            out.append(book.status(t, halted=False))
        elif rng.random() < self._halt_rate:
            book.halted_until = t + rng.randint(30, 300) * NS
            out.append(book.status(t, halted=True))
            return 0
        if rng.random() >= self._trade_ratio:
            out.append(book.quote(t, rng, self._iex))
            return 1
        self._trade(book, t, out)
        return 1

    def _trade(self, book: Book, t: int, out: list[Event]) -> None:
        rng = self._rng
        stamp = t
        if rng.random() < self._late_rate:  # reported late: stamped up to 2 s ago
            stamp = max(t - rng.randint(1_000_000, 2 * NS), self._minute_end - 2 * MINUTE_NS, self._opened_ns + 1)
        trade = book.trade(stamp, self._take_id(), rng, self._iex)
        out.append(trade)
        if stamp < self._minute_end - MINUTE_NS:  # its minute's bar has gone out already
            book.late.append((stamp, trade["p"], trade["s"]))
            self._update_at = self._minute_end - MINUTE_NS + 30 * NS
            return
        book.minute[trade["i"]] = (stamp, trade["p"], trade["s"], trade["x"], trade["c"])
        if len(book.minute) > 1:
            r = rng.random()
            if r < self._correction_rate:
                out.append(book.correct(t, self._take_id(), rng))
            elif r < self._correction_rate + self._cancel_rate:
                out.append(book.cancel(t, rng))

    def _take_id(self) -> int:
        self._next_id += rng_step(self._rng)
        return self._next_id

    def _roll(self, t: int, out: list[Event]) -> None:
        """Emit the updated bars and the minute and daily bars that fall due by ``t``."""
        while True:
            if self._update_at is not None and self._update_at <= t:
                self._emit_updates(out)
            if t < self._minute_end:
                return
            self._close_minute(out)

    def _close_minute(self, out: list[Event]) -> None:
        start = self._minute_end - MINUTE_NS
        dailies = []
        for book in self._books:
            book.late.clear()
            agg = aggregate((s[0], s[1], s[2]) for s in book.minute.values())
            book.minute.clear()
            book.last_minute = agg
            if agg is not None:
                out.append(bar("b", book.listing.symbol, agg, start))
                _merge_day(book, agg)
            if book.day is not None:
                dailies.append(bar("d", book.listing.symbol, book.day, day_start(start)))
        out.extend(dailies)
        self._minute_end += MINUTE_NS

    def _emit_updates(self, out: list[Event]) -> None:
        start = self._minute_end - 2 * MINUTE_NS
        for book in self._books:
            if not book.late:
                continue
            late = aggregate(book.late)
            assert late is not None
            if book.last_minute is None:
                book.last_minute = late
            else:
                book.last_minute.merge(late)
            _merge_day(book, late)
            out.append(bar("u", book.listing.symbol, book.last_minute, start))
            book.late.clear()
        self._update_at = None


def _merge_day(book: Book, agg: Aggregate) -> None:
    if book.day is None:
        book.day = agg.copy()
    else:
        book.day.merge(agg)


def rng_step(rng: random.Random) -> int:
    """Trade ids grow by small random steps, as ids from a busy venue do."""
    return 1 + int(rng.random() * 7)
