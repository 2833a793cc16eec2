"""``WS /v2/stream`` (and each other feed's path, ``/v1beta3/crypto/us``): one client session of Alpaca's
stream protocol, with explicit states.

States (as starlette's ``WebSocketState``, one step further)::

    CONNECTING -> UNAUTHENTICATED -> AUTHENTICATED -> CLOSING -> CLOSED
                        \\__________________________/

One task per session receives the client's actions, in order. What the
client is sent waits in its outbox (:mod:`api.stream.outbox`) and is written
by the process's flusher (:mod:`api.stream.flusher`), straight to the socket
when the server offers it (:mod:`api.stream.direct`), else through ASGI by a
second task. The session ends when a task ends or when it decides to close
(auth failed or timed out, slow client); whatever happened, it always
unregisters from the hub and closes, 1011 on an unexpected error, as
starlette's receive loop always ends in ``on_disconnect``.

Each feed's path has its own endpoint (:func:`endpoint_for`), the same session over that feed's channels
(:class:`~api.stream.protocol.FeedChannels`). A feed ALPACA_FEEDS does not name is not carried, so its
path greets, then answers the client's first message (its auth, where alpaca-py reports it) with 409
(Alpaca's "insufficient subscription") saying why, and closes; so it does at the auth timeout.

A feed whose upstream speaks only some encodings (``Feed.encodings``: the option stream, msgpack only)
refuses a client of another as Alpaca does: error 412 instead of the greeting, then the close (1003,
"unsupported data"), before anything else is looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from api.auth import KEY_HEADER, SECRET_HEADER, ApiKey
from api.stream import protocol as p
from api.stream.direct import EXTENSION, DirectFrames
from api.stream.hub import ChannelLimit
from api.stream.outbox import FRAME_EVENTS, AsgiSink, Outbox
from api.stream.snapshots import latest_events, newer_than
from tickpipe.codecs import encode_wire_msgpack

if TYPE_CHECKING:
    from api.state import ApiState

log = logging.getLogger(__name__)

#: How long a closing session waits for a (slow) client to take its last error message and close frame.
CLOSE_TIMEOUT_S: Final = 10.0
POLICY_VIOLATION: Final = 1008
#: RFC 6455's "unsupported data": a client of an encoding the feed does not speak (412).
UNSUPPORTED_DATA: Final = 1003
#: RFC 6455's "message too big": a client frame above WS_MAX_FRAME_BYTES.
MESSAGE_TOO_BIG: Final = 1009
INTERNAL_ERROR: Final = 1011
CLOSE_REASONS: Final = {MESSAGE_TOO_BIG: "message too big"}


def json_events(payloads: list[bytes]) -> bytes:
    """Event payloads (each already Alpaca's JSON object) as one JSON frame."""
    return b"[" + b",".join(payloads) + b"]"


def msgpack_events(payloads: list[bytes]) -> bytes:
    """Event payloads as one msgpack frame, for clients that asked for msgpack."""
    return encode_wire_msgpack([orjson.loads(payload) for payload in payloads])


class SessionState(Enum):
    CONNECTING = "connecting"
    UNAUTHENTICATED = "unauthenticated"
    AUTHENTICATED = "authenticated"
    CLOSING = "closing"
    CLOSED = "closed"


def endpoint_for(channels: p.FeedChannels) -> Callable[[WebSocket], Awaitable[None]]:
    """The WebSocket endpoint of one feed's path: Alpaca's stream protocol over that feed's Redis channels."""

    async def endpoint(websocket: WebSocket) -> None:
        await StreamSession(websocket, websocket.app.state.api, channels).run()

    endpoint.__name__ = f"{channels.feed.name}_stream"
    return endpoint


#: The stock feed's endpoint (``/v2/stream``).
stream_endpoint = endpoint_for(p.STOCK_CHANNELS)


def not_configured(feed_name: str, configured: list[str]) -> str:
    """Why a feed's path serves nothing: ALPACA_FEEDS does not name it."""
    return (
        f"the {feed_name} feed is not configured on this API (ALPACA_FEEDS={','.join(configured)}); "
        f"add it to ALPACA_FEEDS to stream it here"
    )


class StreamSession:
    def __init__(self, websocket: WebSocket, api: ApiState, channels: p.FeedChannels = p.STOCK_CHANNELS) -> None:
        self.ws = websocket
        self.api = api
        self.channels = channels
        self.state = SessionState.CONNECTING
        self.subs = p.Subscriptions(channels)
        self.msgpack = "msgpack" in websocket.headers.get("content-type", "").lower()
        #: Whether the client speaks an encoding the feed does not (a JSON client of the option stream).
        self._wrong_encoding = ("msgpack" if self.msgpack else "json") not in channels.encodings
        self._events_frame = msgpack_events if self.msgpack else json_events
        self.outbox = Outbox(
            api.settings.ws_client_queue_size,
            lambda: self.finish(p.Code.SLOW_CLIENT),
            api.hub.flusher,
            self._events_frame,
            max_bytes=api.settings.ws_client_queue_bytes,
        )
        self._direct: DirectFrames | None = None
        self._verdict: asyncio.Future[p.Code | None] = asyncio.get_running_loop().create_future()
        self._close_code = POLICY_VIOLATION  # the close code that goes with the verdict
        self._detail = ""  # what the verdict's error message says besides Alpaca's text
        feed = channels.feed.name
        #: Why this path serves nothing (its feed is not configured), else None.
        self._refusal: str | None = None
        if feed not in {configured.name for configured in api.settings.feeds}:
            self._refusal = not_configured(feed, api.settings.alpaca_feeds)
        self._auth_timer: asyncio.TimerHandle | None = None
        self._max_frame = api.settings.ws_max_frame_bytes
        self.key: ApiKey | None = None  # the key it authenticated with, while auth is required

    # --- life cycle ---------------------------------------------------------------------------------
    async def run(self) -> None:
        metrics = self.api.metrics
        tasks: list[asyncio.Task[None]] = []
        close_code: int | None = 1000
        verdict: p.Code | None = None
        await self.ws.accept()
        metrics.ws_clients.inc()
        self.state = SessionState.UNAUTHENTICATED
        self._auth_timer = auth_timer = asyncio.get_running_loop().call_later(
            self.api.settings.ws_auth_timeout_s, self._refuse if self._refusal else self.finish, p.Code.AUTH_TIMEOUT
        )
        try:
            if self._wrong_encoding:  # no greeting: the error, then the close, as Alpaca does
                self.finish(p.Code.WRONG_ENCODING, UNSUPPORTED_DATA, detail=self._encoding_detail())
            else:
                await self._send(self._control_frame([p.CONNECTED]))
                sender = self._attach_sink()
                if sender is not None:
                    tasks.append(asyncio.create_task(sender))
                if self._refusal is None:  # a feed not configured takes no key
                    await self._header_auth()  # before any message is read: an auth message then finds it done
                tasks.append(asyncio.create_task(self._receive()))
            waiting: list[asyncio.Future[Any]] = [*tasks, self._verdict]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            verdict = self._verdict.result() if self._verdict.done() else None
            ended = self._close_code if self._verdict.done() else 1000
            close_code = None if self.state is SessionState.CLOSED else ended
        except WebSocketDisconnect:
            close_code = None
        except Exception:
            log.exception("stream session failed")
            verdict, close_code = p.Code.INTERNAL_ERROR, INTERNAL_ERROR
        finally:
            auth_timer.cancel()
            self.state = SessionState.CLOSING
            self.outbox.closed = True
            if self._direct is not None:
                self._direct.on_writable = None
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            self.api.hub.remove(self.outbox, self._pairs(self.subs.all_pairs()))
            if self.key is not None:
                await self.api.keys.detach(self.key, self)
            metrics.ws_clients.dec()
            await self._close(verdict if close_code is not None else None, close_code)
            self.state = SessionState.CLOSED

    def _encoding_detail(self) -> str:
        spoken = " or ".join(self.channels.encodings)
        return (
            f"the {self.channels.feed.name} stream speaks {spoken} only: connect with the handshake header "
            "Content-Type: application/msgpack"
            if self.channels.encodings == ("msgpack",)
            else f"the {self.channels.feed.name} stream speaks {spoken} only"
        )

    def _attach_sink(self) -> Coroutine[Any, Any, None] | None:
        """Write to the socket directly when uvicorn offers it (and frames are not compressed), else via ASGI.

        Returns the ASGI sender to run as a task, if that is the sink.
        """
        direct = self.ws.scope.get("extensions", {}).get(EXTENSION)
        if isinstance(direct, DirectFrames) and not direct.compressed:
            self._direct = direct
            direct.on_writable = self.outbox.writable_again
            self.outbox.sink = direct.sink(binary=self.msgpack)
            self.api.metrics.stream.direct_sessions += 1
            return None
        self.api.metrics.stream.asgi_sessions += 1
        sink = AsgiSink(self.ws.send, binary=self.msgpack)
        sink.on_writable = self.outbox.writable_again
        self.outbox.sink = sink
        return sink.run()

    def finish(self, code: p.Code | None, close_code: int = POLICY_VIOLATION, *, detail: str = "") -> None:
        """End the session with this error (sent, then the socket closed with ``close_code``); first verdict wins.

        ``code`` None: no error message, only the close (a frame too big has no Alpaca code).
        """
        if not self._verdict.done():
            self._close_code = close_code
            self._detail = detail
            self._verdict.set_result(code)

    async def _close(self, verdict: p.Code | None, code: int | None) -> None:
        if code is None:
            return
        if verdict is not None:
            self.api.metrics.ws_errors.labels(str(int(verdict))).inc()
            if verdict is p.Code.SLOW_CLIENT:
                self.api.metrics.ws_slow_disconnects.inc()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if verdict is not None:
                    await self._send(self._control_frame([p.error(verdict, self._detail)]))
                await self.ws.close(code, p.MESSAGES[verdict] if verdict else CLOSE_REASONS.get(code))

    # --- receiving ------------------------------------------------------------------------------------
    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.state = SessionState.CLOSED
                return
            raw = message.get("text")
            data: str | bytes = raw if raw is not None else message.get("bytes") or b""
            if len(data) > self._max_frame and (isinstance(data, bytes) or len(data.encode()) > self._max_frame):
                # uvicorn refuses such a frame itself (ws_max_size, as `tickpipe api` sets it) before reading
                # it whole; this is for servers that were not told, so the bound holds under any of them.
                self.finish(None, MESSAGE_TOO_BIG)
                return
            await self._handle(data)

    def _refuse(self, _: object = None) -> None:
        """409 saying the feed is not configured here, then the close."""
        self.finish(p.Code.INSUFFICIENT_SUBSCRIPTION, detail=self._refusal or "")

    async def _handle(self, raw: str | bytes) -> None:
        if self._refusal is not None:
            self._refuse()
            return
        try:
            action = p.decode_action(raw, self.channels)
        except p.ProtocolError as exc:
            self._reply(p.error(exc.code, exc.detail))
            return
        if self.state is SessionState.UNAUTHENTICATED:
            if action.kind != "auth":
                self._reply(p.error(p.Code.NOT_AUTHENTICATED))
            else:
                await self._login(action.key, action.secret)
        elif action.kind == "auth":
            self._reply(p.error(p.Code.ALREADY_AUTHENTICATED))
        elif action.kind == "subscribe":
            await self._subscribe(action.streams)
        else:
            self._unsubscribe(action.streams)

    # --- auth -------------------------------------------------------------------------------------------
    async def _login(self, key_id: str, secret: str) -> None:
        """Any key while auth is off (:mod:`api.auth`); else a valid one with a connection to spare.

        A wrong key ends the session with 402, a key at its connection limit with 406; the session of a key
        revoked later is ended with 402 when the keys are next reloaded.
        """
        keys = self.api.keys
        if not keys.required_for(self.ws.scope.get("server")):
            self._authenticated()
            return
        key = await keys.verify(key_id, secret)
        if key is None:
            self.finish(p.Code.AUTH_FAILED)
        elif self._verdict.done():  # ended while the secret was checked (auth timeout)
            return
        elif not await keys.attach(key, self, lambda: self.finish(p.Code.AUTH_FAILED)):
            self.finish(p.Code.CONNECTION_LIMIT_EXCEEDED)
        else:
            self.key = key  # given back when the session ends, even if it ended while the slot was taken
            if not self._verdict.done():
                self._authenticated()

    async def _header_auth(self) -> None:
        """Alpaca also accepts the REST headers at the handshake, so the client need not send auth."""
        key = self.ws.headers.get(KEY_HEADER)
        secret = self.ws.headers.get(SECRET_HEADER)
        if key is not None and secret is not None:
            await self._login(key, secret)

    def _authenticated(self) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        self.state = SessionState.AUTHENTICATED
        self._reply(p.AUTHENTICATED)

    # --- subscriptions ------------------------------------------------------------------------------------
    async def _subscribe(self, streams: dict[str, list[str]]) -> None:
        limit = self.key.max_symbols if self.key is not None else self.api.settings.ws_max_symbols
        after = self.subs.count_after_add(streams)
        if after > limit:
            detail = f"at most {limit} symbols per connection; this subscribe would make {after}"
            self._reply(p.error(p.Code.SYMBOL_LIMIT_EXCEEDED, detail))
            return
        outbox = self.outbox
        outbox.held = True
        mark = len(outbox.pending)
        try:
            added = self.subs.add(streams)
            pairs = self._pairs(added)
            try:
                await self.api.hub.add(outbox, pairs)
            except ChannelLimit as exc:
                self.subs.discard(added)
                self._reply(p.error(p.Code.SYMBOL_LIMIT_EXCEEDED, str(exc)))
                return
            snapshots = await latest_events(self.api.redis, pairs)
            held = outbox.pending[mark:]
            kept = newer_than(snapshots, held)
            if len(kept) < len(held):  # the pending list is rebuilt and recounted only when something goes
                outbox.retain([*outbox.pending[:mark], *kept])
            outbox.push_front(self._control_frame([self.subs.message()]))
            payloads = list(snapshots.values())
            for first in range(0, len(payloads), FRAME_EVENTS):
                outbox.push_front(self._events_frame(payloads[first : first + FRAME_EVENTS]))
        finally:
            outbox.release()

    def _unsubscribe(self, streams: dict[str, list[str]]) -> None:
        self.api.hub.remove(self.outbox, self._pairs(self.subs.remove(streams)))
        self._reply(self.subs.message())

    def _pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[p.Stream, str]]:
        streams = self.channels.streams
        return [(streams[name], symbol) for name, symbol in pairs]

    # --- sending ------------------------------------------------------------------------------------------
    def _reply(self, message: dict[str, Any]) -> None:
        if message.get("T") == "error":
            self.api.metrics.ws_errors.labels(str(message["code"])).inc()
        self.outbox.push_front(self._control_frame([message]))

    def _control_frame(self, messages: list[dict[str, Any]]) -> bytes:
        return encode_wire_msgpack(messages) if self.msgpack else orjson.dumps(messages)

    async def _send(self, frame: bytes) -> None:
        """Through ASGI: the greeting before the sink is attached, the last error before the close."""
        if self.msgpack:
            await self.ws.send({"type": "websocket.send", "bytes": frame})
        else:
            await self.ws.send({"type": "websocket.send", "text": frame.decode()})
