"""Clients for simulator tests: a raw Alpaca-protocol client, alpaca-py on a thread, REST helpers.

``StreamClient`` speaks the protocol over plain ``websockets`` (JSON, or msgpack
when asked), as any non-alpaca-py client would. ``AlpacaThread`` runs the real
alpaca-py ``StockDataStream`` the way ``run()`` does, on a thread with its own
event loop (its subscribe/unsubscribe block on that loop, so it cannot share
the test's), collecting what its handlers receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from simulator import Simulator
from simulator.wire import decode_frame

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.live import StockDataStream
    from alpaca.data.models import Bar, Quote, Trade, TradeCancel, TradeCorrection, TradingStatus

#: alpaca-py's names the tests use, imported here once with its deprecation warning silenced.
__all__ = [
    "Bar",
    "Quote",
    "StockDataStream",
    "StockHistoricalDataClient",
    "Trade",
    "TradeCancel",
    "TradeCorrection",
    "TradingStatus",
]


#: The key headers every REST request of the tests carries (any key is accepted unless the simulator sets one).
KEYS = {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}


CONTROL = ("success", "error", "subscription")


#: What alpaca-py calls with each message: an async function of one argument.
Handler = Callable[[Any], Coroutine[Any, Any, None]]


class StreamClient:
    """A plain WebSocket client of the Alpaca stream protocol, one decoded frame at a time."""

    def __init__(self, ws: ClientConnection, encoding: str) -> None:
        self.ws = ws
        self.encoding = encoding
        self.data: list[dict[str, Any]] = []  # data messages seen while waiting for control ones
        self.frames: list[list[dict[str, Any]]] = []

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, encoding: str = "json", headers: dict[str, str] | None = None, **kwargs: Any
    ) -> AsyncIterator[StreamClient]:
        headers = dict(headers or {})
        if encoding == "msgpack":
            headers["Content-Type"] = "application/msgpack"
        async with connect(url, additional_headers=headers, max_size=2**24, **kwargs) as ws:
            client = cls(ws, encoding)
            try:
                yield client
            finally:
                await client.close()

    async def close(self) -> None:
        """Close, reading on meanwhile: a client that stops reading mid-burst never sees
        the server's close frame behind the data in flight, and waits out its timeout."""
        closing = asyncio.create_task(self.ws.close())
        with contextlib.suppress(ConnectionClosed):
            while not closing.done():
                await self.ws.recv()
        await closing

    async def send(self, message: Any) -> None:
        if self.encoding == "msgpack":
            await self.ws.send(msgpack.packb(message))
        else:
            await self.ws.send(orjson.dumps(message).decode())

    async def recv(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next frame, decoded into its messages."""
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        messages = decode_frame(frame)
        self.frames.append(messages)
        return messages

    async def control(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next control message; data messages met on the way are kept in ``data``."""
        while True:
            messages = await self.recv(timeout)
            if messages and messages[0].get("T") in CONTROL:
                assert len(messages) == 1, f"expected a control message alone in its array, got {messages}"
                return messages[0]
            self.data.extend(messages)

    async def login(self, key: str = "key", secret: str = "secret") -> None:
        assert await self.control() == {"T": "success", "msg": "connected"}
        await self.send({"action": "auth", "key": key, "secret": secret})
        assert await self.control() == {"T": "success", "msg": "authenticated"}

    async def subscribe(self, action: str = "subscribe", **channels: list[str]) -> dict[str, Any]:
        await self.send({"action": action, **channels})
        reply = await self.control()
        assert reply["T"] == "subscription", f"expected a subscription message, got {reply}"
        return reply

    async def collect(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Data messages until at least ``n`` have arrived (those already in ``data`` count)."""
        while len(self.data) < n:
            for m in await self.recv(timeout):
                assert m.get("T") not in CONTROL, f"expected only data, got {m}"
                self.data.append(m)
        return self.data


class AlpacaThread:
    """alpaca-py's StockDataStream, running on a thread of its own like ``run()`` does."""

    def __init__(
        self, url: str, key: str = "key", secret: str = "secret", raw_data: bool = False, **kwargs: Any
    ) -> None:
        self.stream = StockDataStream(key, secret, raw_data=raw_data, url_override=url, **kwargs)
        self.stream._reconnect_min_backoff = 0.05  # reconnect fast in tests
        self.received: list[Any] = []
        self.thread = threading.Thread(target=self.stream.run, name="alpaca-stream", daemon=True)

    async def handler(self, message: Any) -> None:
        self.received.append(message)

    def of_type(self, kind: type) -> list[Any]:
        return [m for m in list(self.received) if isinstance(m, kind)]

    def start(self) -> None:
        self.thread.start()

    async def stop(self, sim: Simulator) -> None:
        """Ask the stream to stop, then close its connections so it notices at once."""
        if self.stream._loop is not None and self.thread.is_alive():
            await asyncio.to_thread(self.stream.stop)
        for session in sim.sessions:
            session.close(1001, "test over")
        await asyncio.to_thread(self.thread.join, 15)
        assert not self.thread.is_alive(), "expected the alpaca-py stream thread to end"


@asynccontextmanager
async def alpaca(
    sim: Simulator, subscribe: Callable[[StockDataStream, Handler], None], **kwargs: Any
) -> AsyncIterator[AlpacaThread]:
    """A running alpaca-py stream pointed at ``sim``, subscribed by ``subscribe(stream, handler)``."""
    client = AlpacaThread(sim.url, **kwargs)
    subscribe(client.stream, client.handler)
    client.start()
    try:
        yield client
    finally:
        await client.stop(sim)


def nanos(t: Any) -> int:
    """A message's ``t`` as int nanoseconds, whatever the encoding carried."""
    if isinstance(t, int):
        return t
    if isinstance(t, msgpack.Timestamp):
        return int(t.to_unix_nano())
    from tickpipe.codecs import parse_rfc3339_ns

    return parse_rfc3339_ns(t)


def check_tape(events: list[dict[str, Any]]) -> dict[str, int]:
    """Assert the market's own consistency over a run that starts on a minute mark.

    Every trade prints at or between the symbol's latest bid and ask; the
    latest minute (or updated) bar of each minute aggregates exactly the trades
    stamped in it, net of cancels and corrections; every daily bar aggregates
    the minute bars before it. Returns how many of each check ran.
    """
    minute = 60_000_000_000
    quotes: dict[str, tuple[float, float]] = {}
    trades: dict[tuple[str, int], dict[int, tuple[int, float, int]]] = {}
    home: dict[int, tuple[str, int]] = {}
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    checked = {"trades": 0, "bars": 0, "updated": 0, "daily": 0, "corrections": 0, "cancels": 0}
    for e in events:
        kind, symbol = e["T"], e["S"]
        if kind == "q":
            assert e["bp"] < e["ap"], f"expected bid below ask, got {e}"
            quotes[symbol] = (e["bp"], e["ap"])
        elif kind == "t":
            if symbol in quotes:
                bid, ask = quotes[symbol]
                assert bid <= e["p"] <= ask, f"expected a trade at or between {bid} and {ask}, got {e}"
                checked["trades"] += 1
            t = nanos(e["t"])
            key = (symbol, t - t % minute)
            trades.setdefault(key, {})[e["i"]] = (t, e["p"], e["s"])
            home[e["i"]] = key
        elif kind == "x":
            del trades[home.pop(e["i"])][e["i"]]
            checked["cancels"] += 1
        elif kind == "c":
            key = home.pop(e["oi"])
            t, p, s = trades[key].pop(e["oi"])
            assert (p, s) == (e["op"], e["os"]), f"expected the correction to name the trade, got {e}"
            trades[key][e["ci"]] = (t, e["cp"], e["cs"])
            home[e["ci"]] = key
            checked["corrections"] += 1
        elif kind in ("b", "u"):
            latest[(symbol, nanos(e["t"]))] = e
            checked["updated" if kind == "u" else "bars"] += 1
        elif kind == "d":
            mine = [b for (s, _), b in sorted(latest.items()) if s == symbol]
            assert e["v"] == sum(b["v"] for b in mine), f"expected daily volume = sum of minute bars: {e}"
            assert e["n"] == sum(b["n"] for b in mine)
            assert (e["h"], e["l"]) == (max(b["h"] for b in mine), min(b["l"] for b in mine))
            assert (e["o"], e["c"]) == (mine[0]["o"], mine[-1]["c"])
            checked["daily"] += 1
    for key, b in latest.items():
        prints = sorted(trades[key].values())
        assert b["v"] == sum(s for _, _, s in prints), f"expected bar volume = its trades: {b}"
        assert b["n"] == len(prints)
        assert (b["o"], b["c"]) == (prints[0][1], prints[-1][1])
        assert (b["h"], b["l"]) == (max(p for _, p, _ in prints), min(p for _, p, _ in prints))
        vwap = sum(p * s for _, p, s in prints) / b["v"]
        assert abs(b["vw"] - vwap) < 1e-5, f"expected vwap {vwap}, got {b}"
    return checked


def rest_client(sim: Simulator, raw_data: bool = False, key: str = "key", secret: str = "secret") -> Any:
    """alpaca-py's historical client pointed at the simulator's REST API (call it with ``asyncio.to_thread``:
    it blocks, and the simulator answers on the test's own loop)."""
    return StockHistoricalDataClient(key, secret, raw_data=raw_data, url_override=sim.rest_url)


def stream_shape(event: dict[str, Any]) -> dict[str, Any]:
    """A stream message as the REST API shows the same event: without ``T`` and ``S``."""
    return {k: v for k, v in event.items() if k not in ("T", "S")}


#: A crypto order book as a client keeps it: side ("b", "a") -> price -> size.
Book = dict[str, dict[float, float]]


def apply_book(books: dict[str, Book], message: dict[str, Any], *, strict: bool = True) -> None:
    """One order-book message applied as a client does: a reset (``r``) replaces the book, size 0 removes a
    price. ``strict``: removing a price the book does not hold fails (KeyError), as a wrong update should."""
    if message.get("r"):
        books[message["S"]] = {"b": {}, "a": {}}
    book = books[message["S"]]
    for side in ("b", "a"):
        for level in message[side]:
            if level["s"] != 0:
                book[side][level["p"]] = level["s"]
            elif strict:
                del book[side][level["p"]]
            else:
                book[side].pop(level["p"], None)
