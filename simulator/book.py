"""One symbol's order book top: its quotes, trades, halts, corrections and cancels.

Kept apart from the market clock so the rules a reader checks (a trade prints
at the bid, at the ask or between them; a correction names the trade it
replaces) sit in one short place.
"""

from __future__ import annotations

import random
from math import floor
from typing import Any

from simulator.bars import Aggregate, TradeTick
from simulator.symbols import Listing

# Venues weighted roughly by market share; D (FINRA TRF) reports off-exchange trades.
_QUOTE_VENUES = "QQQQNNNPPPKKKZZZVVUUJYXBHA"
_TRADE_VENUES = "DDDDDDDQQQQNNNPPKKZZVUJYXB"
_LOT_SIZES = (1, 1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 12)
# (status code, message) per tape family: CTA for tapes A and B, UTP for tape C.
_HALT = {
    "cta": ("2", "Trading Halt", "M", "Limit Up-Limit Down (LULD) Trading Pause"),
    "utp": ("H", "Trading Halt", "LUDP", "Volatility Trading Pause"),
}
_RESUME = {
    "cta": ("3", "Resume", "M", "Limit Up-Limit Down (LULD) Trading Pause"),
    "utp": ("T", "Trading Resumption", "LUDP", "Volatility Trading Pause"),
}

#: A trade of the current minute: (timestamp ns, price, size, venue, conditions).
MinuteTrade = tuple[int, float, int, str, list[str]]


class Book:
    """Mid price, spread and the current minute's trades of one symbol."""

    __slots__ = (
        "ask",
        "bid",
        "day",
        "decimals",
        "halted_until",
        "last_minute",
        "late",
        "listing",
        "mid",
        "minute",
        "spread",
        "step",
        "symbol",
        "tape",
        "tick",
    )

    def __init__(self, listing: Listing, rng: random.Random) -> None:
        self.listing = listing
        self.symbol = listing.symbol
        self.tape = listing.tape
        self.mid = listing.price
        self.tick, self.decimals = (0.01, 2) if listing.price >= 1 else (0.0001, 4)
        self.spread = max(1, round(listing.price * 0.00004 / self.tick))  # whole ticks
        self.step = listing.price * 0.00005  # largest move of the mid per quote
        self.bid, self.ask = self._straddle(self.spread)
        self.halted_until: int | None = None
        self.minute: dict[int, MinuteTrade] = {}
        self.late: list[TradeTick] = []
        self.last_minute: Aggregate | None = None
        self.day: Aggregate | None = None

    def _straddle(self, ticks: int) -> tuple[float, float]:
        bid = floor((self.mid - ticks * self.tick / 2) / self.tick) * self.tick
        return round(bid, self.decimals), round(bid + ticks * self.tick, self.decimals)

    def quote(self, t: int, rng: random.Random, iex: bool) -> dict[str, Any]:
        """Move the mid a little and quote around it."""
        r = rng.random
        self.mid = max(10 * self.tick, self.mid + (r() - 0.5) * 2 * self.step)
        self.bid, self.ask = self._straddle(self.spread + (r() < 0.25))
        bx, ax = ("V", "V") if iex else (_QUOTE_VENUES[int(r() * 26)], _QUOTE_VENUES[int(r() * 26)])
        return {
            "T": "q",
            "S": self.symbol,
            "bx": bx,
            "bp": self.bid,
            "bs": _LOT_SIZES[int(r() * 12)],
            "ax": ax,
            "ap": self.ask,
            "as": _LOT_SIZES[int(r() * 12)],
            "c": ["R"],
            "z": self.tape,
            "t": t,
        }

    def trade(self, t: int, trade_id: int, rng: random.Random, iex: bool) -> dict[str, Any]:
        """A print at the bid, at the ask, or strictly between them."""
        r = rng.random()
        bid, ask = self.bid, self.ask
        if r < 0.4:
            price = bid
        elif r < 0.8:
            price = ask
        else:
            inside = round((ask - bid) / self.tick) - 1
            price = (
                round(bid + (1 + int(rng.random() * inside)) * self.tick, self.decimals)
                if inside > 0
                else round((bid + ask) / 2, self.decimals + 1)
            )
        size = 1 + int(rng.random() * 99) if rng.random() < 0.55 else 100 * rng.choice((1, 1, 2, 3, 5, 10))
        venue = "V" if iex else _TRADE_VENUES[int(rng.random() * 26)]
        return {
            "T": "t",
            "S": self.symbol,
            "i": trade_id,
            "x": venue,
            "p": price,
            "s": size,
            "c": trade_conditions(size, rng),
            "z": self.tape,
            "t": t,
        }

    def status(self, t: int, halted: bool) -> dict[str, Any]:
        """A trading status message: a volatility halt or its resumption."""
        family = "utp" if self.tape == "C" else "cta"
        sc, sm, rc, rm = (_HALT if halted else _RESUME)[family]
        if not halted:
            self.halted_until = None
        return {"T": "s", "S": self.symbol, "sc": sc, "sm": sm, "rc": rc, "rm": rm, "t": t, "z": self.tape}

    def correct(self, t: int, new_id: int, rng: random.Random) -> dict[str, Any]:
        """Correct one of this minute's trades: one tick off, or a different size."""
        oi = rng.choice(list(self.minute))
        ot, op, os, x, oc = self.minute.pop(oi)
        cp, cs = op, os
        if rng.random() < 0.5:
            cp = round(op + rng.choice((-1, 1)) * self.tick, self.decimals + 1)
        else:
            cs = max(1, os + rng.choice((-10, 10, 100)))
        cc = trade_conditions(cs, rng)
        self.minute[new_id] = (ot, cp, cs, x, cc)
        return {
            "T": "c",
            "S": self.symbol,
            "x": x,
            "oi": oi,
            "op": op,
            "os": os,
            "oc": oc,
            "ci": new_id,
            "cp": cp,
            "cs": cs,
            "cc": cc,
            "z": self.tape,
            "t": t,
        }

    def cancel(self, t: int, rng: random.Random) -> dict[str, Any]:
        """Cancel (or bust as an error) one of this minute's trades."""
        i = rng.choice(list(self.minute))
        _, p, s, x, _ = self.minute.pop(i)
        return {
            "T": "x",
            "S": self.symbol,
            "i": i,
            "x": x,
            "p": p,
            "s": s,
            "a": "C" if rng.random() < 0.8 else "E",
            "z": self.tape,
            "t": t,
        }


def trade_conditions(size: int, rng: random.Random) -> list[str]:
    """Regular sale, flagged odd lot under 100 shares and now and then intermarket sweep."""
    conditions = ["@", "F"] if rng.random() < 0.08 else ["@"]
    if size < 100:
        conditions.append("I")
    return conditions
