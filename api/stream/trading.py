"""``WS /stream``: the account's order updates in the trading stream's dialect, for alpaca-py's ``TradingStream``.

As Alpaca's paper and live trading streams (:mod:`tickpipe.trading_wire`):
binary frames of one JSON object each; ``authenticate`` (or ``auth``) first,
answered ``authorized``, or ``unauthorized`` then closed (1008); ``listen``
to ``trade_updates``, answered ``listening``; then every update the order
updates producer publishes (Redis channels ``trade_updates:{SYMBOL}``), as
Alpaca sent it.

Order updates are private to the account, so this path serves them only to a
key allowed to see them (``tickpipe keys add NAME --trade-updates``, scope
``trade_updates``), whatever TICKPIPE_API_AUTH says: with auth off or on a
loopback without keys, every client is ``unauthorized`` here, because a stream
of the account's orders open to whoever reaches the port is never what was
meant. A key without the scope is ``unauthorized`` too, with a message saying
why; each stream counts against its key's connections, and a revoked key's
streams are closed. A client that does not authenticate within WS_AUTH_TIMEOUT_S,
sends a frame above WS_MAX_FRAME_BYTES or falls WS_CLIENT_QUEUE_SIZE updates
behind is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from api.auth import ApiKey
from tickpipe import trading_wire as tw
from tickpipe.feeds import TRADE_UPDATES_FEED
from tickpipe.names import channel

if TYPE_CHECKING:
    from api.state import ApiState

log = logging.getLogger(__name__)

#: The scope a key needs (``api_keys.scopes``, migration 0008).
SCOPE: Final = "trade_updates"
POLICY_VIOLATION: Final = 1008
MESSAGE_TOO_BIG: Final = 1009
#: Every symbol's channel of the order updates: ``trade_updates:*``.
PATTERN: Final = channel(TRADE_UPDATES_FEED.word(TRADE_UPDATES_FEED.families[0].name), "*")


class TradingSession:
    """One client of ``/stream``, from its authentication to its close."""

    def __init__(self, websocket: WebSocket, api: ApiState) -> None:
        self.ws = websocket
        self.api = api
        self.key: ApiKey | None = None
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(api.settings.ws_client_queue_size)
        self.listening = False
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        await self.ws.accept()
        keys = self.api.keys
        try:
            if await self._authenticate():
                await self._serve()
        except WebSocketDisconnect:
            pass
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.key is not None:
                await keys.detach(self.key, self)
            if self.ws.application_state is not WebSocketState.DISCONNECTED:
                with contextlib.suppress(Exception):
                    await self.ws.close(POLICY_VIOLATION if self.key is None else 1000)

    async def _receive(self) -> dict[str, Any] | None:
        """The client's next message as an object; None for one that is not (answered with an error)."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        raw = message.get("bytes") or message.get("text") or b""
        if len(raw) > self.api.settings.ws_max_frame_bytes:
            await self.ws.close(MESSAGE_TOO_BIG, "message too big")
            raise WebSocketDisconnect(MESSAGE_TOO_BIG)
        try:
            action = orjson.loads(raw)
        except orjson.JSONDecodeError:
            action = None
        if not isinstance(action, dict):
            await self.ws.send_bytes(tw.message("error", {"message": "invalid syntax: expected a JSON object"}))
            return None
        return action

    async def _refuse(self, action: str, why: str) -> bool:
        await self.ws.send_bytes(tw.authorization(False, action, why))
        return False

    async def _authenticate(self) -> bool:
        """Wait for the key (WS_AUTH_TIMEOUT_S); True once one allowed to see order updates is attached."""
        try:
            async with asyncio.timeout(self.api.settings.ws_auth_timeout_s):
                action = None
                while action is None:
                    action = await self._receive()
        except TimeoutError:
            return await self._refuse("authenticate", "authentication timeout")
        name = str(action.get("action"))[:32]
        credentials = tw.credentials(action)
        if credentials is None:
            return await self._refuse(name, "expected authenticate with data.key_id and data.secret_key first")
        keys = self.api.keys
        key = await keys.verify(*credentials)
        if key is None:
            return await self._refuse(name, "access key verification failed")
        if SCOPE not in key.scopes:
            return await self._refuse(
                name, "this key may not see order updates (tickpipe keys add NAME --trade-updates makes one that may)"
            )
        if not await keys.attach(key, self, self._revoked):
            return await self._refuse(name, f"connection limit exceeded: at most {key.max_connections} for this key")
        self.key = key
        await self.ws.send_bytes(tw.authorization(True, name))
        return True

    def _revoked(self) -> None:
        """The key was revoked: the stream ends."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    async def _serve(self) -> None:
        self._tasks.append(asyncio.create_task(self._write(), name="trading-writer"))
        while True:
            action = await self._receive()
            if action is None:
                continue
            streams = tw.listened(action)
            if streams is None:
                detail = f"expected listen with data.streams, got action {str(action.get('action'))[:32]!r}"
                await self.ws.send_bytes(tw.message("error", {"message": detail}))
                continue
            await self._listen(streams)

    async def _listen(self, streams: list[str]) -> None:
        wanted = tw.STREAM in streams
        configured = TRADE_UPDATES_FEED in self.api.settings.feeds
        if wanted and not configured:
            error = (
                f"the trade_updates feed is not configured on this API "
                f"(ALPACA_FEEDS={','.join(self.api.settings.alpaca_feeds)}); add it to ALPACA_FEEDS to stream it here"
            )
            await self.ws.send_bytes(tw.listening([], error))
            return
        if wanted and not self.listening:
            ready = asyncio.get_running_loop().create_future()
            self._tasks.append(asyncio.create_task(self._forward(ready), name="trading-updates"))
            await ready  # subscribed in Redis before the client hears it listens: it misses nothing after
        self.listening = wanted
        await self.ws.send_bytes(tw.listening([tw.STREAM] if wanted else []))

    async def _forward(self, ready: asyncio.Future[None]) -> None:
        """Every order update published in Redis to the client's queue; a client too far behind is closed."""
        pubsub = self.api.redis.pubsub()
        try:
            await pubsub.psubscribe(PATTERN)
            ready.set_result(None)
            async for message in pubsub.listen():
                if message.get("type") != "pmessage" or not self.listening:
                    continue
                try:
                    self.queue.put_nowait(tw.update_frame(message["data"]))
                except asyncio.QueueFull:
                    log.warning(
                        "trade updates: a client of key %s fell behind; closing it", self.key and self.key.key_id
                    )
                    self.queue.get_nowait()
                    self.queue.put_nowait(None)
                    return
        finally:
            if not ready.done():
                ready.set_result(None)
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _write(self) -> None:
        while (frame := await self.queue.get()) is not None:
            await self.ws.send_bytes(frame)
        await self.ws.close(POLICY_VIOLATION)


async def trading_endpoint(websocket: WebSocket) -> None:
    """``WS /stream``: see the module docstring."""
    await TradingSession(websocket, websocket.app.state.api).run()
