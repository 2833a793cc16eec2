"""The one upstream connection: Alpaca's stream v2 (or the simulator), kept alive for months.

A small client of our own rather than alpaca-py's ``StockDataStream``, whose
``run()`` owns the event loop, whose subscribe-after-start blocks on that
loop, which awaits each handler inside its read loop and reconnects after a
406 with no pause. Here:

- the read loop only decodes and hands events to a :class:`FrameSink`
  (synchronous, non-blocking): it never awaits Redis, Kafka or the disk;
- explicit states, each change logged in one line;
- reconnects back off exponentially with jitter; a 406 (connection limit)
  waits long enough for Alpaca to drop the old connection; a 402 (auth
  failed) or 409 (feed not in the plan) stops with :class:`UpstreamAuthError`;
- a connection silent longer than ``silence_timeout`` is dropped and redialled;
- symbols change at run time with subscribe/unsubscribe on the open connection.

The socket is a seam (:mod:`producer.source`), so the state machine can be
driven by a scripted connection in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, WebSocketException

from producer.errors import describe
from producer.source import (
    Connection,
    Connector,
    FrameSink,
    Reconnect,
    UpstreamOptions,
    UpstreamState,
    websocket_connector,
)
from producer.transcode import Transcode, transcode_frame
from tickpipe.backoff import EqualJitterBackoff
from tickpipe.codecs import Rejected
from tickpipe.errors import DecodeError, UpstreamAuthError
from tickpipe.feeds import TRADING

log = logging.getLogger(__name__)


class UpstreamClient:
    """One connection at a time, redialled until :meth:`stop` or a fatal refusal."""

    def __init__(
        self,
        options: UpstreamOptions,
        symbols: Callable[[], Sequence[str]],
        sink: FrameSink,
        connector: Connector = websocket_connector,
        transcode: Transcode = transcode_frame,
    ) -> None:
        self.options = options
        self.transcode = transcode  # the feed's (:func:`producer.transcode.transcoder_for`)
        self.backoff = EqualJitterBackoff.up_to(options.reconnect_max, base=options.reconnect_min)
        self.symbols = symbols
        self.sink = sink
        self.connector = connector
        self.state = UpstreamState.IDLE
        self.events = 0  # data messages decoded, all connections
        self.frames = 0
        self.reconnects: Counter[str] = Counter()
        self.subscription: dict[str, list[str]] = {}
        self.last_frame_at = 0.0  # loop time
        self.last_error: str | None = None
        self._conn: Connection | None = None
        self._stop = asyncio.Event()
        self._data_seen = False
        self._close_cause: str | None = None
        self._max_events: int | None = None
        self._cause = "restart"  # why the previous connection ended (the first follows our own start), for on_connect
        #: Called with that cause when a connection is open (the gap tracker's cue).
        self.on_connect: Callable[[str], None] | None = None

    # --- control ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading: the current frame is finished, the connection closed, :meth:`run` returns."""
        self._stop.set()

    async def stopped(self) -> None:
        """Return once :meth:`stop` was called."""
        await self._stop.wait()

    @property
    def authenticated(self) -> bool:
        return self.state in (UpstreamState.SUBSCRIBING, UpstreamState.STREAMING)

    async def subscribe(self, symbols: Sequence[str]) -> None:
        await self._change("subscribe", symbols)

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        await self._change("unsubscribe", symbols)

    async def _change(self, action: str, symbols: Sequence[str]) -> None:
        """Change the subscription on the open connection (a new one subscribes to the whole list)."""
        conn = self._conn
        if conn is None or not self.authenticated or not symbols or "*" in self.symbols():
            return
        message = {"action": action, **{channel: list(symbols) for channel in self.options.channels}}
        log.info("upstream: %s %s", action, ", ".join(symbols))
        with contextlib.suppress(ConnectionClosed):
            await conn.send(msgpack.packb(message))

    # --- the loop ---------------------------------------------------------------------------
    async def run(self, max_events: int | None = None) -> None:
        """Read until :meth:`stop`, ``max_events`` data messages, or a fatal refusal (raised)."""
        self._max_events = max_events
        attempt = 0
        while not self._stop.is_set():
            session = asyncio.create_task(self._session(), name="upstream-session")
            stopper = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait([session, stopper], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
            if not session.done():
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await session
                break
            try:
                session.result()
                if self._stop.is_set() or self._done():
                    break
                cause = self._close_cause or "closed"
            except UpstreamAuthError as exc:
                self.last_error = str(exc)
                self._set(UpstreamState.FAILED, str(exc), level=logging.ERROR)
                raise
            except Reconnect as exc:
                cause = exc.cause
                self.last_error = str(exc)
            except ConnectionClosed as exc:
                cause = self._close_cause or "closed"
                self.last_error = f"connection closed: {exc}"
            except TimeoutError:
                if self.state is UpstreamState.STREAMING:
                    cause, self.last_error = "silence", f"no frame for {self.options.silence_timeout:g} s"
                else:
                    cause, self.last_error = "handshake", f"no answer while {self.state}"
                    cause = "connect" if self.state is UpstreamState.CONNECTING else cause
            except (OSError, EOFError, InvalidHandshake) as exc:
                cause = "connect"
                self.last_error = describe(exc)
            except WebSocketException as exc:  # a protocol violation on an open connection
                cause = "protocol"
                self.last_error = describe(exc)
            self.reconnects[cause] += 1
            self._cause = cause
            attempt = 1 if self._data_seen else attempt + 1
            delay = self.options.conn_limit_wait if cause == "connection_limit" else self.backoff.compute(attempt)
            self._set(UpstreamState.BACKOFF, f"{cause} ({self.last_error}); reconnecting in {delay:.1f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        self._set(UpstreamState.STOPPED, f"{self.events} events read")

    def _done(self) -> bool:
        return self._max_events is not None and self.events >= self._max_events

    async def _session(self) -> None:
        options = self.options
        self._data_seen = False
        self._close_cause = None
        self._set(UpstreamState.CONNECTING, options.url)
        async with asyncio.timeout(options.handshake_timeout):
            conn = await self.connector(options.url)
        self._conn = conn
        if self.on_connect is not None:
            self.on_connect(self._cause)
        try:
            await self._handshake(conn)
            await self._read(conn)
        finally:
            self._conn = None
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(3):
                    await conn.close()

    async def _handshake(self, conn: Connection) -> None:
        if self.options.dialect == TRADING:
            await self._listen(conn)
        else:
            await self._subscribe(conn)

    async def _listen(self, conn: Connection) -> None:
        """The trading stream's handshake: authenticate at once (it greets nobody), then listen.

        Its answers reach here in the market-data stream's words (:mod:`producer.trading_transcode`):
        ``unauthorized`` is a 402 (not retried); the ``listening`` answer sets the state to streaming.
        """
        options = self.options
        self._set(UpstreamState.AUTHENTICATING)
        auth = {"action": "authenticate", "data": {"key_id": options.key, "secret_key": options.secret}}
        await conn.send(orjson.dumps(auth).decode())
        reply = await self._control(conn)
        if reply.get("T") == "error":
            self._refused(reply)
        if reply.get("T") != "success" or reply.get("msg") != "authenticated":
            raise Reconnect("handshake", f"expected 'authorized', got {reply}")
        self._set(UpstreamState.SUBSCRIBING, f"listening to {', '.join(options.channels)}")
        await conn.send(orjson.dumps({"action": "listen", "data": {"streams": list(options.channels)}}).decode())

    async def _subscribe(self, conn: Connection) -> None:
        """The market-data streams' handshake: ``connected``, auth, then subscribe to the symbols."""
        options = self.options
        self._set(UpstreamState.AUTHENTICATING)
        first = await self._control(conn)
        if first.get("T") != "success" or first.get("msg") != "connected":
            raise Reconnect("handshake", f"expected the 'connected' message, got {first}")
        await conn.send(msgpack.packb({"action": "auth", "key": options.key, "secret": options.secret}))
        reply = await self._control(conn)
        if reply.get("T") == "error":
            self._refused(reply)
        if reply.get("T") != "success" or reply.get("msg") != "authenticated":
            raise Reconnect("handshake", f"expected 'authenticated', got {reply}")
        symbols = list(self.symbols())
        self._set(UpstreamState.SUBSCRIBING, f"{len(symbols)} symbols on {', '.join(options.channels)}")
        if symbols:
            message = {"action": "subscribe", **{channel: symbols for channel in options.channels}}
            await conn.send(msgpack.packb(message))
        else:
            self._set(UpstreamState.STREAMING, "no symbols to subscribe yet")

    async def _control(self, conn: Connection) -> dict[str, Any]:
        """The next control message of the handshake (data met on the way is passed on)."""
        while True:
            async with asyncio.timeout(self.options.handshake_timeout):
                frame = await conn.recv()
            controls = self._handle(frame)
            if controls:
                return controls[0]

    def _refused(self, error: dict[str, Any]) -> None:
        code, message = error.get("code"), error.get("msg", "")
        if code in (402, 409):
            hint = "check ALPACA_API_KEY and ALPACA_API_SECRET" if code == 402 else "choose a feed the plan includes"
            raise UpstreamAuthError(f"upstream refused us: {code} {message}; {hint} (not retrying)")
        if code == 406:
            log.warning(
                "upstream: 406 %s: another connection may be using this Alpaca account (one stream "
                "connection is allowed); waiting %g s for Alpaca to drop the old one",
                message, self.options.conn_limit_wait,
            )  # fmt: skip
            raise Reconnect("connection_limit", f"406 {message}")
        raise Reconnect("auth_timeout" if code == 404 else "server_error", f"{code} {message}")

    async def _read(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        silence = self.options.silence_timeout
        async with asyncio.timeout(silence) as deadline:
            while not self._done():
                frame = await conn.recv()
                self.last_frame_at = now = loop.time()
                when = deadline.when()
                if when is not None and when - now < silence * 0.75:  # so it moves at most every silence/4
                    deadline.reschedule(now + silence)
                for control in self._handle(frame):
                    self._on_control(control)
                await asyncio.sleep(0)  # recv() does not yield while frames are queued: let the sinks run

    def _handle(self, frame: bytes | str) -> list[dict[str, Any]]:
        """Decode one frame, hand its events and rejects to the sink, return its control messages."""
        received_at = time.time_ns()
        self.frames += 1
        try:
            out = self.transcode(frame, received_at)
        except DecodeError as exc:
            raw = frame.encode() if isinstance(frame, str) else bytes(frame)
            self.sink.on_rejected([Rejected(raw, exc)])
            return []
        if out.events:
            self.events += len(out.events)
            self._data_seen = True
            self.sink.on_events(out.events, received_at)
        if out.rejected:
            self.sink.on_rejected(out.rejected)
        return out.control

    def _on_control(self, message: dict[str, Any]) -> None:
        kind = message.get("T")
        if kind == "subscription":
            self.subscription = {k: v for k, v in message.items() if k != "T" and isinstance(v, list)}
            summary = ", ".join(f"{k} {len(v)}" for k, v in self.subscription.items() if v)
            self._set(UpstreamState.STREAMING, f"subscribed: {summary or 'nothing'}")
        elif kind == "error":
            code = message.get("code")
            if code == 407:
                self._close_cause = "slow_client"
            log.error("upstream: error %s %s", code, message.get("msg", ""))
            if code in (402, 406, 409):
                self._refused(message)

    def _set(self, state: UpstreamState, detail: str = "", level: int = logging.INFO) -> None:
        previous, self.state = self.state, state
        log.log(level, "upstream: %s -> %s%s", previous, state, f" ({detail})" if detail else "")
