"""A believable, deterministic crypto market that speaks Alpaca's crypto stream (``/v1beta3/crypto/us``).

Each pair has a level 2 book (bids and asks by price, fractional sizes) that
changes a level at a time: a size changes, a level is added or cancelled, now
and then a new best price improves the spread. Every change goes out as an
``o`` update naming the changed levels (size 0: the price is gone); a change
of the top of the book also goes out as a quote. A trade takes the best ask
(taker side ``B``) or the best bid (``S``) and shrinks that level, so trades,
quotes and books agree. The market runs around the clock (no sessions, no
halts). Minute bars aggregate each minute's trades, or carry the quote
midpoint with volume 0 when none printed (as Alpaca's crypto bars do);
a trade reported late re-sends its minute as an updated bar half a minute
on; a daily bar per pair follows every minute mark.

Events are dicts with Alpaca's short names in Alpaca's order, ``t`` an int of
nanoseconds (as :mod:`simulator.market`'s). :meth:`CryptoMarket.snapshot`
gives a pair's whole book as the ``r``: true message a new orderbook
subscriber gets first.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import accumulate
from math import floor, log10
from typing import Any, Final
from zoneinfo import ZoneInfo

from simulator.bars import MINUTE_NS, NS, Aggregate, minute_start
from tickpipe.feeds import CRYPTO

Event = dict[str, Any]

#: Default pairs with a mid-2024 price and a relative activity weight.
_PAIRS: Final[tuple[tuple[str, float, float], ...]] = (
    ("BTC/USD", 65_000.0, 10),
    ("ETH/USD", 3_500.0, 8),
    ("SOL/USD", 150.0, 5),
    ("DOGE/USD", 0.15, 4),
    ("AVAX/USD", 35.0, 2),
    ("LTC/USD", 80.0, 2),
    ("LINK/USD", 15.0, 2),
    ("BCH/USD", 450.0, 1),
    ("UNI/USD", 10.0, 1),
    ("BTC/USDT", 65_010.0, 3),
    ("ETH/USDT", 3_501.0, 2),
    ("ETH/BTC", 0.054, 1),
)
DEFAULT_PAIRS: Final[tuple[str, ...]] = tuple(p for p, _, _ in _PAIRS)
_KNOWN: Final = {p: (price, weight) for p, price, weight in _PAIRS}
#: Crypto days are stamped at midnight US Central.
DAY_ZONE = ZoneInfo(CRYPTO.day_zone)
_MIN_DEPTH, _MAX_DEPTH = 10, 30


#: A crypto period's open, high, low, close, fractional volume, count and price*volume.
Candle = Aggregate[float]


def _bar(candle: Candle, kind: str, symbol: str, t: int) -> Event:
    vwap = round(candle.pv / candle.v, 9) if candle.v else 0.0
    return {
        "T": kind,
        "S": symbol,
        "o": candle.o,
        "h": candle.h,
        "l": candle.low,
        "c": candle.c,
        "v": round(candle.v, 9),
        "t": t,
        "n": candle.n,
        "vw": vwap,
    }


class PairBook:
    """One pair's book: price -> size on each side, and its bars in the making."""

    def __init__(self, symbol: str, price: float, weight: float, rng: random.Random) -> None:
        self.symbol = symbol
        self.weight = weight
        self.decimals = 5 - floor(log10(price))  # five significant digits of price steps
        self.tick = 10.0**-self.decimals
        self.lot = max(1e-8, round(100.0 / price, 8))  # about $100 a typical order
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        half = max(1, round(price * 0.0001 / self.tick))  # a spread of some 2 bp
        for i in range(20):
            self.bids[self._price(price - (half + 2 * i) * self.tick)] = self._size(rng)
            self.asks[self._price(price + (half + 2 * i) * self.tick)] = self._size(rng)
        self.top = self.top_of_book()
        self.minute: Candle | None = None
        self.last_minute: Candle | None = None
        self.late: Candle | None = None
        self.day: Candle | None = None

    def _price(self, p: float) -> float:
        return round(p, self.decimals)

    def _size(self, rng: random.Random) -> float:
        return round(self.lot * rng.lognormvariate(0, 1.2), 8) or self.lot

    def top_of_book(self) -> tuple[float, float, float, float]:
        bid, ask = max(self.bids), min(self.asks)
        return bid, self.bids[bid], ask, self.asks[ask]

    @property
    def mid(self) -> float:
        return self._price((max(self.bids) + min(self.asks)) / 2)

    def change(self, rng: random.Random) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Change the book a little: the (price, size) levels changed on each side, size 0 for gone."""
        bid_side = rng.random() < 0.5
        side = self.bids if bid_side else self.asks
        other = self.asks if bid_side else self.bids
        ordered = sorted(side, reverse=bid_side)  # best first
        direction = -1 if bid_side else 1  # away from the spread
        changed: list[tuple[float, float]] = []
        r = rng.random()
        k = min(int(rng.expovariate(0.4)), len(ordered) - 1)  # mostly near the top
        if r < 0.45:
            side[ordered[k]] = self._size(rng)
            changed.append((ordered[k], side[ordered[k]]))
        elif r < 0.7 and len(side) > _MIN_DEPTH:
            del side[ordered[k]]
            changed.append((ordered[k], 0.0))
        else:
            best, facing = ordered[0], (max(other) if not bid_side else min(other))
            inside = self._price(best - direction * self.tick)
            if rng.random() < 0.3 and (inside < facing if bid_side else inside > facing):
                price = inside  # a better price: the spread narrows
            else:
                price = self._price(ordered[k] + direction * self.tick * (1 + int(rng.random() * 3)))
            side[price] = side.get(price, 0.0) + self._size(rng)
            changed.append((price, side[price]))
        while len(side) > _MAX_DEPTH:  # the far end is cancelled
            worst = min(side) if bid_side else max(side)
            del side[worst]
            changed.append((worst, 0.0))
        return (changed, []) if bid_side else ([], changed)

    def take(
        self, rng: random.Random
    ) -> tuple[str, float, float, list[tuple[float, float]], list[tuple[float, float]]]:
        """A taker's trade against the best level: (taker side, price, size, bid changes, ask changes)."""
        buyer = rng.random() < 0.5
        side = self.asks if buyer else self.bids
        price = min(side) if buyer else max(side)
        available = side[price]
        size = round(min(available, self.lot * rng.lognormvariate(-0.5, 1.0)), 8) or available
        left = round(available - size, 8)
        changed = [(price, left)]
        if left <= 0:
            del side[price]
            changed = [(price, 0.0)]
            if len(side) < _MIN_DEPTH:  # a new order behind the last level
                far = max(side) if buyer else min(side)
                new = self._price(far + (1 if buyer else -1) * self.tick)
                side[new] = self._size(rng)
                changed.append((new, side[new]))
        else:
            side[price] = left
        return ("B" if buyer else "S"), price, size, ([] if buyer else changed), (changed if buyer else [])


