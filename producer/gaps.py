"""Where the stream has holes: the last event time per type and symbol, the gaps, and their file.

Alpaca's stream never replays, so whatever happened while the producer was
not reading (a reconnect, a silent connection dropped by the watchdog, the
producer's own restart) is missing unless it is fetched from the REST API.
:class:`GapTracker` watches the events the read loop hands on (a dict store
per event, nothing awaited) and, on the first tick of every new connection
newer than the last one read, opens a :class:`Gap` from where the stream was
(the newest tick read before, the *watermark*) to where it is again, both
widened by a margin for
late-reported trades and clock skew. Overlap costs nothing downstream: the
same event from stream or REST has the same primary key.

Across restarts the tracker's state lives in one small JSON file
(:class:`StateFile`, written atomically: temp file, fsync, rename). Its size
is bounded: at most ``max_symbols`` symbols per type (the least recently
seen are forgotten) and ``max_gaps`` gaps (the oldest are merged). A state is
written only once every record offered to Kafka before it was taken is
acknowledged or spooled (:class:`Checkpoints`): after a SIGKILL the file never
claims events that died in memory, and a gap's progress never runs ahead of
the records it stands for.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from producer.transcode import Transcoded
from tickpipe.feeds import STOCK, Feed

log = logging.getLogger(__name__)

STATE_VERSION: Final = 1
DONE: Final = "done"
#: A gap's symbols when it is a window of the whole feed (a ``*`` subscription of a feed whose events are
#: not a symbol's, the news): its REST history is asked for no symbols, i.e. every item. Also the one name
#: such a feed's times are tracked under.
EVERY: Final = "*"


def _tracked(feed: Feed) -> dict[str, str]:
    """Stream type code -> where its last time is kept: its family's first code (an updated bar is a
    minute bar), for the codes REST history can fill (``Family.history``, ``history_codes``)."""
    return {
        code: family.types[0].code
        for family in feed.families
        if family.history
        for code in (family.history_codes or family.codes)
    }


def windowed(feed: Feed) -> bool:
    """Whether the feed's history is tracked and filled as windows of the feed rather than per symbol: its
    events are not a symbol's (``Family.by_symbol``; a news story is keyed by its id, naming any symbols)."""
    return any(not family.by_symbol for family in feed.families if family.history)


def _ticks(feed: Feed) -> frozenset[str]:
    """Ticks move the watermark; a bar's time is the start of its minute, not when it was seen."""
    return frozenset(kind.code for _, kind in feed.event_types() if kind.tick)


