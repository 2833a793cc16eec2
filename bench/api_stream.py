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
import contextlib
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, cast

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tickpipe.codecs import encode_live, parse_rfc3339_ns
from tickpipe.events import Quote

BUCKET_NS = 100_000  # latency histogram resolution: 0.1 ms


def client_symbols(index: int, symbols: list[str], k: int) -> list[str]:
    """The symbols client ``index`` subscribes to (the same in every process)."""
    return random.Random(index).sample(symbols, k)


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


_T: Final = b'"t":"'
_MINUTES: dict[bytes, int] = {}  # "2024-03-04T13:30" -> ns


class Tally:
    """Messages received and their publish-to-read latencies, in one process."""

    def __init__(self) -> None:
        self.received = 0
        self.latency: Counter[int] = Counter()
        self.frames = 0
        self.last = time.time_ns()

    def take(self, frame: bytes) -> None:
        """One frame of JSON events: counted and timed from the raw bytes (no JSON parse needed).

        ``t`` is fixed-width RFC 3339 with nine digits, so it is read by
        position: a cached minute, then the seconds and nanoseconds.
        """
        now = self.last = time.time_ns()
        self.frames += 1
        latency = self.latency
        at = frame.find(_T)
        while at >= 0:
            minute = frame[at + 5 : at + 21]
            base = _MINUTES.get(minute)
            if base is None:
                base = _MINUTES[minute] = parse_rfc3339_ns(minute.decode() + ":00Z")
            sent = base + int(frame[at + 22 : at + 24]) * 1_000_000_000 + int(frame[at + 25 : at + 34])
            latency[(now - sent) // BUCKET_NS] += 1
            self.received += 1
            at = frame.find(_T, at + 34)


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
        if self.buffer:  # the rest of a frame that came in pieces
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        if self.state == "handshake":
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer += data
                return
            assert data.startswith(b"HTTP/1.1 101"), data[:100]
            data = data[end + 4 :]
            self.state = "connected"
        at, length = 0, len(data)
        while length - at >= 2:  # whole frames straight from what was read, no copy into the buffer
            size, start = data[at + 1] & 0x7F, at + 2
            if size == 126:
                size, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
            elif size == 127:
                size, start = int.from_bytes(data[at + 2 : at + 10], "big"), at + 10
            if length < start + size:
                break
            opcode = data[at] & 0x0F
            at = start + size
            if opcode == 1:
                self.on_text(data[start:at])
            elif opcode == 8:
                assert self.transport is not None
                self.transport.close()
                return
        if at < length:
            self.buffer += data[at:]

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
    """A plain subscriber of ``quotes:*`` (hiredis, as the API's own reader): the latency floor."""
    from api.stream.pubsub import RedisSubscriber

    subscriber = RedisSubscriber(url, lambda channel, data, pattern: tally.take(data))
    await subscriber.start()
    await subscriber.subscribe([b"quotes:*"], pattern=True, timeout=30)
    subscribed.set()
    try:
        await asyncio.Event().wait()
    finally:
        await subscriber.stop()


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
        idle = (time.time_ns() - max(tally.last, baseline.last)) / 1e9
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
    from tickpipe.dev.services import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="tickpipe-bench-redis-") as folder:
        server = await asyncio.to_thread(EmbeddedRedis(Path(folder)).start)
        try:
            yield server.url
        finally:
            await asyncio.to_thread(server.stop)


async def publish(redis_url: str, symbols: list[str], rate: float, seconds: float) -> Counter[str]:
    """Quotes at ``rate`` per second, round robin over ``symbols``, ``t`` = the publish time.

    Each payload is what the producer publishes for a quote (``encode_live``),
    made from a per-symbol template with the time put in, and sent as raw
    RESP on one connection: the load generator shares this machine's two
    cores with the API, so it should cost as little as it can.
    """
    from redis.asyncio.connection import parse_url

    from api.shape import rfc3339_ns

    templates: dict[str, tuple[bytes, bytes]] = {}
    for symbol in symbols:
        sample = encode_live(Quote(symbol=symbol, timestamp=0, bid_exchange="V", bid_price=100.0, bid_size=100,
                                   ask_exchange="N", ask_price=100.01, ask_size=100, tape="C"))  # fmt: skip
        stamp = rfc3339_ns(0).encode()
        head, tail = sample.split(stamp)
        channel = f"quotes:{symbol}".encode()
        size = len(head) + len(stamp) + len(tail)
        command = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n" % (len(channel), channel, size)
        templates[symbol] = (command + head, tail + b"\r\n")
    target = parse_url(redis_url)
    reader, writer = await asyncio.open_connection(target.get("host", "127.0.0.1"), int(target.get("port", 6379)))

    answered = 0
    all_answered = asyncio.Event()

    async def count_replies() -> None:  # each reply to PUBLISH is one line, ":<receivers>"
        nonlocal answered
        while chunk := await reader.read(1 << 16):
            answered += chunk.count(b"\n")
            if answered == sent and stopped:
                all_answered.set()

    stopped = False
    replies = asyncio.create_task(count_replies())
    published: Counter[str] = Counter()
    sent = 0
    began = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - began) < seconds:
            due = int(rate * elapsed) - sent
            if due > 0:
                parts: list[bytes] = []
                for _ in range(due):
                    symbol = symbols[sent % len(symbols)]
                    head, tail = templates[symbol]
                    parts += (head, rfc3339_ns(time.time_ns()).encode(), tail)
                    published[symbol] += 1
                    sent += 1
                writer.write(b"".join(parts))
                await writer.drain()
            await asyncio.sleep(0.002)
        stopped = True
        if answered < sent:
            async with asyncio.timeout(30):  # every PUBLISH answered: all of them went out to the subscribers
                await all_answered.wait()
    finally:
        writer.close()
        replies.cancel()
    return published


def load_average() -> str:
    """The machine's state beside each figure: a shared host's load moves them."""
    return "load average " + " ".join(f"{n:.2f}" for n in os.getloadavg())


def tree_rss(pid: int | None) -> int:
    """Resident bytes of the API process and its workers (0 when not known)."""
    import psutil

    if pid is None:
        return 0
    parent = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])


async def bench_stream(api_url: str, redis_url: str, args: argparse.Namespace, api_pid: int | None = None) -> None:
    import redis.asyncio

    from bench.api_data import SYMBOLS, symbol_names
    from tickpipe.names import SYMBOLS_KEY

    symbols = symbol_names(SYMBOLS)
    # Listed as the producer lists what it carries: the API parks symbols that exist nowhere (not listed, no
    # snapshot), taking no Redis channel for them, so unlisted bench symbols would never be delivered.
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        await client.sadd(SYMBOLS_KEY, *symbols)
    ws_url = api_url.replace("http://", "ws://") + "/v2/stream"
    rss_before = tree_rss(api_pid)
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
    rss_idle = tree_rss(api_pid)  # every client connected and subscribed, nothing published yet
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
    if api_pid is not None:
        per_1000 = (rss_idle - rss_before) / max(args.clients, 1) * 1000 / 2**20
        print(f"  server memory (all processes) per 1,000 idle connections: {per_1000:.1f} MiB "
              f"({rss_before / 2**20:.0f} MiB before the clients, {rss_idle / 2**20:.0f} MiB with them)")  # fmt: skip
    print(f"  {load_average()}")
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
