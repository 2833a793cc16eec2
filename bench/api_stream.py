"""The live-stream half of ``bench/api.py``: WebSocket client processes, the publisher, the tally.

Run by ``bench/api.py``; ``python bench/api_stream.py clients ...`` is one
client process (spawned by it): it connects its share of the clients, each
subscribing to its own 10 symbols, says ``ready``, reads until told ``stop``
and then until quiet, and prints one JSON line: messages per symbol and a
latency histogram (publish time, the quote's ``t``, to the client's read).

Process 0 also runs the baseline: one plain Redis subscriber of ``quotes:*``
(no API in between), whose latency is the floor the API adds to.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import calendar
import contextlib
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tickpipe.codecs import encode_live
from tickpipe.events import Quote

BUCKET_NS = 100_000  # latency histogram resolution: 0.1 ms
_DAYS: dict[str, int] = {}


def client_symbols(index: int, symbols: list[str], k: int) -> list[str]:
    """The symbols client ``index`` subscribes to (the same in every process)."""
    return random.Random(index).sample(symbols, k)


def stamp_ns(t: str) -> int:
    """``t`` of a quote (RFC 3339, nine digits) to ns, without datetime (this runs 100,000 times a second)."""
    day = _DAYS.get(t[:10])
    if day is None:
        day = _DAYS[t[:10]] = calendar.timegm(time.strptime(t[:10], "%Y-%m-%d")) * 1_000_000_000
    seconds = int(t[11:13]) * 3600 + int(t[14:16]) * 60 + int(t[17:19])
    return day + seconds * 1_000_000_000 + int(t[20:29])


def percentile(histogram: Counter[int], q: float) -> float:
    """The q-quantile of a histogram of BUCKET_NS buckets, in ms (upper edge of its bucket)."""
    total = sum(histogram.values())
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= q * total:
            return (bucket + 1) * BUCKET_NS / 1e6
    return float("nan")


# --- one client process ---------------------------------------------------------------------------


_STAMP = re.compile(rb'"t":"(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{9})Z"')
_BYTE_DAYS: dict[bytes, int] = {}


class Tally:
    """Messages received and their publish-to-read latencies, in one process."""

    def __init__(self) -> None:
        self.received = 0
        self.latency: Counter[int] = Counter()
        self.frames = 0
        self.last = time.monotonic()

    def take(self, frame: bytes) -> None:
        """One frame of JSON events: counted and timed from the raw bytes (no JSON parse needed)."""
        now = time.time_ns()
        self.frames += 1
        self.last = time.monotonic()
        for match in _STAMP.finditer(frame):
            day, hours, minutes, seconds, nanos = match.groups()
            base = _BYTE_DAYS.get(day)
            if base is None:
                base = _BYTE_DAYS[day] = stamp_ns(day.decode() + "T00:00:00.000000000Z")
            sent = base + (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * 1_000_000_000 + int(nanos)
            self.latency[(now - sent) // BUCKET_NS] += 1
            self.received += 1


class Subscribed:
    """Counts clients down to zero subscribed."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.all = asyncio.Event()
        if count == 0:
            self.all.set()

    def one(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.all.set()


class RawClient(asyncio.Protocol):
    """A minimal WebSocket client of /v2/stream, so 500 of them fit in one process at 50,000 messages/s.

    It does the handshake, reads unmasked server frames and sends its two
    actions masked with a zero key (RFC 6455 lets the client choose it);
    the websockets library costs several times more per frame.
    """

    def __init__(self, host: str, symbols: list[str], tally: Tally, done: Subscribed) -> None:
        self.host, self.symbols, self.tally, self.done = host, symbols, tally, done
        self.buffer = bytearray()
        self.state = "handshake"
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET /v2/stream HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def send_json(self, message: dict[str, Any]) -> None:
        data = orjson.dumps(message)
        size = len(data)
        length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
        assert self.transport is not None
        self.transport.write(b"\x81" + length + b"\0\0\0\0" + data)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.state == "handshake":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            assert buffer.startswith(b"HTTP/1.1 101"), bytes(buffer[:100])
            del buffer[: end + 4]
            self.state = "connected"
        while len(buffer) >= 2:
            size, start = buffer[1] & 0x7F, 2
            if size == 126:
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                return
            opcode = buffer[0] & 0x0F
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            if opcode == 1:
                self.on_text(payload)
            elif opcode == 8:
                assert self.transport is not None
                self.transport.close()
                return

    def on_text(self, payload: bytes) -> None:
        if self.state == "streaming":
            self.tally.take(payload)
        elif self.state == "connected":
            self.send_json({"action": "auth", "key": "bench", "secret": "bench"})
            self.state = "auth"
        elif self.state == "auth":
            self.send_json({"action": "subscribe", "quotes": self.symbols})
            self.state = "subscribing"
        elif b'"subscription"' in payload:
            self.state = "streaming"
            self.done.one()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


async def one_client(url: str, symbols: list[str], tally: Tally, gate: asyncio.Semaphore, done: Subscribed) -> None:
    host, port = url.split("//")[1].split("/")[0].split(":")
    loop = asyncio.get_running_loop()
    async with gate:  # connect a few at a time, not 500 SYNs at once
        _, client = await loop.create_connection(
            lambda: RawClient(f"{host}:{port}", symbols, tally, done), host, int(port)
        )
    error = await client.closed
    if error is not None:
        raise error


async def redis_baseline(url: str, tally: Tally, subscribed: asyncio.Event) -> None:
    client = redis.asyncio.from_url(url)
    pubsub = client.pubsub()
    await pubsub.psubscribe("quotes:*")
    subscribed.set()
    async for message in pubsub.listen():
        if message["type"] == "pmessage":
            tally.take(message["data"])


async def clients_main(args: argparse.Namespace) -> None:
    symbols = args.symbols.split(",")
    tally, baseline = Tally(), Tally()
    gate = asyncio.Semaphore(50)
    done = Subscribed(args.count)
    tasks = [
        asyncio.create_task(one_client(args.url, client_symbols(i, symbols, args.k), tally, gate, done))
        for i in range(args.first, args.first + args.count)
    ]
    if args.baseline_redis:
        subscribed = asyncio.Event()
        tasks.append(asyncio.create_task(redis_baseline(args.baseline_redis, baseline, subscribed)))
        await subscribed.wait()
    waiter = asyncio.create_task(done.all.wait())
    async with asyncio.timeout(240):
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if not done.all.is_set():
        broken = next(t for t in tasks if t.done())
        raise RuntimeError(f"a client failed before subscribing: {broken.exception()!r}")
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("ready", flush=True)
    await stdin.readline()  # "stop": publishing is over
    deadline = time.monotonic() + 30
    while True:  # until 2 s pass without a message: all that was published has arrived
        idle = time.monotonic() - max(tally.last, baseline.last)
        if idle >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(2 - idle)
    failed = [t for t in tasks if t.done() and t.exception() is not None]
    for task in tasks:
        task.cancel()
    print(orjson.dumps({
        "received": tally.received, "latency": tally.latency, "frames": tally.frames,
        "baseline_received": baseline.received, "baseline_latency": baseline.latency,
        "failed": [repr(t.exception()) for t in failed[:3]], "failures": len(failed),
    }, option=orjson.OPT_NON_STR_KEYS).decode(), flush=True)  # fmt: skip


# --- the orchestrating side (bench/api.py) -----------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_redis(url: str | None) -> AsyncIterator[str]:
    """The Redis of the bench: the one given, or a private embedded one (nobody else's traffic)."""
    if url:
        yield url
        return
    from tickpipe.services import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="tickpipe-bench-redis-") as folder:
        server = await asyncio.to_thread(EmbeddedRedis(Path(folder)).start)
        try:
            yield server.url
        finally:
            await asyncio.to_thread(server.stop)


