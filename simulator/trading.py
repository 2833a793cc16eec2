"""The trading API's stream on ``/stream``: the account's order updates, as Alpaca's paper stream sends them.

Protocol (``tickpipe.trading_wire``): the client authenticates first (no
greeting), is answered ``authorized``, or ``unauthorized`` and closed (1008);
``listen`` to ``trade_updates`` is answered ``listening``; every message is a
binary frame holding one JSON object. The account's orders (:mod:`simulator.orders`)
move at ``order_rate`` updates a second while a connection listens, up to
``order_updates`` in all (None: endlessly), and every listening connection gets
every update (Alpaca sends each update to each of the account's connections).
``faults.malformed_after`` sends, after that many updates, one update with no
order object; ``faults.close_after`` closes each connection after that many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from simulator.orders import OrderFlow
from tickpipe import trading_wire as tw
from tickpipe.codecs import format_rfc3339_ns

if TYPE_CHECKING:
    from simulator.config import SimulatorConfig

log = logging.getLogger(__name__)
POLICY_VIOLATION = 1008


class TradingDesk:
    """The account's one order flow and the connections listening to it."""

    def __init__(self, config: SimulatorConfig, notify: Any) -> None:
        self.config = config
        self.flow = OrderFlow(config.symbols, config.seed, time.time_ns)
        self.sessions: list[TradingSession] = []
        #: Every update's ``data`` drawn so far, in order (the malformed fault's message not among them).
        self.updates: list[dict[str, Any]] = []
        self.notify = notify
        self._listening = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def exhausted(self) -> bool:
        limit = self.config.order_updates
        return limit is not None and len(self.updates) >= limit

    def listened(self) -> None:
        """A session listens: the orders move (again)."""
        self._listening.set()
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="simulator-orders")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def _tick(self) -> None:
        interval = 1.0 / self.config.order_rate
        faults = self.config.faults
        while not self.exhausted:
            if not any(s.listening for s in self.sessions):  # nobody listens: the account waits
                self._listening.clear()
                await self._listening.wait()
                continue
            if faults.malformed_after is not None and len(self.updates) == faults.malformed_after:
                self._send(tw.message(tw.STREAM, {"event": "fill", "timestamp": format_rfc3339_ns(time.time_ns())}))
            data = self.flow.next()
            self.updates.append(data)
            self._send(tw.message(tw.STREAM, data))
            self.notify()
            await asyncio.sleep(interval)

    def _send(self, frame: bytes) -> None:
        for session in self.sessions:
            if session.listening:
                session.push(frame, update=True)


class TradingSession:
    """One connection: authenticate, listen, then every update of the account."""

    def __init__(self, desk: TradingDesk, ws: ServerConnection) -> None:
        self.desk = desk
        self.ws = ws
        self.authorized = False
        self.listening = False
        self.received: list[Any] = []
        #: The frames sent, in order (control messages and updates).
        self.frames: list[bytes] = []
        self.updates_sent = 0
        self.close_code: int | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def push(self, frame: bytes, *, update: bool = False) -> None:
        if update:
            limit = self.desk.config.faults.close_after
            if limit is not None and self.updates_sent >= limit:
                self.listening = False
                self._queue.put_nowait(None)
                return
            self.updates_sent += 1
        self._queue.put_nowait(frame)

    def sent_updates(self) -> list[dict[str, Any]]:
        """The ``data`` of every update sent, decoded."""
        return [m["data"] for m in map(orjson.loads, self.frames) if m.get("stream") == tw.STREAM]

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        timer = asyncio.create_task(self._auth_timer())
        try:
            async for raw in self.ws:
                self._on_message(raw)
        except ConnectionClosed:
            pass
        finally:
            self.listening = False
            timer.cancel()
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 5)
            self.close_code = self.ws.close_code
            self.desk.notify()

    async def _auth_timer(self) -> None:
        await asyncio.sleep(self.desk.config.auth_timeout)
        if not self.authorized:
            self.push(tw.authorization(False, detail="authentication timeout"))
            self._queue.put_nowait(None)

    async def _write(self) -> None:
        try:
            while (frame := await self._queue.get()) is not None:
                self.frames.append(frame)
                await self.ws.send(frame, text=False)
            await self.ws.close(POLICY_VIOLATION if not self.authorized else 1000)
        except ConnectionClosed:
            return

    def _on_message(self, raw: bytes | str) -> None:
        try:
            action = orjson.loads(raw)
        except orjson.JSONDecodeError:
            action = None
        self.received.append(action)
        if not isinstance(action, dict):
            self.push(tw.message("error", {"message": "invalid syntax: expected a JSON object"}))
            return
        credentials = tw.credentials(action)
        if credentials is not None or action.get("action") in ("authenticate", "auth"):
            self._authenticate(credentials, str(action.get("action")))
            return
        streams = tw.listened(action)
        if streams is None:
            self.push(tw.message("error", {"message": f"invalid action: {str(action.get('action'))[:64]!r}"}))
        elif not self.authorized:
            self.push(tw.authorization(False, "listen", "not authenticated"))
            self._queue.put_nowait(None)
        else:
            self.listening = tw.STREAM in streams
            self.push(tw.listening([s for s in streams if s == tw.STREAM]))
            if self.listening:
                self.desk.listened()

    def _authenticate(self, credentials: tuple[str, str] | None, action: str) -> None:
        config = self.desk.config
        if credentials is None or (config.key is not None and credentials != (config.key, config.secret)):
            self.push(tw.authorization(False, action, "access key verification failed"))
            self._queue.put_nowait(None)
            return
        self.authorized = True
        self.push(tw.authorization(True, action))
        self.desk.notify()