@dataclass
class Gap:
    """A window of market time to fetch for some symbols, and how far each resource has got."""

    start_ns: int
    end_ns: int
    symbols: list[str]
    cause: str = "reconnect"
    #: "trades/0" (resource / symbol chunk) -> the next page's token, or DONE; absent: not started.
    progress: dict[str, str] = field(default_factory=dict)
    #: resource -> newest event time fetched so far (for the seconds still open).
    reached: dict[str, int] = field(default_factory=dict)
    #: The first tick of the stream again (0: not a stream gap): bars end a minute before it, since
    #: the bar of any later minute is sent (whole) on the stream, and a REST bar of a minute not over
    #: yet would be partial.
    resume_ns: int = 0

    def open_ns(self, resources: Sequence[str]) -> int:
        """Nanoseconds of the window some resource has not reached yet."""
        left = 0
        for resource in resources:
            if self.finished(resource):
                continue
            left = max(left, self.end_ns - max(self.start_ns, self.reached.get(resource, self.start_ns)))
        return left

    def finished(self, resource: str) -> bool:
        mine = [v for k, v in self.progress.items() if k.startswith(f"{resource}/")]
        return bool(mine) and all(v == DONE for v in mine) and len(mine) == len(chunks(self.symbols))

    def to_json(self) -> dict[str, Any]:
        return {
            "start_ns": self.start_ns, "end_ns": self.end_ns, "symbols": self.symbols, "cause": self.cause,
            "progress": dict(self.progress), "reached": dict(self.reached), "resume_ns": self.resume_ns,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Gap:
        return cls(
            int(data["start_ns"]), int(data["end_ns"]), [str(s) for s in data["symbols"]], str(data.get("cause", "")),
            {str(k): str(v) for k, v in data.get("progress", {}).items()},
            {str(k): int(v) for k, v in data.get("reached", {}).items()}, int(data.get("resume_ns", 0)),
        )  # fmt: skip


#: Symbols per REST request: Alpaca's bound on its option routes (``symbols``: "a limit of 100"), which
#: also keeps a stock or crypto request's URL short. An option chain of 2,560 contracts is 26 requests
#: a page round, each spending the client's request budget.
CHUNK_SYMBOLS: Final = 100


def chunks(symbols: Sequence[str]) -> list[list[str]]:
    """Symbols in groups of at most :data:`CHUNK_SYMBOLS`, one multi-symbol request each; :data:`EVERY`
    among them is one request for every item (a window of the whole feed covers any symbol list)."""
    if EVERY in symbols:
        return [[EVERY]]
    ordered = sorted(set(symbols))
    return [ordered[i : i + CHUNK_SYMBOLS] for i in range(0, len(ordered), CHUNK_SYMBOLS)] or [[]]


class GapTracker:
    """Last event times per type and symbol, the watermark, and the gaps still to fill, of one feed.

    Only the families with REST history (``Family.history``) are tracked and move the watermark: the
    crypto feed's order books have none (Alpaca serves the latest books only), and after a gap the new
    connection's subscription brings each pair's whole book (``r`` true), which needs no filling.

    A feed whose events are not a symbol's (news: a story is keyed by its id) is tracked as one window,
    under :data:`EVERY`, and the gap of its ``*`` subscription is the whole feed's (every story, those
    naming no symbol too); with a symbol list, the listed symbols' (the stories naming any of them).
    """

    def __init__(
        self,
        *,
        margin_ns: int,
        max_window_ns: int,
        subscribed: Callable[[], Sequence[str]],
        max_symbols: int = 20_000,
        max_gaps: int = 64,
        feed: Feed = STOCK,
    ) -> None:
        self._tracked = _tracked(feed)
        self._window = EVERY if windowed(feed) else None
        self._ticks = _ticks(feed)
        self.margin_ns = margin_ns
        self.max_window_ns = max_window_ns
        self.subscribed = subscribed
        self.max_symbols = max_symbols
        self.max_gaps = max_gaps
        self.last: dict[str, dict[str, int]] = {code: {} for code in dict.fromkeys(self._tracked.values())}
        self.watermark = 0  # newest quote or trade time read (ns)
        self.gaps: list[Gap] = []
        self.gaps_seen = 0
        self.on_gap: Callable[[], None] = lambda: None
        self._fresh = True  # a connection began and no tick has come on it yet
        self._cause = "restart"

    # --- the read loop's side -----------------------------------------------------------------
    def session_started(self, cause: str) -> None:
        """A new upstream connection: its first tick closes the gap since the watermark."""
        self._fresh = True
        self._cause = cause

    def note(self, events: Sequence[Transcoded]) -> None:
        """Remember the newest time per type and symbol (called per frame, before anything else)."""
        tracked, ticks, last, window = self._tracked, self._ticks, self.last, self._window
        newest = 0
        for event in events:
            code = tracked.get(event.type_code)
            if code is None:
                continue
            stamp = event.timestamp
            per = last[code]
            name = window or event.symbol
            if per.get(name, 0) < stamp:
                per[name] = stamp
            if event.type_code in ticks and stamp > newest:
                newest = stamp
        if not newest:
            return
        # The stream is back where it was once a tick newer than the watermark comes: an older one first
        # (a late trade, a news story's update, stamped with its creation) would end the gap before it began.
        if self._fresh and newest > self.watermark:
            self._fresh = False
            self._open(newest)
        if newest > self.watermark:
            self.watermark = newest
        for per in last.values():
            if len(per) > self.max_symbols:
                self._forget(per)

    def _forget(self, per: dict[str, int]) -> None:
        keep = sorted(per.items(), key=lambda item: item[1])[len(per) - self.max_symbols :]
        per.clear()
        per.update(keep)

    def _open(self, first_ns: int) -> None:
        """The stream is back at ``first_ns``: the window since the watermark is a gap."""
        if not self.watermark:
            log.info("gaps: no earlier stream position known; nothing to fill before %d", first_ns)
            return
        start = max(self.watermark - self.margin_ns, first_ns - self.max_window_ns)
        wanted = self.subscribed()
        # A '*' subscription: the symbols seen so far (the only ones known), or the whole feed's window when
        # its events are not a symbol's. A list: every symbol on it, seen or not: a thin symbol's first trade
        # may fall in the gap (most contracts of an option chain trade a few times an hour).
        if "*" in wanted:
            symbols = [self._window] if self._window else sorted(set().union(*self.last.values()))
        else:
            symbols = sorted(set(wanted))
        if not symbols:
            return
        gap = Gap(start, first_ns + self.margin_ns, symbols, self._cause, resume_ns=first_ns)
        self.gaps_seen += 1
        what = "the whole feed" if symbols == [EVERY] else f"{len(symbols)} symbols"
        log.info(
            "gaps: stream back after %s; filling %.1f s of %s from the REST API",
            self._cause, (gap.end_ns - gap.start_ns) / 1e9, what,
        )  # fmt: skip
        self.gaps.append(gap)
        while len(self.gaps) > self.max_gaps:  # bounded: the two oldest become one wider gap
            a, b = self.gaps[0], self.gaps[1]
            merged = Gap(min(a.start_ns, b.start_ns), max(a.end_ns, b.end_ns), sorted({*a.symbols, *b.symbols}),
                         "merged")  # fmt: skip
            self.gaps[:2] = [merged]
        self.on_gap()

    # --- state --------------------------------------------------------------------------------
    def open_seconds(self, resources: Sequence[str]) -> float:
        """Seconds of market time in gaps not yet filled."""
        return sum(gap.open_ns(resources) for gap in self.gaps) / 1e9

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "watermark": self.watermark,
            "last": {code: dict(per) for code, per in self.last.items()},
            "gaps": [gap.to_json() for gap in self.gaps],
            "gaps_seen": self.gaps_seen,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take a state read back from the file (the restart itself opens a gap on the first tick)."""
        if state.get("version") != STATE_VERSION:
            log.warning("gaps: state version %r is not %d; starting without it", state.get("version"), STATE_VERSION)
            return
        self.watermark = int(state.get("watermark", 0))
        for code, per in state.get("last", {}).items():
            if code in self.last:
                self.last[code] = {str(s): int(t) for s, t in per.items()}
        self.gaps = [Gap.from_json(g) for g in state.get("gaps", [])]
        self.gaps_seen = int(state.get("gaps_seen", 0))


class StateFile:
    """One JSON document, replaced atomically, so a crash leaves the old state or the new one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # a write in a thread may still run when the last one is made at exit

    def read(self) -> dict[str, Any] | None:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            log.error("gaps: cannot read %s (%s); starting without it", self.path, exc)
            return None
        return data if isinstance(data, dict) else None

    def write(self, state: dict[str, Any]) -> None:
        data = orjson.dumps(state)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)


