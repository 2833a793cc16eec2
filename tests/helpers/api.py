"""Helpers of the API tests: a real uvicorn serving the app, rows, Redis events.

The server runs in the test's own event loop on a free port with its lifespan
on, exactly as ``tickpipe api`` runs it, so HTTP and WebSocket clients (httpx,
websockets, alpaca-py) talk to it over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import asyncpg
import httpx
import msgpack
import orjson
import psutil
import redis
import redis.asyncio
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from api.main import create_app
from api.stream.direct import DirectWebSocketProtocol
from api.stream.flusher import Flusher
from api.stream.outbox import Outbox
from tests.helpers.waiting import wait_for
from tickpipe import db, schema
from tickpipe.codecs import encode_live
from tickpipe.crypto_events import CryptoEvent
from tickpipe.events import Event
from tickpipe.feeds import CRYPTO, NEWS, OPTIONS, STOCK, TRADE_UPDATES_FEED
from tickpipe.names import channel, latest_hash
from tickpipe.news_events import NewsStory
from tickpipe.option_events import OptionEvent
from tickpipe.rows import COLUMNS, to_row
from tickpipe.service import Uvicorn
from tickpipe.settings import Settings, load_settings
from tickpipe.trade_update_events import TradeUpdate


class ApiServer:
    """The app under uvicorn in this loop; ``url`` / ``ws_url`` once started."""

    def __init__(
        self,
        app: FastAPI,
        ws: str | type[asyncio.Protocol] = DirectWebSocketProtocol,
        *,
        ws_max_size: int = 16 * 1024 * 1024,
    ) -> None:
        """``ws``: uvicorn's WebSocket protocol, tickpipe api's own by default; ``ws_max_size``: the largest
        client frame uvicorn itself reads (``tickpipe api`` sets WS_MAX_FRAME_BYTES; uvicorn's default here)."""
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            ws=ws,
            ws_per_message_deflate=False,
            ws_ping_interval=None,
            ws_max_size=ws_max_size,
        )
        self._server = Uvicorn(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2/stream"

    async def start(self) -> ApiServer:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        await self._server.wait_started(self._task)
        return self

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sock.close()


def api_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    return load_settings(database_url=database_url, redis_url=redis_url, **overrides)


@contextlib.asynccontextmanager
async def running_api(
    settings: Settings, ws: str | type[asyncio.Protocol] = DirectWebSocketProtocol, *, ws_max_size: int | None = None
) -> AsyncIterator[ApiServer]:
    """The app under uvicorn as ``tickpipe api`` configures it (``ws_max_size``: WS_MAX_FRAME_BYTES unless given)."""
    max_size = settings.ws_max_frame_bytes if ws_max_size is None else ws_max_size
    server = await ApiServer(create_app(settings), ws, ws_max_size=max_size).start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.contextmanager
def serving_in_thread(settings: Settings) -> Iterator[str]:
    """The app under uvicorn on a thread of its own, for synchronous clients (schemathesis, hypothesis);
    its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api-on-a-thread")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # a thread has no event to wait on: poll, with a deadline
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class ApiProcess:
    """A running ``tickpipe api [--workers N]``: its process, port and stderr lines, and its workers if any.

    Which worker holds a connection is read from the kernel (psutil: the worker whose socket's peer is
    the client's port), so a test knows where its clients are rather than hoping the kernel spread them.
    """

    def __init__(self, proc: asyncio.subprocess.Process, lines: list[str]) -> None:
        self.proc = proc
        self.lines = lines
        self.port = 0

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2/stream"

    def pids(self) -> list[int]:
        """The workers' pids (none without ``--workers``)."""
        return sorted(child.pid for child in psutil.Process(self.proc.pid).children())

    def worker_of(self, client_port: int) -> int | None:
        """The worker holding the server side of the connection from ``client_port``."""
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                for conn in psutil.Process(pid).net_connections("tcp"):
                    if conn.laddr and conn.laddr.port == self.port and conn.raddr and conn.raddr.port == client_port:
                        return pid
        return None

    async def client_on(self, client: WsClient) -> int:
        port = client.ws.local_address[1]
        pid: int = await wait_for(lambda: self.worker_of(port), what=f"the worker of client port {port}")
        return pid


@contextlib.asynccontextmanager
async def api_cli(
    database_url: str, redis_url: str, *args: str, started: int = 1, env: dict[str, str] | None = None
) -> AsyncIterator[ApiProcess]:
    """``tickpipe api ARGS`` on a free port with these extra settings, once ``started`` processes (the
    workers, or the one) said their start-up is complete; stopped after if still running (its workers
    killed too if it does not stop: they hold the stderr pipe open, and wait() waits for it to close)."""
    full = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "API_PORT": "0", **(env or {})}
    full["LOG_LEVEL"] = "INFO"  # the start-up line names the port
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickpipe.cli", "api", *args, env=full, stderr=asyncio.subprocess.PIPE
    )
    api = ApiProcess(proc, [])

    async def read() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            api.lines.append(line.decode())

    reader = asyncio.create_task(read())
    try:
        await wait_for(
            lambda: api.log.count("Application startup complete") >= started or proc.returncode is not None,
            what=f"tickpipe api {' '.join(args)} to start",
        )
        port = re.search(r"http://127\.0\.0\.1:(\d+)", api.log)
        assert proc.returncode is None and port is not None, api.log
        api.port = int(port.group(1))
        yield api
    finally:
        if proc.returncode is None:  # a test that wanted a clean stop has asserted it already
            left = api.pids()
            proc.terminate()
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                for pid in [proc.pid, *left]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                await proc.wait()
        await reader


