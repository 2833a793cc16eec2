"""The simulated universe: real tickers by default, synthetic ones on request.

Each listing carries what the market model needs to look believable: a
starting price, the tape its primary listing reports on (A = NYSE,
B = NYSE Arca and other exchanges, C = Nasdaq) and an activity weight, so
SPY and NVDA tick far more often than IBM, as they do on a real feed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from string import ascii_uppercase
from typing import Final


@dataclass(frozen=True, slots=True)
class Listing:
    """One simulated symbol: ticker, opening price, tape and relative activity."""

    symbol: str
    price: float
    tape: str
    weight: float


# About fifty liquid US names, with mid-2024 prices.
_DEFAULT: Final[tuple[tuple[str, float, str, float], ...]] = (
    ("SPY", 530.0, "B", 10),
    ("QQQ", 450.0, "C", 8),
    ("AAPL", 190.0, "C", 8),
    ("NVDA", 120.0, "C", 9),
    ("TSLA", 180.0, "C", 8),
    ("MSFT", 420.0, "C", 6),
    ("AMZN", 185.0, "C", 6),
    ("META", 500.0, "C", 5),
    ("GOOGL", 175.0, "C", 5),
    ("GOOG", 176.0, "C", 3),
    ("AMD", 160.0, "C", 5),
    ("IWM", 205.0, "B", 4),
    ("BRK.B", 410.0, "A", 2),
    ("JPM", 200.0, "A", 3),
    ("V", 275.0, "A", 2),
    ("UNH", 500.0, "A", 2),
    ("XOM", 115.0, "A", 3),
    ("JNJ", 150.0, "A", 2),
    ("WMT", 65.0, "A", 2),
    ("MA", 450.0, "A", 2),
    ("PG", 165.0, "A", 2),
    ("AVGO", 1400.0, "C", 3),
    ("HD", 340.0, "A", 2),
    ("CVX", 160.0, "A", 2),
    ("LLY", 800.0, "A", 2),
    ("ABBV", 165.0, "A", 1),
    ("MRK", 130.0, "A", 1),
    ("KO", 62.0, "A", 2),
    ("PEP", 170.0, "C", 1),
    ("COST", 830.0, "C", 1),
    ("ADBE", 480.0, "C", 1),
    ("CRM", 250.0, "A", 1),
    ("NFLX", 640.0, "C", 2),
    ("INTC", 31.0, "C", 3),
    ("CSCO", 47.0, "C", 2),
    ("ORCL", 125.0, "A", 1),
    ("TMO", 570.0, "A", 1),
    ("MCD", 260.0, "A", 1),
    ("BAC", 40.0, "A", 3),
    ("WFC", 60.0, "A", 2),
    ("DIS", 100.0, "A", 2),
    ("NKE", 95.0, "A", 1),
    ("QCOM", 200.0, "C", 2),
    ("TXN", 195.0, "C", 1),
    ("IBM", 170.0, "A", 1),
    ("BA", 180.0, "A", 2),
    ("CAT", 340.0, "A", 1),
    ("GS", 460.0, "A", 1),
    ("UBER", 70.0, "A", 2),
    ("PYPL", 63.0, "C", 2),
    ("SBUX", 80.0, "C", 1),
    ("DIA", 390.0, "B", 1),
)

#: Default listings, by ticker.
DEFAULT_LISTINGS: Final[dict[str, Listing]] = {s: Listing(s, p, z, w) for s, p, z, w in _DEFAULT}
#: The default universe, most active first.
DEFAULT_SYMBOLS: Final[tuple[str, ...]] = tuple(DEFAULT_LISTINGS)


def synthetic_symbols(n: int) -> tuple[str, ...]:
    """N made-up tickers (``ZAAA``, ``ZAAB``, ...), distinct from any real default."""
    if n < 1:
        raise ValueError(f"expected a positive number of symbols, got {n}")
    width = 3
    while 26**width < n:
        width += 1
    names = []
    for i in range(n):
        letters = []
        for _ in range(width):
            i, r = divmod(i, 26)
            letters.append(ascii_uppercase[r])
        names.append("Z" + "".join(reversed(letters)))
    return tuple(names)


def listings(symbols: tuple[str, ...] | list[str], seed: int = 0) -> list[Listing]:
    """Listings for these tickers: known ones as above, unknown ones made up from the seed.

    A made-up listing depends only on the seed and its ticker, so adding a
    symbol never changes the others.
    """
    out = []
    for symbol in symbols:
        known = DEFAULT_LISTINGS.get(symbol)
        if known is not None:
            out.append(known)
            continue
        rng = random.Random(f"{seed}:{symbol}")
        price = round(10 * 50 ** rng.random(), 2)  # log-uniform, $10 to $500
        out.append(Listing(symbol, price, rng.choice("ABC"), rng.choice((1.0, 1.0, 2.0, 3.0))))
    return out