class Checkpoints:
    """States waiting until every record offered before them is safe (acknowledged by Kafka or spooled)."""

    def __init__(
        self, file: StateFile, offered: Callable[[], int], settled: Callable[[], int], bound: int = 64
    ) -> None:
        self.file = file
        self.offered = offered
        self.settled = settled
        self.bound = bound
        self.pending: list[tuple[int, dict[str, Any]]] = []
        self._written: dict[str, Any] | None = None

    def take(self, state: dict[str, Any]) -> None:
        entry = (self.offered(), state)
        if len(self.pending) >= self.bound:  # Kafka slow: the newest waiting state just gets newer
            self.pending[-1] = entry
        else:
            self.pending.append(entry)

    def due(self) -> dict[str, Any] | None:
        """The newest state whose records are all safe, if it differs from the last one written (taken off)."""
        settled = self.settled()
        ready = [i for i, (offered, _) in enumerate(self.pending) if offered <= settled]
        if not ready:
            return None
        newest = ready[-1]
        state = self.pending[newest][1]
        del self.pending[: newest + 1]
        if state == self._written:  # nothing new: no write, no fsync
            return None
        self._written = state
        return state

    def flush(self) -> bool:
        """Write the state :meth:`due` gives, here and now; whether one was written."""
        state = self.due()
        if state is None:
            return False
        self.file.write(state)
        return True
