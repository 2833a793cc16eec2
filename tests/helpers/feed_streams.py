"""What the tests of a feed's stream on the API share (``WS /v1beta3/crypto/us``, ``WS /v1beta1/opra`` ...):
its URL, its symbols listed as the feed's producer lists them, and alpaca-py's own client of it.

The fixtures built on these (``feed_api``, ``live``, ``listed``) are in ``tests/api/conftest.py``; a test
module names its feed by overriding the ``feed`` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import msgpack
import redis

from tests.helpers.api import ApiServer
from tests.helpers.crypto_live import unique_pair
from tests.helpers.options_live import unique_contract
from tickpipe.feeds import CRYPTO, OPTIONS, Feed
from tickpipe.names import SYMBOLS_KEY, latest_hash, qualified

#: A symbol of the feed no other test uses, by feed name.
UNIQUE: dict[str, Callable[[], str]] = {CRYPTO.name: unique_pair, OPTIONS.name: unique_contract}


def stream_url(server: ApiServer, path: str) -> str:
    """``ws://127.0.0.1:PORT{path}``: a feed's stream on the API (``Feed.stream_path`` or another of its paths)."""
    return f"ws://127.0.0.1:{server.port}{path}"


def symbols_key(feed: Feed) -> str:
    """Where the feed's producer lists its run-time symbols: a symbol there exists for the API's directory."""
    return qualified(SYMBOLS_KEY, feed.qualifier)


@contextlib.contextmanager
def listed_symbols(redis_url: str, feed: Feed) -> Iterator[Callable[[], str]]:
    """Makes unique symbols of the feed that its producer lists, so the stream subscribes them in Redis at once;
    afterwards they are unlisted and their snapshots forgotten (the session's Redis is shared)."""
    client = redis.Redis.from_url(redis_url)
    made: list[str] = []

    def make() -> str:
        symbol = UNIQUE[feed.name]()
        client.sadd(symbols_key(feed), symbol)
        made.append(symbol)
        return symbol

    try:
        yield make
    finally:
        if made:
            client.srem(symbols_key(feed), *made)
            for family in feed.families:
                client.hdel(latest_hash(feed.word(family.name)), *made)
        client.close()


class AlpacaStream(Protocol):
    """What of alpaca-py's data streams (``CryptoDataStream``, ``OptionDataStream``) the tests drive."""

    async def _run_forever(self) -> None: ...

    async def close(self) -> None: ...


@contextlib.asynccontextmanager
async def alpaca_stream(
    make: Callable[..., Any], url: str, subscribe: Callable[[Any, Any], None]
) -> AsyncIterator[list[Any]]:
    """alpaca-py's stream ``make`` (its class) at ``url``, subscribed by ``subscribe(stream, handler)``, running
    its own loop (``_run_forever``, what ``run()`` drives) in this event loop; what its handler received."""
    received: list[Any] = []

    async def handler(message: Any) -> None:
        received.append(message)

    stream: AlpacaStream = make("any-key", "any-secret", url_override=url)
    subscribe(stream, handler)
    task = asyncio.create_task(stream._run_forever())
    try:
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await stream.close()


def stamp(ns: int) -> Any:
    """A time as alpaca-py's models hold it (msgpack's Timestamp to a datetime: microseconds)."""
    return msgpack.Timestamp.from_unix_nano(ns).to_datetime()