def _levels(changes: list[tuple[float, float]]) -> list[dict[str, float]]:
    return [{"p": p, "s": s} for p, s in changes]


def day_start(t: int) -> int:
    """Midnight US Central of the day containing ``t``: where a crypto daily bar starts."""
    local = datetime.fromtimestamp(t // NS, UTC).astimezone(DAY_ZONE)
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()) * NS


class CryptoMarket:
    """The simulated crypto market: call :meth:`advance` (paced) or :meth:`ticks`."""

    def __init__(
        self,
        symbols: Sequence[str] = DEFAULT_PAIRS,
        seed: int = 0,
        *,
        start_ns: int,
        mean_gap_ns: int = 1_000_000,
        trade_ratio: float = 0.25,
        late_rate: float = 0.005,
    ) -> None:
        if not symbols:
            raise ValueError("expected at least one pair, got none")
        self._rng = random.Random(f"crypto:{seed}")
        self._books: list[PairBook] = []
        for symbol in symbols:
            known = _KNOWN.get(symbol)
            if known is None:  # a made-up pair depends only on the seed and its name
                made = random.Random(f"{seed}:{symbol}")
                known = (round(10 ** (made.random() * 5 - 1), 4), made.choice((1.0, 2.0)))
            self._books.append(PairBook(symbol, known[0], known[1], self._rng))
        self._by_symbol = {b.symbol: b for b in self._books}
        self._cumulative = list(accumulate(b.weight for b in self._books))
        self.clock_ns = start_ns
        self._opened_ns = start_ns
        self._mean_gap = mean_gap_ns
        self._trade_ratio = trade_ratio
        self._late_rate = late_rate
        self._minute_end = minute_start(start_ns) + MINUTE_NS
        self._update_at: int | None = None
        self._next_id = 10**12 + self._rng.randrange(10**9)

    @property
    def symbols(self) -> list[str]:
        return [b.symbol for b in self._books]

    def snapshot(self, symbol: str, t: int | None = None) -> Event:
        """The pair's whole book now, as the first orderbook message after a subscription (``r``: true)."""
        book = self._by_symbol[symbol]
        return {
            "T": "o",
            "S": symbol,
            "t": self.clock_ns if t is None else t,
            "b": _levels(sorted(book.bids.items(), reverse=True)),
            "a": _levels(sorted(book.asks.items())),
            "r": True,
        }

    def book(self, symbol: str) -> tuple[dict[float, float], dict[float, float]]:
        """Copies of the pair's bids and asks (price -> size), for tests to compare with."""
        book = self._by_symbol[symbol]
        return dict(book.bids), dict(book.asks)

    def ticks(self, n: int) -> list[Event]:
        """The next ``n`` book changes and trades, spaced by random gaps, with their quotes and the bars due."""
        out: list[Event] = []
        for _ in range(n):
            self._tick(self.clock_ns + 1 + int(self._rng.expovariate(1.0 / self._mean_gap)), out)
        return out

    def advance(self, n: int, until_ns: int) -> list[Event]:
        """``n`` book changes and trades spread over (clock, until_ns], then the bars due by then."""
        out: list[Event] = []
        span = until_ns - self.clock_ns
        if span <= 0:
            return out
        for t in sorted(self.clock_ns + 1 + int(self._rng.random() * span) for _ in range(n)):
            self._tick(t, out)
        self._roll(until_ns, out)
        self.clock_ns = max(self.clock_ns, until_ns)
        return out

    # -- one step --------------------------------------------------------------

    def _tick(self, t: int, out: list[Event]) -> None:
        rng = self._rng
        self._roll(t, out)
        self.clock_ns = t
        book = self._books[bisect(self._cumulative, rng.random() * self._cumulative[-1])]
        if rng.random() < self._trade_ratio:
            side, price, size, bids, asks = book.take(rng)
            stamp = t
            if rng.random() < self._late_rate:  # reported late: stamped up to 2 s ago
                stamp = max(t - rng.randint(1_000_000, 2 * NS), self._minute_end - 2 * MINUTE_NS, self._opened_ns + 1)
            self._next_id += 1 + int(rng.random() * 5)
            out.append({"T": "t", "S": book.symbol, "p": price, "s": size, "t": stamp, "i": self._next_id, "tks": side})
            self._record(book, stamp, price, size)
        else:
            bids, asks = book.change(rng)
        out.append({"T": "o", "S": book.symbol, "t": t, "b": _levels(bids), "a": _levels(asks)})
        top = book.top_of_book()
        if top != book.top:
            book.top = top
            out.append({"T": "q", "S": book.symbol, "bp": top[0], "bs": top[1], "ap": top[2], "as": top[3], "t": t})

    def _record(self, book: PairBook, stamp: int, price: float, size: float) -> None:
        if stamp < self._minute_end - MINUTE_NS:  # its minute's bar has gone out already
            if book.late is None:
                book.late = Candle.of_trade(stamp, price, size)
            else:
                book.late.add(stamp, price, size)
            self._update_at = self._minute_end - MINUTE_NS + 30 * NS
        elif book.minute is None:
            book.minute = Candle.of_trade(stamp, price, size)
        else:
            book.minute.add(stamp, price, size)

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
        day = day_start(start)
        dailies = []
        for book in self._books:
            book.late = None
            candle = book.minute
            if candle is None:  # no trade: the quote midpoint, volume 0
                mid = book.mid
                candle = Candle(start, mid, mid, mid, start, mid, 0.0, 0, 0.0)
            book.minute = None
            book.last_minute = candle
            out.append(_bar(candle, "b", book.symbol, start))
            if book.day is None or day_start(book.day.first_t) != day:
                book.day = candle.copy()
            else:
                book.day.merge(candle)
            dailies.append(_bar(book.day, "d", book.symbol, day))
        out.extend(dailies)
        self._minute_end += MINUTE_NS

    def _emit_updates(self, out: list[Event]) -> None:
        start = self._minute_end - 2 * MINUTE_NS
        for book in self._books:
            if book.late is None:
                continue
            if book.last_minute is None or book.last_minute.n == 0:
                book.last_minute = book.late.copy()
            else:
                book.last_minute.merge(book.late)
            if book.day is not None:
                book.day.merge(book.late)
            out.append(_bar(book.last_minute, "u", book.symbol, start))
            book.late = None
        self._update_at = None