async def publish(redis_url: str, symbols: list[str], rate: float, seconds: float) -> Counter[str]:
    """Quotes at ``rate`` per second, round robin over ``symbols``, ``t`` = the publish time."""
    client = redis.asyncio.from_url(redis_url)
    published: Counter[str] = Counter()
    sent = 0
    began = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - began) < seconds:
            due = int(rate * elapsed) - sent
            if due > 0:
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(due):
                        symbol = symbols[sent % len(symbols)]
                        quote = Quote(
                            symbol=symbol, timestamp=time.time_ns(), bid_exchange="V", bid_price=100.0,
                            bid_size=sent, ask_exchange="N", ask_price=100.01, ask_size=100, tape="C",
                        )  # fmt: skip
                        pipe.publish(f"quotes:{symbol}", encode_live(quote))
                        published[symbol] += 1
                        sent += 1
                    await pipe.execute()
            await asyncio.sleep(0.002)
    finally:
        await client.aclose()
    return published


async def bench_stream(api_url: str, redis_url: str, args: argparse.Namespace) -> None:
    from bench.api_data import SYMBOLS, symbol_names

    symbols = symbol_names(SYMBOLS)
    ws_url = api_url.replace("http://", "ws://") + "/v2/stream"
    per = -(-args.clients // args.client_processes)
    procs = []
    for n in range(args.client_processes + 1):  # the last one is the floor: a plain Redis subscriber only
        first, count = n * per, max(0, min(per, args.clients - n * per))
        command = [sys.executable, __file__, "clients", "--url", ws_url, "--first", str(first), "--count",
                   str(count), "--k", str(args.symbols_per_client), "--symbols", ",".join(symbols)]  # fmt: skip
        if n == args.client_processes:
            command += ["--count", "0", "--baseline-redis", redis_url]
        procs.append(await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env={**os.environ},
            limit=1 << 26,  # the tally is one long JSON line
        ))  # fmt: skip
    for proc in procs:
        assert proc.stdout is not None
        async with asyncio.timeout(300):
            line = await proc.stdout.readline()
        assert line.strip() == b"ready", f"a client process failed to start: {line!r}"
    async with httpx.AsyncClient() as http:
        before = (await http.get(f"{api_url}/metrics")).text
    published = await publish(redis_url, symbols, args.rate, args.seconds)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
    results = []
    for proc in procs:
        assert proc.stdout is not None
        results.append(orjson.loads(await proc.stdout.readline()))
        await proc.wait()
    async with httpx.AsyncClient() as http:
        after = (await http.get(f"{api_url}/metrics")).text

    expected = sum(
        published[s] for i in range(args.clients) for s in client_symbols(i, symbols, args.symbols_per_client)
    )
    received = sum(r["received"] for r in results)
    latency: Counter[int] = Counter()
    for r in results:
        latency.update({int(k): v for k, v in r["latency"].items()})
    floor = results[-1]
    baseline = Counter({int(k): v for k, v in floor["baseline_latency"].items()})
    frames_delta = metric(after, "tickpipe_api_ws_frames_sent_total") - metric(
        before, "tickpipe_api_ws_frames_sent_total"
    )
    total = sum(published.values())
    print(
        f"\nlive stream: {args.clients:,} WebSocket clients x {args.symbols_per_client} symbols (of {SYMBOLS}), "
        f"{total:,} quotes published in {args.seconds:.0f} s ({total / args.seconds:,.0f}/s), "
        f"clients in {args.client_processes} processes"
    )
    print(f"  {'':<32}{'delivered':>12}{'expected':>12}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"  {'plain Redis subscriber (floor)':<32}{floor['baseline_received']:>12,}{total:>12,}"
          f"{percentile(baseline, 0.5):>10.2f}{percentile(baseline, 0.99):>10.2f}")  # fmt: skip
    print(f"  {'tickpipe api /v2/stream':<32}{received:>12,}{expected:>12,}"
          f"{percentile(latency, 0.5):>10.2f}{percentile(latency, 0.99):>10.2f}"
          f"  (target: all delivered, p99 < 50 ms)")  # fmt: skip
    print(f"  {received / max(frames_delta, 1):.1f} messages per frame; "
          f"client failures: {sum(r['failures'] for r in results)}")  # fmt: skip


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["clients"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--symbols", required=True)
    parser.add_argument("--baseline-redis", default=None)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(clients_main(args))
    except ImportError:
        asyncio.run(clients_main(args))


if __name__ == "__main__":
    main()
