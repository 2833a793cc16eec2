"""A believable, deterministic option market that speaks Alpaca's option stream (``/v1beta1/opra``).

A chain of contracts per underlying: the next weekly expiries (Fridays, from the
market's start date) times strikes around the underlying's price, calls and puts;
the defaults make 8 underlyings x 4 expiries x 40 strikes x 2 = 2,560 contracts.
Each underlying walks at random; a contract's value is its Black-Scholes price
(intrinsic value plus time value, a volatility per underlying with a smile), its
quote that value widened to a spread and rounded to the tick (0.01 below $3.00,
0.05 above, as the penny program's classes), sizes in whole contracts, venues
among OPRA's exchange codes. Activity leans to contracts near the money and near
expiry; quotes are far more frequent than trades (``trade_ratio``), and a trade
prints at the bid, the ask or between.

Events are dicts with Alpaca's short names in Alpaca's order, ``t`` an int of
nanoseconds (as :mod:`simulator.market`'s); the same seed, contracts and start
give the same events.
"""

from __future__ import annotations

import random
import re
from bisect import bisect
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from math import ceil, erf, exp, floor, log, sqrt
from typing import Any, Final

from simulator.bars import NS
from tickpipe.feeds.options import OCC_PATTERN

Event = dict[str, Any]

#: Default underlyings with a mid-2024 price, an implied volatility and a relative activity weight.
_UNDERLYINGS: Final[tuple[tuple[str, float, float, float], ...]] = (
    ("SPY", 530.0, 0.13, 10),
    ("QQQ", 460.0, 0.17, 6),
    ("AAPL", 190.0, 0.24, 6),
    ("TSLA", 180.0, 0.55, 6),
    ("NVDA", 120.0, 0.50, 6),
    ("MSFT", 420.0, 0.22, 3),
    ("AMZN", 185.0, 0.30, 3),
    ("META", 500.0, 0.35, 2),
)
DEFAULT_UNDERLYINGS: Final[tuple[str, ...]] = tuple(u for u, _, _, _ in _UNDERLYINGS)
_KNOWN: Final = {u: (price, vol, weight) for u, price, vol, weight in _UNDERLYINGS}
#: OPRA's exchange codes as Alpaca names them (``/v1beta1/options/meta/exchanges``), with a weight each.
VENUES: Final[tuple[tuple[str, float], ...]] = (
    ("C", 10), ("X", 6), ("I", 6), ("Q", 6), ("B", 3), ("Z", 6), ("N", 6), ("A", 4),
    ("M", 5), ("P", 4), ("E", 4), ("H", 2), ("J", 2), ("T", 2), ("W", 2), ("D", 3), ("U", 2),
)  # fmt: skip
#: OPRA trade conditions: I auto-executed, S intermarket sweep, a/b single-leg auction, f multi-leg, e floor.
TRADE_CONDITIONS: Final[tuple[tuple[str, float], ...]] = (("I", 70), ("S", 8), ("a", 6), ("b", 3), ("f", 8), ("e", 5))
_QUOTE_CONDITION: Final = "A"  # a regular quote
_YEAR_NS: Final = 365 * 24 * 3600 * NS
_RATE: Final = 0.05  # the risk-free rate
_CLOSE_UTC: Final = timedelta(hours=20)  # expiries settle at 16:00 New York, 20:00 UTC in summer


def occ_symbol(root: str, expiry: date, right: str, strike: float) -> str:
    """``AAPL240621C00190000``: root, YYMMDD, C or P, the strike in thousandths in 8 digits."""
    return f"{root}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"


def parse_occ(symbol: str) -> tuple[str, date, str, float]:
    """An OCC contract symbol's root, expiry, right (``C``/``P``) and strike; ValueError for another."""
    if not re.fullmatch(OCC_PATTERN, symbol):
        raise ValueError(f"expected an OCC contract symbol like AAPL240621C00190000, got {symbol!r}")
    root, tail = symbol[:-15], symbol[-15:]
    expiry = datetime.strptime(tail[:6], "%y%m%d").date()
    return root, expiry, tail[6], int(tail[7:]) / 1000


def strike_step(price: float) -> float:
    """Listed strike spacing near the money for an underlying at ``price``."""
    if price < 25:
        return 0.5
    if price < 100:
        return 1.0
    if price < 250:
        return 2.5
    return 5.0