@contextlib.asynccontextmanager
async def api_process(database_url: str, redis_url: str, **env: str) -> AsyncIterator[tuple[int, str]]:
    """``tickpipe api`` as a process on a free port, with these extra settings; its pid and base URL."""
    async with api_cli(database_url, redis_url, env=env) as api:
        yield api.proc.pid, api.url


async def all_pages(http: httpx.AsyncClient, path: str, key: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a history route (``key``: its items' field), following next_page_token to the end."""
    pages = []
    token = None
    while True:
        query = {**params, **({"page_token": token} if token else {})}
        response = await http.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body[key])
        token = body["next_page_token"]
        if token is None:
            return pages
        assert len(pages) < 1000, "pagination does not end"


async def all_items(http: httpx.AsyncClient, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a history route, page by page."""
    return [item for page in await all_pages(http, path, key, **params) for item in page]


def table_of_event(event: Event | CryptoEvent | OptionEvent | NewsStory | TradeUpdate) -> str:
    """The table an event is stored in: its family's in its feed (``quotes``, ``crypto_quotes``, ``options_quotes``,
    ``news``, ``trade_updates``)."""
    feed = (
        CRYPTO if isinstance(event, CryptoEvent)
        else OPTIONS if isinstance(event, OptionEvent)
        else NEWS if isinstance(event, NewsStory)
        else TRADE_UPDATES_FEED if isinstance(event, TradeUpdate)
        else STOCK
    )  # fmt: skip
    table = feed.family(event.family).table
    assert table is not None, f"{type(event).__name__} is not stored"
    return table


def partition_column(table: str) -> str:
    """The column a table's daily partitions are ranged on (``time``; the news table's ``created_at``)."""
    ranged: str = schema.metadata.tables[table].dialect_options["postgresql"]["partition_by"]
    return ranged.removeprefix("RANGE (").removesuffix(")")


async def insert_events(
    database_url: str, events: Iterable[Event | CryptoEvent | OptionEvent | NewsStory | TradeUpdate]
) -> None:
    """Rows as the consumers write them (every feed's, each in its table): partitions first, then COPY."""
    by_table: dict[str, list[tuple[Any, ...]]] = {}
    for event in events:
        by_table.setdefault(table_of_event(event), []).append(to_row(event))
    conn = await asyncpg.connect(db.asyncpg_dsn(database_url))
    try:
        for table, rows in by_table.items():
            days = {row[COLUMNS[table].index(partition_column(table))].date() for row in rows}
            await db.ensure_partitions(conn, days, [table])
            await conn.copy_records_to_table(table, records=rows, columns=COLUMNS[table])
    finally:
        await conn.close()


async def publish(client: redis.asyncio.Redis, *events: Event, snapshot: bool = False) -> None:
    """As the producer does: PUBLISH encode_live JSON on the event's channel (and HSET the snapshot)."""
    async with client.pipeline(transaction=False) as pipe:
        for event in events:
            payload = encode_live(event)
            if snapshot:
                pipe.hset(latest_hash(event.family), event.symbol, payload)
            pipe.publish(channel(event.family, event.symbol), payload)
        await pipe.execute()


async def numsub(client: redis.asyncio.Redis, name: str) -> int:
    counts = await client.pubsub_numsub(name)
    return int(counts[0][1])


class WsClient:
    """A plain client of ``/v2/stream`` (JSON, or msgpack as alpaca-py speaks it), frames decoded."""

    def __init__(self, ws: ClientConnection, use_msgpack: bool) -> None:
        self.ws = ws
        self.msgpack = use_msgpack
        self.backlog: list[dict[str, Any]] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        use_msgpack: bool = False,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        **options: Any,
    ) -> WsClient:
        extra = dict(headers or {})
        if use_msgpack:
            extra["Content-Type"] = "application/msgpack"
        sock = None
        if rcvbuf is not None:  # a tiny receive window: a client that stops reading is soon felt
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            host, port = url.split("//")[1].split("/")[0].split(":")
            await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        ws = await ws_connect(url, additional_headers=extra, max_size=None, compression=None, sock=sock, **options)
        client = cls(ws, use_msgpack)
        assert await client.recv() == [{"T": "success", "msg": "connected"}]
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(message) if self.msgpack else orjson.dumps(message).decode())

    async def recv(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            frame = await self.ws.recv()
        if self.msgpack:
            assert isinstance(frame, bytes), "a msgpack client gets binary frames"
            decoded: list[dict[str, Any]] = msgpack.unpackb(frame, timestamp=0)
        else:
            assert isinstance(frame, str), "a JSON client gets text frames"
            decoded = orjson.loads(frame)
        return decoded

    async def message(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message, whatever frame it came in."""
        while not self.backlog:
            self.backlog.extend(await self.recv(timeout))
        return self.backlog.pop(0)

    async def messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            return [await self.message() for _ in range(count)]

    async def login(self, key: str = "key", secret: str = "secret") -> None:
        await self.send({"action": "auth", "key": key, "secret": secret})
        assert await self.message() == {"T": "success", "msg": "authenticated"}

    async def subscribe(self, action: str = "subscribe", **streams: list[str]) -> dict[str, Any]:
        await self.send({"action": action, **streams})
        reply = await self.message()
        assert reply["T"] == "subscription", reply
        return reply

    async def until_closed(self, timeout: float = 30.0) -> tuple[list[dict[str, Any]], int | None]:
        """Read until the server closes: every message not taken yet (the backlog's too), and the close code."""
        got, self.backlog = self.backlog, []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    got.extend(await self.recv(timeout))
        except ConnectionClosed as closed:
            return got, closed.rcvd.code if closed.rcvd else None

    async def close(self) -> None:
        await self.ws.close()


# --- an outbox writing into a list, for the stream's unit tests ---------------------------------


class ListSink:
    """A sink that keeps what it is given, with the loop time; not writable while ``full``."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.times: list[float] = []
        self.full = False

    @property
    def writable(self) -> bool:
        return not self.full

    def write(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.times.append(asyncio.get_running_loop().time())


def json_frame(batch: list[bytes]) -> bytes:
    return b"[" + b",".join(batch) + b"]"


def outbox_with_sink(flusher: Flusher, limit: int = 100_000, on_overflow: Any = None) -> tuple[Outbox, ListSink]:
    outbox = Outbox(limit, on_overflow or (lambda: None), flusher, json_frame)
    sink = outbox.sink = ListSink()
    return outbox, sink
