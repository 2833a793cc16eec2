"""Burst mode: the market as fast as a client can read it.

Generating a market event in Python costs microseconds, too slow for the
250k events/s a benchmark needs. So burst mode generates one window of whole
minutes once, pre-encodes every event around its timestamp (and trade id),
and replays the window back to back: replay ``c`` shifts every timestamp by
``c`` windows and every trade id by ``c`` id spans, so each event sent is
unique, minute bars still agree with the trades of their minute, and daily
bars keep accumulating. Building a frame is then one small concatenation per
event. Prices repeat from one window to the next; use the paced mode for a
market that never repeats.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgpack
import orjson

from simulator.bars import MINUTE_NS, NS, day_start, minute_start
from simulator.market import DEFAULT_START_NS, Event, Market
from simulator.wire import Encoding, rfc3339, timestamp

Key = tuple[str, str]
_TS64 = struct.Struct(">Q").pack  # msgpack timestamp 64: nanoseconds << 34 | seconds
_TRADE_TAIL = struct.Struct(">Q4sQ").pack  # trade id (uint 64), then "t" and its timestamp 64
_T_KEY = b"\xa1t\xd7\xff"  # "t": ext 8 bytes, type -1
_I_KEY = b"\xa1i\xcf"  # "i": uint 64
_ID_FIELDS = ("i", "oi", "ci")


@dataclass(frozen=True, eq=False)  # hashed by identity: replays are cached per window
class Window:
    """A minute-aligned stretch of the market, generated once and replayed."""

    events: tuple[Event, ...]
    start_ns: int
    length_ns: int
    id_span: int
    totals: dict[str, dict[str, Any]]  # each symbol's last daily bar of the window
    clocks: tuple[int, ...]  # the market clock when each event went out


@lru_cache(maxsize=8)
def market_window(symbols: tuple[str, ...], seed: int, feed: str, minutes: int) -> Window:
    """The replayed window for these settings (cached: tests start many simulators)."""
    market = Market(symbols, seed, feed=feed, start_ns=DEFAULT_START_NS)
    events = tuple(market.window(minutes))
    ids = [e[f] for e in events for f in _ID_FIELDS if f in e]
    totals = {e["S"]: e for e in events if e["T"] == "d"}
    clocks, clock = [], DEFAULT_START_NS
    for e in events:
        if e["T"] not in ("b", "u", "d"):  # bars carry their minute, not the moment sent
            clock = max(clock, e["t"])
        clocks.append(clock)
    return Window(
        events, DEFAULT_START_NS, minutes * MINUTE_NS, max(ids) - min(ids) + 1 if ids else 1, totals, tuple(clocks)
    )


class Replay:
    """Encoded events of one window for one encoding, and the cut of any replay of it."""

    def __init__(self, window: Window, encoding: Encoding) -> None:
        self.window = window
        self.encoding = encoding
        self.keys: list[Key] = [(e["T"], e["S"]) for e in window.events]
        self._entries = [self._prepare(e, c) for e, c in zip(window.events, window.clocks, strict=True)]

    def _prepare(self, e: Event, clock: int) -> tuple[Any, ...]:
        kind = e["T"]
        if kind in ("d", "c", "x"):  # rare: re-encoded whole on every replay
            return (2, e, clock)
        rest = {k: v for k, v in e.items() if k not in ("t", "i")}
        if self.encoding == "msgpack":
            head = bytes((0x80 | len(e),)) + msgpack.packb(rest)[1:]
            stamp = (e["t"] % NS) << 34 | e["t"] // NS
            if kind == "t":
                return (1, head + _I_KEY, e["i"], stamp)
            return (0, head + _T_KEY, stamp)
        head = orjson.dumps(rest)[:-1]
        if kind == "t":
            return (1, head + b',"i":', e["i"], e["t"])
        return (0, head + b',"t":"', e["t"])

    def encode(
        self, start: int, stop: int, replay: int, offset_ns: int, accept: set[Key] | None
    ) -> tuple[list[bytes], list[Key]]:
        """Events ``start:stop`` of replay number ``replay``, optionally only the accepted ones."""
        entries = self._entries[start:stop]
        keys = self.keys[start:stop]
        if accept is not None:
            kept = [i for i, k in enumerate(keys) if k in accept]
            entries = [entries[i] for i in kept]
            keys = [keys[i] for i in kept]
        shift = offset_ns + replay * self.window.length_ns
        ids = replay * self.window.id_span
        parts: list[bytes] = []
        add = parts.append
        if self.encoding == "msgpack":
            secs = shift // NS
            for e in entries:
                kind = e[0]
                if kind == 0:
                    add(e[1] + _TS64(e[2] + secs))
                elif kind == 1:
                    add(e[1] + _TRADE_TAIL(e[2] + ids, _T_KEY, e[3] + secs))
                else:
                    add(msgpack.packb(self._shifted(e, shift, ids, replay)))
        else:
            for e in entries:
                kind = e[0]
                if kind == 0:
                    add(e[1] + rfc3339(e[2] + shift).encode() + b'"}')
                elif kind == 1:
                    add(b'%s%d,"t":"%s"}' % (e[1], e[2] + ids, rfc3339(e[3] + shift).encode()))
                else:
                    add(orjson.dumps(self._shifted(e, shift, ids, replay)))
        return parts, keys

    def _shifted(self, entry: tuple[Any, ...], shift: int, ids: int, replay: int) -> dict[str, Any]:
        _, e, clock = entry
        out = shifted(self.window, e, clock, replay, shift - replay * self.window.length_ns)
        out["t"] = timestamp(out["t"]) if self.encoding == "msgpack" else rfc3339(out["t"])
        return out


def shifted(window: Window, event: Event, clock: int, replay: int, offset_ns: int) -> Event:
    """A window's event as replay number ``replay`` sends it, ``t`` still int nanoseconds.

    Times move by whole windows and ids by whole id spans; a daily bar is
    stamped with the day of the moment it goes out and adds the earlier
    replays of that day. The REST history of a burst feed rebuilds events with it.
    """
    out = dict(event)
    for f in _ID_FIELDS:
        if f in out:
            out[f] += replay * window.id_span
    shift = offset_ns + replay * window.length_ns
    if event["T"] == "d":
        out["t"] = day_start(clock + shift)
        _accumulate_day(out, window, offset_ns, replay)
    else:
        out["t"] = event["t"] + shift
    return out


def _accumulate_day(bar: dict[str, Any], window: Window, offset_ns: int, replay: int) -> None:
    """Add the earlier replays of the same New York day to a daily bar of this replay."""
    first = window.start_ns + offset_ns  # when replay 0 started
    this = first + replay * window.length_ns
    midnight = day_start(this)
    since_midnight = max(0, -(-(midnight - first) // window.length_ns))  # first replay of the day
    earlier = replay - since_midnight
    if earlier <= 0:
        return
    total = window.totals[bar["S"]]
    pv = total["vw"] * total["v"] * earlier + bar["vw"] * bar["v"]
    bar["h"] = max(bar["h"], total["h"])
    bar["l"] = min(bar["l"], total["l"])
    bar["v"] += total["v"] * earlier
    bar["n"] += total["n"] * earlier
    bar["vw"] = round(pv / bar["v"], 6)


class BurstFeed:
    """One feed's endless replay; connections draw from its shared cursor."""

    def __init__(self, symbols: Sequence[str], seed: int, feed: str, minutes: int, start_ns: int) -> None:
        self.window = market_window(tuple(symbols), seed, feed, minutes)
        self.offset_ns = minute_start(start_ns) - self.window.start_ns
        self.position = 0  # events drawn so far, across replays
        self._replays: dict[str, Replay] = {}

    def replay_for(self, encoding: Encoding) -> Replay:
        replay = self._replays.get(encoding)
        if replay is None:
            replay = self._replays[encoding] = _replay(self.window, encoding)
        return replay

    def draw(self, n: int, encoding: Encoding, accept: set[Key] | None) -> tuple[list[bytes], list[Key], int]:
        """The next ``n`` market events, of which only the accepted are encoded.

        Returns the encoded events, their (type, symbol) keys and how many were drawn.
        """
        replay = self.replay_for(encoding)
        size = len(self.window.events)
        parts: list[bytes] = []
        keys: list[Key] = []
        drawn = 0
        while drawn < n:
            cycle, index = divmod(self.position, size)
            stop = min(size, index + n - drawn)
            p, k = replay.encode(index, stop, cycle, self.offset_ns, accept)
            parts += p
            keys += k
            drawn += stop - index
            self.position += stop - index
        return parts, keys, drawn


_replay: Callable[[Window, Encoding], Replay] = lru_cache(maxsize=16)(Replay)