def chain(
    underlyings: Sequence[str] = DEFAULT_UNDERLYINGS,
    start_ns: int = 0,
    *,
    expiries: int = 4,
    strikes: int = 40,
    seed: int = 0,
) -> list[str]:
    """The contracts of each underlying: the next ``expiries`` Fridays after the start date, ``strikes``
    strikes around its price (half below, half above), a call and a put of each."""
    first = datetime.fromtimestamp(start_ns // NS, UTC).date() + timedelta(days=1)
    fridays = [first + timedelta(days=(4 - first.weekday()) % 7 + 7 * i) for i in range(expiries)]
    out: list[str] = []
    for root in underlyings:
        price = _price_of(root, seed)
        step = strike_step(price)
        atm = round(price / step) * step
        for expiry in fridays:
            for i in range(-(strikes // 2), strikes - strikes // 2):
                strike = atm + i * step
                if strike <= 0:
                    continue
                out += [occ_symbol(root, expiry, "C", strike), occ_symbol(root, expiry, "P", strike)]
    return out


def _price_of(root: str, seed: int) -> float:
    known = _KNOWN.get(root)
    if known is not None:
        return known[0]
    made = random.Random(f"{seed}:{root}")  # a made-up underlying depends only on the seed and its name
    return round(10 ** (made.random() * 2.5 + 0.5), 2)


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + erf(x / sqrt(2.0)))


def black_scholes(spot: float, strike: float, years: float, vol: float, call: bool) -> float:
    """A call's or put's Black-Scholes value, never below its intrinsic value (listed equity options
    are American: a deep put in the money is worth at least its exercise)."""
    intrinsic = max(0.0, spot - strike) if call else max(0.0, strike - spot)
    if years <= 0 or vol <= 0:
        return intrinsic
    root = vol * sqrt(years)
    d1 = (log(spot / strike) + (_RATE + vol * vol / 2) * years) / root
    d2 = d1 - root
    discount = strike * exp(-_RATE * years)
    if call:
        return max(intrinsic, spot * _cdf(d1) - discount * _cdf(d2))
    return max(intrinsic, discount * _cdf(-d2) - spot * _cdf(-d1))


def tick_size(price: float) -> float:
    """0.01 below $3.00, 0.05 from it (the penny program's quoting increments)."""
    return 0.01 if price < 3.0 else 0.05


class Underlying:
    """One underlying's price walk and volatility."""

    def __init__(self, root: str, seed: int) -> None:
        known = _KNOWN.get(root)
        self.root = root
        self.spot = _price_of(root, seed)
        self.vol = known[1] if known else 0.35
        self.weight = known[2] if known else 1.0

    def move(self, rng: random.Random) -> None:
        self.spot = max(0.5, self.spot * (1.0 + rng.gauss(0.0, 0.0002)))


class Contract:
    """One listed contract of a chain."""

    __slots__ = ("call", "expiry_ns", "strike", "symbol", "underlying", "weight")

    def __init__(self, symbol: str, underlying: Underlying, start_ns: int) -> None:
        _, expiry, right, strike = parse_occ(symbol)
        self.symbol = symbol
        self.underlying = underlying
        self.call = right == "C"
        self.strike = strike
        self.expiry_ns = int(datetime(expiry.year, expiry.month, expiry.day, tzinfo=UTC).timestamp()) * NS
        self.expiry_ns += int(_CLOSE_UTC.total_seconds()) * NS
        moneyness = abs(log(strike / underlying.spot))
        days = max(0.5, (self.expiry_ns - start_ns) / (24 * 3600 * NS))
        # Near the money and near expiry trade most.
        self.weight = underlying.weight * exp(-moneyness / (underlying.vol * 0.15)) / sqrt(days) + 1e-3

    def value(self, t: int) -> float:
        spot = self.underlying.spot
        years = max(0.0, (self.expiry_ns - t) / _YEAR_NS)
        vol = self.underlying.vol * (1.0 + 2.0 * log(self.strike / spot) ** 2)  # a smile
        return black_scholes(spot, self.strike, years, vol, self.call)

    def quote(self, t: int) -> tuple[float, float]:
        """The bid and ask now: the value widened to a spread, each on its tick (the bid 0 at worst)."""
        theo = self.value(t)
        half = max(tick_size(theo), theo * 0.03, 0.02) / 2
        low, high = max(0.0, theo - half), theo + half
        bid = round(floor(low / tick_size(low) + 1e-9) * tick_size(low), 2)
        ask = round(ceil(high / tick_size(high) - 1e-9) * tick_size(high), 2)
        if ask <= bid:
            ask = round(bid + tick_size(bid), 2)
        return bid, max(ask, 0.01)


def _choose(rng: random.Random, table: tuple[tuple[str, float], ...], cumulative: list[float]) -> str:
    return table[bisect(cumulative, rng.random() * cumulative[-1])][0]


class OptionMarket:
    """The simulated option market: call :meth:`advance` (paced) or :meth:`ticks`."""

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        seed: int = 0,
        *,
        start_ns: int,
        mean_gap_ns: int = 1_000_000,
        trade_ratio: float = 0.08,
    ) -> None:
        contracts = list(symbols) if symbols is not None else chain(start_ns=start_ns, seed=seed)
        if not contracts:
            raise ValueError("expected at least one contract, got none")
        self._rng = random.Random(f"options:{seed}")
        self._seed = seed
        self._underlyings: dict[str, Underlying] = {}
        self._contracts: list[Contract] = []
        self._cumulative: list[float] = []
        self.clock_ns = start_ns
        self.add(contracts)
        self._venues = list(accumulate(w for _, w in VENUES))
        self._conditions = list(accumulate(w for _, w in TRADE_CONDITIONS))
        self._mean_gap = mean_gap_ns
        self._trade_ratio = trade_ratio

    @property
    def symbols(self) -> list[str]:
        """The contracts of this market, chain by chain."""
        return [c.symbol for c in self._contracts]

    def add(self, symbols: Sequence[str]) -> list[str]:
        """List more contracts (any OCC symbol, as a client may subscribe to any listed contract; an
        unknown root gets a made-up price from the seed); the ones new to the market."""
        known = {c.symbol for c in self._contracts}
        new = [s for s in dict.fromkeys(symbols) if s not in known]
        for symbol in new:
            root = parse_occ(symbol)[0]
            underlying = self._underlyings.get(root)
            if underlying is None:
                underlying = self._underlyings[root] = Underlying(root, self._seed)
            self._contracts.append(Contract(symbol, underlying, self.clock_ns))
        if new:
            self._cumulative = list(accumulate(c.weight for c in self._contracts))
        return new

    def spot(self, root: str) -> float:
        """An underlying's price now."""
        return self._underlyings[root].spot

    def ticks(self, n: int) -> list[Event]:
        """The next ``n`` quotes and trades, spaced by random gaps."""
        out: list[Event] = []
        for _ in range(n):
            t = self.clock_ns + 1 + int(self._rng.expovariate(1.0 / self._mean_gap))
            self._tick(t, out)
            self.clock_ns = t
        return out

    def advance(self, n: int, until_ns: int) -> list[Event]:
        """``n`` quotes and trades spread over (clock, until_ns]."""
        out: list[Event] = []
        span = until_ns - self.clock_ns
        if span <= 0:
            return out
        for t in sorted(self.clock_ns + 1 + int(self._rng.random() * span) for _ in range(n)):
            self._tick(t, out)
        self.clock_ns = max(self.clock_ns, until_ns)
        return out

    def _tick(self, t: int, out: list[Event]) -> None:
        rng = self._rng
        contract = self._contracts[bisect(self._cumulative, rng.random() * self._cumulative[-1])]
        contract.underlying.move(rng)
        bid, ask = contract.quote(t)
        if rng.random() < self._trade_ratio:
            r = rng.random()
            price = ask if r < 0.4 or bid <= 0 else bid if r < 0.8 else round((bid + ask) / 2, 2)
            out.append(
                {
                    "T": "t",
                    "S": contract.symbol,
                    "t": t,
                    "p": price,
                    "s": max(1, int(rng.lognormvariate(0.8, 1.1))),
                    "x": _choose(rng, VENUES, self._venues),
                    "c": _choose(rng, TRADE_CONDITIONS, self._conditions),
                }
            )
            return
        out.append(
            {
                "T": "q",
                "S": contract.symbol,
                "t": t,
                "bx": _choose(rng, VENUES, self._venues),
                "bp": bid,
                "bs": 0 if bid <= 0 else max(1, int(rng.lognormvariate(3.0, 1.2))),
                "ax": _choose(rng, VENUES, self._venues),
                "ap": ask,
                "as": max(1, int(rng.lognormvariate(3.0, 1.2))),
                "c": _QUOTE_CONDITION,
            }
        )
