"""One client connection, from ``connected`` to close, as Alpaca's server runs it.

A session reads client messages (auth, subscribe, unsubscribe) in one task
and writes in another; the writer alone touches the socket, so a
confirmation can never overtake or be overtaken by data built under the old
subscription. Control messages go out one per frame ahead of any data; data
is batched up to ``batch_size`` messages per frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Collection
from enum import Enum
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from simulator import wire
from simulator.config import STREAMS
from simulator.outflow import Host as OutflowHost
from simulator.outflow import Outflow
from simulator.subscriptions import BY_FEED, Key, SubscriptionError, Subscriptions

_CONTROL_TYPES = ("success", "error", "subscription")
_WRITER_GRACE = 5.0  # seconds the writer gets to finish once the connection is closing
log = logging.getLogger(__name__)


class State(Enum):
    """Where a connection is: it must authenticate before it may subscribe."""

    CONNECTED = "connected"
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


class Host(OutflowHost, Protocol):
    """What a session needs of the server it runs in (the :class:`~simulator.server.Simulator`)."""

    #: Set while client messages are handled (cleared: they wait unread).
    reading: asyncio.Event

    def admit(self, session: Session) -> bool: ...

    def subscribed(self, session: Session) -> None: ...

    def watch_slow(self, ws: ServerConnection) -> None: ...

    def book_snapshots(self, feed: str, symbols: Collection[str] | None = None) -> list[dict[str, Any]]: ...


class Session:
    """One connection's protocol state and what was sent on it (read it in tests)."""

    def __init__(self, sim: Host, ws: ServerConnection, number: int, feed: str, encoding: wire.Encoding) -> None:
        self.number = number
        self.feed = feed
        self.encoding: wire.Encoding = encoding
        self.state = State.CONNECTED
        self.subscriptions = Subscriptions(BY_FEED[STREAMS[feed][0].name])
        self.outflow = Outflow(sim, feed, encoding, self.subscriptions)
        self.errors: list[int] = []
        self.received: list[Any] = []
        self.frames: list[bytes] = []
        self.slow = False
        self.close_code: int | None = None
        self._sim = sim
        self._ws = ws
        self._control: deque[bytes] = deque()
        self._closing: tuple[int, str] | None = None
        self._wake = asyncio.Event()

    @property
    def authenticated(self) -> bool:
        return self.state is State.AUTHENTICATED

    @property
    def sent_total(self) -> int:
        """Data messages sent on this connection."""
        return self.outflow.sent_total

    @property
    def sent_by_symbol(self) -> Counter[Key]:
        """Data messages sent, by (type, symbol)."""
        return self.outflow.sent_by_symbol

    @property
    def sent(self) -> Counter[str]:
        """Data messages sent, by type (``q``, ``t``, ``b``...)."""
        out: Counter[str] = Counter()
        for (kind, _), n in self.sent_by_symbol.items():
            out[kind] += n
        return out

    def messages(self) -> list[dict[str, Any]]:
        """Every message sent, decoded (needs ``record=True``)."""
        return [m for f in self.frames for m in wire.decode_frame(f)]

    def sent_events(self) -> list[dict[str, Any]]:
        """The data messages sent, decoded, in order (needs ``record=True``)."""
        return [m for m in self.messages() if m.get("T") not in _CONTROL_TYPES]

    # -- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        writer = asyncio.create_task(self._write_loop())
        timer = asyncio.create_task(self._auth_timer())
        refused = self.encoding not in STREAMS[self.feed][0].encodings
        if refused:  # the option stream speaks msgpack only: 412, closed
            self._error(412)
            self.close(1003, "msgpack only")
        else:
            self._push(wire.success("connected", self.encoding))
        headers = self._ws.request.headers if self._ws.request else {}
        if not refused and "APCA-API-KEY-ID" in headers and "APCA-API-SECRET-KEY" in headers:
            self._authenticate(headers["APCA-API-KEY-ID"], headers["APCA-API-SECRET-KEY"])
        try:
            async for data in self._ws:
                await self._on_message(data)
        except ConnectionClosed:
            pass
        finally:
            self.state = State.CLOSED
            timer.cancel()
            self._closing = self._closing or (1000, "")
            self._wake.set()
            try:
                await asyncio.wait_for(writer, _WRITER_GRACE)
            except (TimeoutError, ConnectionClosed):
                writer.cancel()
            self.close_code = self._ws.close_code
            self._sim.notify()

    def close(self, code: int, reason: str) -> None:
        """Close after the control messages already queued (never mid-frame)."""
        if self._closing is None:
            self._closing = (code, reason)
        self._wake.set()

    def _push(self, frame: bytes) -> None:
        self._control.append(frame)
        self._wake.set()

    def _error(self, code: int) -> None:
        self.errors.append(code)
        self._push(wire.error(code, self.encoding))

    async def _auth_timer(self) -> None:
        await asyncio.sleep(self._sim.config.auth_timeout)
        if self.state is State.CONNECTED:
            self._error(404)
            self.close(1008, "auth timeout")

    # -- reading -----------------------------------------------------------------

    async def _on_message(self, data: bytes | str) -> None:
        faults = self._sim.config.faults
        if faults.read_delay:
            await asyncio.sleep(faults.read_delay)
        await self._sim.reading.wait()
        try:
            msg = wire.decode(data, self.encoding)
        except wire.WireError:
            self._error(400)
            return
        self.received.append(msg)
        action = msg.get("action") if isinstance(msg, dict) else None
        try:
            if action == "auth":
                self._authenticate(msg.get("key"), msg.get("secret"))
            elif action in ("subscribe", "unsubscribe"):
                self._subscribe(msg)
            else:
                self._error(400)
        except Exception:  # a bug here must not cost the client its connection
            log.exception("simulator: handling %r failed", msg)
            self._error(500)

    def _authenticate(self, key: Any, secret: Any) -> None:
        config = self._sim.config
        if self.state is State.AUTHENTICATED:
            self._error(403)
        elif config.faults.never_authenticate:
            return
        elif config.key is not None and (key != config.key or secret != config.secret):
            self._error(402)
        elif self.feed not in config.entitled_feeds:
            self._error(409)
            self.close(1008, "insufficient subscription")
        elif not self._sim.admit(self):
            self._error(406)
        else:
            self.state = State.AUTHENTICATED
            self._push(wire.success("authenticated", self.encoding))

    def _subscribe(self, msg: dict[str, Any]) -> None:
        if self.state is not State.AUTHENTICATED:
            self._error(401)
            return
        books = self.subscriptions.symbols("orderbooks")
        try:
            self.subscriptions.change(msg, self._sim.config.symbol_limit)
        except SubscriptionError as exc:
            self._error(exc.code)
            return
        self.outflow.resubscribed()
        self._push(wire.subscription(self.subscriptions.listing(), self.encoding))
        self._sim.subscribed(self)
        self._send_books(books)

    def _send_books(self, before: dict[str, None]) -> None:
        """Queue the whole book of each pair newly subscribed on orderbooks: its first ``o`` message
        (``r``: true), ahead of every update of it, which the market makes from now on."""
        after = self.subscriptions.symbols("orderbooks")
        if "*" in before or not after.keys() - before.keys():
            return
        wanted = None if "*" in after else after.keys() - before.keys()
        snapshots = [s for s in self._sim.book_snapshots(self.feed, wanted) if s["S"] not in before]
        if snapshots:
            self.offer(snapshots)

    # -- writing -----------------------------------------------------------------

    async def _write_loop(self) -> None:
        ws = self._ws
        text = self.encoding == "json"
        record = self._sim.config.record
        try:
            while True:
                frame: bytes | None
                if self._control:
                    frame = self._control.popleft()
                elif self._closing is not None:
                    await ws.close(*self._closing)
                    return
                else:
                    frame = self._next_frame()
                if frame is None:
                    self._wake.clear()
                    if not self._control and self._closing is None:
                        await self._wake.wait()
                    continue
                if record:
                    self.frames.append(frame)
                await ws.send(frame, text=text)
                await asyncio.sleep(0)  # let the reader in between frames of a burst
        except ConnectionClosed:
            return

    def offer(self, events: list[dict[str, Any]]) -> None:
        """Paced mode: queue the market's latest events; a client too far behind gets 407."""
        if self.state is not State.AUTHENTICATED or self.slow or self._closing is not None:
            return
        if not self.outflow.offer(events):
            self.slow = True
            self._error(407)
            self.close(1008, "slow client")
            self._sim.watch_slow(self._ws)
        self._wake.set()

    def _next_frame(self) -> bytes | None:
        if self.state is not State.AUTHENTICATED or not self.subscriptions or self.slow:
            return None
        if self.outflow.closing_due():
            limit = self._sim.config.faults.close_after
            self.close(1001, f"simulator fault: closed after {limit} messages")
            return None
        return self.outflow.next_frame()
