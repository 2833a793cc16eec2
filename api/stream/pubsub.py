"""One Redis pub/sub connection that survives Redis restarts and parses whole bursts at once.

Why not redis-py's ``PubSub``: its asyncio reader parses one message per
await, and the fan-out needs every message a socket read brought in, parsed
by hiredis in one go (a few µs each) before the client senders run. It also
keeps the reconnect policy here, where the hub needs it: the wanted channels
and patterns are the state, and every (re)connection subscribes to all of them.

Reconnects wait on :class:`tickpipe.backoff.EqualJitterBackoff` from
``RECONNECT_BASE_S`` up to ``reconnect_max``, so API processes restarted
together do not reconnect to a recovering Redis in step.

Liveness: a PING every ``ping_interval`` (answered even in subscribed mode);
no bytes for three intervals and the connection is dropped and re-made, so a
silently dead Redis is noticed, not waited on forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Final

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url

from tickpipe.backoff import EqualJitterBackoff

log = logging.getLogger(__name__)

OnMessage = Callable[[bytes, bytes, bytes | None], None]  # channel, data, pattern (None: a plain channel)
_CHUNK: Final = 500  # names per SUBSCRIBE command
#: First wait before reconnecting (doubling, jittered, up to ``reconnect_max``).
RECONNECT_BASE_S: Final = 0.05


def command(*args: bytes) -> bytes:
    """One RESP command."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(parts)


class RedisSubscriber:
    """The channels and patterns wanted, kept subscribed on one connection whenever Redis answers."""

    def __init__(
        self,
        url: str,
        on_message: OnMessage,
        *,
        on_state: Callable[[bool], None] | None = None,
        ping_interval: float = 5.0,
        connect_timeout: float = 5.0,
        reconnect_max: float = 2.0,
    ) -> None:
        self._target: dict[str, Any] = dict(parse_url(url))
        self._on_message = on_message
        self._on_state = on_state
        self.ping_interval = ping_interval
        self.connect_timeout = connect_timeout
        self.reconnect_max = reconnect_max
        self.backoff = EqualJitterBackoff.up_to(reconnect_max, base=RECONNECT_BASE_S)
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.connected = False
        self.connections = 0  # successful connections so far
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[tuple[bytes, bytes], list[asyncio.Future[bool]]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_data = 0.0

    # --- what the hub calls ---------------------------------------------------------------------
    async def subscribe(self, names: Iterable[bytes], *, pattern: bool = False, timeout: float = 2.0) -> bool:
        """Want these channels (or patterns); True once Redis confirmed them all, False if it is down.

        Names already wanted and confirmed cost nothing; names still awaiting
        Redis's confirmation (another caller asked first) are waited for too.
        Never raises: while Redis is down the names are remembered and
        subscribed on reconnection.
        """
        kind = b"psubscribe" if pattern else b"subscribe"
        wanted = self.patterns if pattern else self.channels
        names = list(names)
        new = [name for name in names if name not in wanted]
        unconfirmed = [name for name in names if name in wanted and (kind, name) in self._waiting]
        wanted.update(new)
        if self._writer is None:
            return False
        if not new and not unconfirmed:
            return True
        loop = asyncio.get_running_loop()
        futures = []
        for name in (*new, *unconfirmed):
            future: asyncio.Future[bool] = loop.create_future()
            self._waiting.setdefault((kind, name), []).append(future)
            futures.append(future)
        if new:
            self._send(kind.upper(), new)
        try:
            async with asyncio.timeout(timeout):
                return all(await asyncio.gather(*futures))
        except TimeoutError:
            return False

    def unsubscribe(self, names: Iterable[bytes], *, pattern: bool = False) -> None:
        wanted = self.patterns if pattern else self.channels
        gone = [name for name in names if name in wanted]
        wanted.difference_update(gone)
        if gone and self._writer is not None:
            self._send(b"PUNSUBSCRIBE" if pattern else b"UNSUBSCRIBE", gone)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-subscriber")

    async def stop(self) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- the connection ---------------------------------------------------------------------------
    def _send(self, verb: bytes, names: list[bytes]) -> None:
        assert self._writer is not None
        for first in range(0, len(names), _CHUNK):
            self._writer.write(command(verb, *names[first : first + _CHUNK]))

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        target = self._target
        if "path" in target:
            return await asyncio.open_unix_connection(target["path"])
        tls = ssl.create_default_context() if target.get("connection_class") is SSLConnection else None
        return await asyncio.open_connection(target.get("host", "localhost"), target.get("port", 6379), ssl=tls)

    async def _run(self) -> None:
        failures = 0  # in a row, since the last connection that got through
        while not self._stop.is_set():
            try:
                await self._session()
            except (OSError, EOFError, TimeoutError, hiredis.ProtocolError, ConnectionError) as exc:
                level = logging.WARNING if self.connected or self.connections == 0 else logging.DEBUG
                log.log(level, "Redis subscriber connection lost or refused (%s); retrying", exc or type(exc).__name__)
            finally:
                failures = 1 if self.connected else failures + 1
                self._disconnected()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.backoff.compute(failures)):
                    await self._stop.wait()

    async def _session(self) -> None:
        async with asyncio.timeout(self.connect_timeout):
            reader, writer = await self._open()
        parser = hiredis.Reader()
        try:
            password, username = self._target.get("password"), self._target.get("username")
            if password:
                auth = [username.encode(), password.encode()] if username else [password.encode()]
                writer.write(command(b"AUTH", *auth))
                async with asyncio.timeout(self.connect_timeout):
                    while (reply := parser.gets()) is False:
                        parser.feed(await reader.read(4096) or b"")
                if isinstance(reply, hiredis.ReplyError):
                    raise ConnectionError(f"Redis refused AUTH: {reply}")
            self._writer = writer
            if self.channels:
                self._send(b"SUBSCRIBE", sorted(self.channels))
            if self.patterns:
                self._send(b"PSUBSCRIBE", sorted(self.patterns))
            self.connected = True
            self.connections += 1
            if self._on_state is not None:
                self._on_state(True)
            if self.connections > 1:
                log.info(
                    "Redis subscriber reconnected; %d channels, %d patterns", len(self.channels), len(self.patterns)
                )
            await self._read(reader, parser, writer)
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader, parser: hiredis.Reader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        self._last_data = loop.time()
        watchdog = asyncio.create_task(self._watchdog(writer))
        try:
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                self._last_data = loop.time()
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    self._on_reply(reply)
        finally:
            watchdog.cancel()

    def _on_reply(self, reply: Any) -> None:
        if type(reply) is list:
            kind = reply[0]
            if kind == b"message":
                self._on_message(reply[1], reply[2], None)
            elif kind == b"pmessage":
                self._on_message(reply[2], reply[3], reply[1])
            elif kind in (b"subscribe", b"psubscribe"):
                for future in self._waiting.pop((kind, reply[1]), ()):
                    if not future.done():
                        future.set_result(True)
        elif isinstance(reply, hiredis.ReplyError):
            log.warning("Redis subscriber got an error reply: %s", reply)

    async def _watchdog(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ping_interval)
            if loop.time() - self._last_data > 3 * self.ping_interval:
                log.warning("Redis subscriber heard nothing for %.0f s; reconnecting", 3 * self.ping_interval)
                writer.transport.abort()
                return
            writer.write(command(b"PING"))

    def _disconnected(self) -> None:
        was = self.connected
        self._writer = None
        self.connected = False
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(False)
        self._waiting.clear()
        if was and self._on_state is not None:
            self._on_state(False)
