"""A bare Redis connection for the live path: one socket write per batch of commands.

redis-py's pipeline spends microseconds per command packing it and parsing
its reply; at tens of thousands of PUBLISH per second that is the whole CPU
budget. Here the live sink packs RESP itself (channel prefixes cached) and
this connection only writes the batch and counts the replies with hiredis'
C reader. AUTH and SELECT come from the URL, as redis-py reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url


class RedisReplyError(Exception):
    """Redis answered a command with an error (wrong type, no permission...)."""


def pack(*parts: bytes) -> bytes:
    """One RESP command: ``pack(b"PUBLISH", channel, payload)``."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class RespConnection:
    """Write a batch of packed commands, then read exactly as many replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()
        self.last_error: str | None = None

    @classmethod
    async def open(cls, url: str, timeout: float = 5.0) -> RespConnection:
        options: dict[str, Any] = dict(parse_url(url))
        async with asyncio.timeout(timeout):
            if "path" in options:
                reader, writer = await asyncio.open_unix_connection(options["path"])
            else:
                tls = ssl.create_default_context() if options.get("connection_class") is SSLConnection else None
                reader, writer = await asyncio.open_connection(options["host"], options.get("port", 6379), ssl=tls)
            conn = cls(reader, writer)
            try:
                setup = []
                if options.get("password"):
                    user = options.get("username")
                    args = (user.encode(), options["password"].encode()) if user else (options["password"].encode(),)
                    setup.append(pack(b"AUTH", *args))
                if options.get("db"):
                    setup.append(pack(b"SELECT", str(options["db"]).encode()))
                if setup:
                    await conn.execute(b"".join(setup), len(setup), raise_errors=True)
            except BaseException:
                await conn.close()
                raise
        return conn

    async def execute(self, payload: bytes, replies: int, *, raise_errors: bool = False) -> int:
        """Send ``payload`` (``replies`` commands) and wait for every reply; return how many were errors."""
        self._writer.write(payload)
        await self._writer.drain()
        errors = 0
        first_error: Any = None
        parser, reader = self._parser, self._reader
        while replies:
            reply = parser.gets()
            if reply is False:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionResetError("Redis closed the connection")
                parser.feed(data)
                continue
            replies -= 1
            if isinstance(reply, hiredis.ReplyError):
                errors += 1
                first_error = first_error or reply
        if first_error is not None:
            self.last_error = str(first_error)
            if raise_errors:
                raise RedisReplyError(self.last_error)
        return errors

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._writer.wait_closed()
