"""The data side of one connection: what its next data frame holds.

Burst mode draws the next events from the feed's replay as the socket takes
them; paced mode drains what the feed's ticker queued. Either way the frame
is cut short where a fault's count falls (close, go silent, send garbage
after N messages) or the market's ``max_events`` runs out, so those counts
are exact.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any, Protocol

from simulator import wire
from simulator.burst import BurstFeed
from simulator.config import SimulatorConfig
from simulator.subscriptions import Key, Subscriptions, key_of


class Host(Protocol):
    """What an outflow needs of the server it runs in (the :class:`~simulator.server.Simulator`)."""

    config: SimulatorConfig
    #: Events the market has produced so far, over every connection (``max_events`` bounds it).
    produced: int

    def notify(self) -> None: ...

    def allowance(self, n: int) -> int: ...

    def burst_feed(self, feed: str) -> BurstFeed: ...

    def paced(self, feed: str) -> bool: ...


class Outflow:
    """Builds one connection's data frames and counts what they carried."""

    def __init__(self, sim: Host, feed: str, encoding: wire.Encoding, subscriptions: Subscriptions) -> None:
        self.sent_total = 0
        self.sent_by_symbol: Counter[Key] = Counter()
        self._sim = sim
        self._feed = feed
        self._encoding: wire.Encoding = encoding
        self._subscriptions = subscriptions
        self._outbox: deque[dict[str, Any]] = deque()
        self._malformed_sent = False
        self._accept: tuple[int, set[Key] | None] = (-1, None)

    def offer(self, events: list[dict[str, Any]]) -> bool:
        """Paced mode: queue the events subscribed to; False if the queue overflowed (slow client)."""
        wants = self._subscriptions.wants
        self._outbox.extend(e for e in events if wants(e))
        if len(self._outbox) > self._sim.config.send_buffer:
            self._outbox.clear()
            return False
        return True

    def resubscribed(self) -> None:
        """Drop queued events the new subscriptions no longer want: none may follow the confirmation."""
        wants = self._subscriptions.wants
        self._outbox = deque(e for e in self._outbox if wants(e))

    def closing_due(self) -> bool:
        """Whether the close-after fault's count has been reached."""
        limit = self._sim.config.faults.close_after
        return limit is not None and self.sent_total >= limit

    def next_frame(self) -> bytes | None:
        """The next data frame, or None when there is nothing to send now."""
        malformed_after = self._sim.config.faults.malformed_after
        if not self._malformed_sent and malformed_after is not None and self.sent_total >= malformed_after:
            self._malformed_sent = True
            return wire.malformed(self._encoding)
        n = self._budget()
        if n <= 0:
            return None
        frame, keys = self._paced(n) if self._sim.paced(self._feed) else self._burst(n)
        if frame is None:
            return None
        self.sent_total += len(keys)
        self.sent_by_symbol.update(keys)
        self._sim.notify()
        return frame

    def _budget(self) -> int:
        """How many data messages the next frame may hold, after the faults' counts."""
        faults = self._sim.config.faults
        n = self._sim.config.batch_size
        malformed = None if self._malformed_sent else faults.malformed_after
        for limit in (faults.close_after, faults.silent_after, malformed):
            if limit is not None:
                n = min(n, limit - self.sent_total)
        return n

    def _paced(self, n: int) -> tuple[bytes | None, list[Key]]:
        if not self._outbox:
            return None, []
        batch = [self._outbox.popleft() for _ in range(min(n, len(self._outbox)))]
        return wire.encode_events(batch, self._encoding), [key_of(e) for e in batch]

    def _burst(self, n: int) -> tuple[bytes | None, list[Key]]:
        feed = self._sim.burst_feed(self._feed)
        version = self._subscriptions.version
        if self._accept[0] != version:
            universe = set(feed.replay_for(self._encoding).keys)
            self._accept = (version, self._subscriptions.accepted(universe))
        accept = self._accept[1]
        if accept is not None and not accept:
            return None, []  # nothing this connection wants ever happens in the window
        parts: list[bytes] = []
        keys: list[Key] = []
        while not parts:  # a narrow subscription may skip a whole draw
            allowed = self._sim.allowance(n)
            if allowed <= 0:
                return None, []
            parts, keys, drawn = feed.draw(allowed, self._encoding, accept)
            self._sim.produced += drawn
        if self._encoding == "msgpack":
            return wire.array_header(len(parts)) + b"".join(parts), keys
        return b"[" + b",".join(parts) + b"]", keys
