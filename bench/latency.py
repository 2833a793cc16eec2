"""End-to-end latency: simulator send -> WebSocket client (live), and -> row committed in PostgreSQL (durable).

One run, one machine, every service real and in its own process, as deployed:

    simulator (this process, paced) -> tickpipe producer -> Redis  -> tickpipe api -> 100 WebSocket clients
                                                          -> Kafka -> tickpipe consume all -> PostgreSQL

**What "send" is.** The paced simulator stamps each event's ``t`` with a market
time spread over its ticker's last interval (5 ms here), then queues it for
the connection, so ``t`` is up to a tick *before* the event is sent. The
simulator therefore runs in this process and its ``ServerConnection.send`` is
wrapped to stamp every frame with the wall clock as it is handed to the
socket (as ``bench/producer.py`` does); an event's send time is the stamp of
the frame that carried it, found by ``(T, S, t)``. ``send - t`` is printed too.

1. **Live** (``quotes``): 100 WebSocket clients, one process of raw clients
   (``bench/api_stream.RawClient``), each watching a *dashboard watchlist* of
   10 symbols drawn from the simulator's 500 (each quote reaches about two
   clients; ``*`` for every client would be 100 copies of the firehose, not a
   dashboard). Each client stamps every frame as it reads it;
   latency = client read - simulator send, per delivered quote; delivered
   is counted per client against what its watchlist should have received.
   Beside it, in the same window, a plain Redis subscriber of ``quotes:*``
   (its own process, hiredis on a bare socket) gives simulator send -> Redis
   (the producer's share), and, per quote, client read - that subscriber's
   read (Redis -> API -> client: the API's share, flush interval included).
   The floor, measured first in the same run while the services idle:
   quotes PUBLISHed straight to Redis at the same rate, ``t`` = publish time,
   to that same plain subscriber.
2. **Durable** (``quotes`` and ``trades``): PostgreSQL (embedded, fsync and
   synchronous commit on, as deployed) runs with ``track_commit_timestamp =
   on``, so each row's commit time is ``pg_xact_commit_timestamp(xmin)``: the
   time PostgreSQL stamped the consumer's transaction's commit record
   (microseconds, the same machine's clock; the WAL flush that makes it
   durable and visible follows it). freshness = commit time - simulator send,
   per row of the window. The row's ``received_at`` (the producer's read
   time) splits it into send -> producer and producer -> commit; a plain
   aiokafka reader of the quotes topic (its own process, no group, aiokafka's
   fetch defaults as the consumers') adds send -> record's CreateTime and
   send -> fetched back from Kafka.

After a window each reader keeps reading until a quote stamped after the
window's end has reached it, then 1 s more (the producer publishes in order),
so late quotes count as late, not lost. The CPU each process used during the
window (and the rest of the machine) is printed per run: on a shared 2-core
machine that, not the code, often sets the tail.

The run has three windows by default: the defaults (``WS_FLUSH_INTERVAL_MS``
adapting to load by ``WS_FLUSH_WRITES_PER_S``, ``BATCH_MAX_WAIT_MS``), the
fixed 20 ms interval (``WS_FLUSH_WRITES_PER_S=0``, the default before it
adapted), then small intervals, so what each interval costs is the
difference. The API and the consumers are restarted between windows; the
simulator, producer (``BACKFILL_ENABLED=false``), Redis, Kafka (Apache Kafka
by default) and PostgreSQL stay up. About 2 minutes; ``--quick`` (8 s
windows) about 80 s.

    .venv/bin/python bench/latency.py [--quick] [--seconds 20] [--rate 5000] [--clients 100]
                                      [--flush-ms default,default,1] [--flush-writes default,0,0]
                                      [--batch-wait-ms default,default,20] [--broker apache]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg
import hiredis
import httpx
import msgpack
import orjson
import psutil
import redis.asyncio

SELF: Final = Path(__file__).resolve()
ROOT: Final = SELF.parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_stream import Subscribed, Tally, one_client, publish  # noqa: E402
from bench.brokers import KINDS, chosen, running, table, topics_ready  # noqa: E402
from bench.simulator import SendStamps  # noqa: E402
from simulator import Simulator, SimulatorConfig  # noqa: E402
from simulator.symbols import synthetic_symbols  # noqa: E402
from tickpipe import db  # noqa: E402
from tickpipe.codecs import decode_kafka, format_rfc3339_ns, parse_rfc3339_ns  # noqa: E402
from tickpipe.dev.embedded_pg import EmbeddedPostgres  # noqa: E402
from tickpipe.dev.embedded_redis import EmbeddedRedis  # noqa: E402
from tickpipe.dev.processes import free_port  # noqa: E402
from tickpipe.kafka import dlq_topic  # noqa: E402
from tickpipe.names import FAMILY_OF, SYMBOLS_KEY, topic  # noqa: E402
from tickpipe.settings import Settings, load_settings  # noqa: E402

LIVE_TARGET_MS: Final = 10.0
DURABLE_TARGET_MS: Final = 500.0
TRADE_RATIO: Final = 0.2  # the simulator's market: one event in five is a trade, the rest quotes
SYMBOLS: Final = 500
WATCHLIST: Final = 10
DRAIN_S: Final = 1.0  # after a window: this long for its last quotes once a later one arrived (see ``drain``)

Key = tuple[str, str, int]  # (T, S, t ns)


def watchlist(index: int, symbols: Sequence[str], k: int) -> list[str]:
    """The symbols client ``index`` watches (the same in the clients' process and here)."""
    return random.Random(index).sample(list(symbols), k)


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank q-quantile of sorted ``values``."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}), {os.cpu_count()} cores"


# --- the simulator's send stamps -------------------------------------------------------------------


def sent_ticks(frames: list[tuple[int, bytes | str]]) -> dict[Key, int]:
    """The send time of every quote and trade in ``frames`` (:meth:`SendStamps.take`), by (T, S, t)."""
    out: dict[Key, int] = {}
    for stamp, frame in frames:
        messages = msgpack.unpackb(frame, timestamp=0) if isinstance(frame, bytes) else orjson.loads(frame)
        for m in messages:
            if isinstance(m, dict) and m.get("T") in ("q", "t"):
                t = m["t"]
                ns = t.to_unix_nano() if isinstance(t, msgpack.Timestamp) else parse_rfc3339_ns(t)
                out.setdefault((m["T"], m["S"], ns), stamp)
    return out


# --- helper processes: WebSocket clients, a plain Redis subscriber -----------------------------------


class Recorder(Tally):
    """Every quote a process's clients read: (read time, S, t as sent)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, str, str]] = []

    def take(self, frame: bytes) -> None:
        now = self.last = time.time_ns()
        messages = orjson.loads(frame)
        for m in messages if isinstance(messages, list) else [messages]:
            if m.get("T") == "q":
                self.records.append((now, m["S"], m["t"]))


async def stdin_reader() -> asyncio.StreamReader:
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    return stdin


async def drain(past_the_window: Callable[[], bool], grace: float, limit: float = 60.0) -> None:
    """Read on until a quote stamped after the window came (``past_the_window``), then ``grace`` more seconds.

    The producer publishes in the order it reads and the API writes each
    symbol in the order Redis gives it, so once one later quote is here every
    quote of the window has passed the producer; ``grace`` covers the API's
    flush and the other clients. Gives up after ``limit`` seconds.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if past_the_window():
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(grace)


async def clients_main(args: argparse.Namespace) -> None:
    """``clients``: connect and subscribe the watchlists, say ``ready``; on ``stop``, drain, save, say ``done``."""
    symbols = args.symbols.split(",")
    recorders = [Recorder() for _ in range(args.count)]
    gate = asyncio.Semaphore(25)
    subscribed = Subscribed(args.count)
    tasks = [
        asyncio.create_task(one_client(args.url, watchlist(i, symbols, args.k), recorders[i], gate, subscribed))
        for i in range(args.count)
    ]
    waiter = asyncio.create_task(subscribed.all.wait())
    async with asyncio.timeout(120):
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if not subscribed.all.is_set():
        broken = next(t for t in tasks if t.done())
        raise RuntimeError(f"a client failed before subscribing: {broken.exception()!r}")
    stdin = await stdin_reader()
    print("ready", flush=True)
    end = (await stdin.readline()).decode().split()[-1]
    await drain(lambda: any(r.records and r.records[-1][2] > end for r in recorders), args.drain)
    failures = [repr(t.exception()) for t in tasks if t.done() and t.exception() is not None]
    data = msgpack.packb({"records": [r.records for r in recorders], "failures": failures})
    await asyncio.to_thread(Path(args.out).write_bytes, data)
    print("done", flush=True)
    for task in tasks:
        task.cancel()


async def listen_main(args: argparse.Namespace) -> None:
    """``listen``: PSUBSCRIBE quotes:* on a bare socket, stamp each read; ``ready``, then on ``stop`` save."""
    from redis.asyncio.connection import parse_url

    options = parse_url(args.redis)
    reader, writer = await asyncio.open_connection(options.get("host", "127.0.0.1"), options.get("port", 6379))
    writer.write(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$8\r\nquotes:*\r\n")
    records: list[tuple[int, bytes]] = []
    ready = asyncio.Event()

    async def read() -> None:
        parser = hiredis.Reader()
        while data := await reader.read(1 << 16):
            now = time.time_ns()
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if reply[0] == b"pmessage":
                    records.append((now, reply[3]))
                else:
                    ready.set()

    task = asyncio.create_task(read())
    await ready.wait()
    stdin = await stdin_reader()
    print("ready", flush=True)
    end = (await stdin.readline()).decode().split()[-1]
    await drain(lambda: bool(records) and orjson.loads(records[-1][1])["t"] > end, args.drain)
    task.cancel()
    writer.close()
    await asyncio.to_thread(Path(args.out).write_bytes, msgpack.packb(records))
    print("done", flush=True)


async def kafka_main(args: argparse.Namespace) -> None:
    """``kafka``: read the quotes topic from its end as the consumers fetch it (aiokafka, its defaults), stamp reads.

    No group and no commits: it only times when a record can be fetched.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.kafka, enable_auto_commit=False, group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    records: list[tuple[int, int, bytes]] = []  # read time, the record's CreateTime (ms), its value
    try:
        consumer.subscribe([args.topic])  # no group: every partition, from its end
        async with asyncio.timeout(60):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)

        async def read() -> None:
            while True:
                fetched = await consumer.getmany(timeout_ms=1000)
                now = time.time_ns()
                for batch in fetched.values():
                    records.extend((now, r.timestamp, r.value) for r in batch if r.value is not None)

        task = asyncio.create_task(read())
        stdin = await stdin_reader()
        print("ready", flush=True)
        end = parse_rfc3339_ns((await stdin.readline()).decode().split()[-1])
        await drain(lambda: bool(records) and decode_kafka(records[-1][2]).timestamp > end, args.drain)
        task.cancel()
    finally:
        await consumer.stop()
    await asyncio.to_thread(Path(args.out).write_bytes, msgpack.packb(records))
    print("done", flush=True)


@contextlib.asynccontextmanager
async def helper(role: str, out: Path, *flags: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python bench/latency.py ROLE``, once it said ``ready``; ``finish`` it to have its records saved."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SELF), role, "--out", str(out), "--drain", str(DRAIN_S), *flags,
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(120):
            line = await proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the {role} process did not start: {line!r}")
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def finish(proc: asyncio.subprocess.Process, end_ns: int) -> None:
    """Tell a helper the window ended at ``end_ns`` (wall clock); wait for its records to be saved."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"stop {format_rfc3339_ns(end_ns)}\n".encode())
    await proc.stdin.drain()
    async with asyncio.timeout(90):
        line = await proc.stdout.readline()
    if line.strip() != b"done":
        raise RuntimeError(f"a helper process failed: {line!r}")


# --- where the CPU went ------------------------------------------------------------------------------


class CpuMeter:
    """CPU used during a window by each process of this run (this one and all it started) and by the machine.

    Processes are named by ``named`` (pid -> name; their children take their
    name) or by what they run (Kafka's JVM, PostgreSQL, Redis). Figures are
    in percent of one core; the machine has ``os.cpu_count()`` of them.
    """

    def __init__(self, named: dict[int, str]) -> None:
        self.named = named
        self.began = time.monotonic()
        self.machine = self._machine()
        self.per_process = self._processes()

    @staticmethod
    def _machine() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _name(self, proc: psutil.Process) -> str:
        with contextlib.suppress(psutil.Error):
            argv = proc.cmdline()
            program = Path(argv[0]).name if argv else ""
            if program == "java":
                return "kafka (JVM)"
            if program.startswith("postgres") or proc.name().startswith("postgres"):
                return "postgresql"
            if "redis-server" in program:
                return "redis"
        current: psutil.Process | None = proc
        while current is not None:
            if current.pid in self.named:
                return self.named[current.pid]
            current = current.parent()
        return "other of this run"

    def _processes(self) -> dict[int, tuple[str, float]]:
        me = psutil.Process()
        out = {}
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                out[proc.pid] = (self._name(proc), times.user + times.system)
        return out

    def stop(self) -> dict[str, float]:
        """Percent of one core per name over the window, ``this run`` summed, ``rest of the machine``."""
        wall = time.monotonic() - self.began
        machine = self._machine() - self.machine
        used: dict[str, float] = {}
        for pid, (name, seconds) in self._processes().items():
            if pid in self.per_process:
                used[name] = used.get(name, 0.0) + seconds - self.per_process[pid][1]
        ours = sum(used.values())
        out = {name: 100 * seconds / wall for name, seconds in sorted(used.items(), key=lambda kv: -kv[1])}
        out["this run"] = 100 * ours / wall
        out["rest of the machine"] = max(0.0, 100 * (machine - ours) / wall)
        return out


# --- tickpipe's own processes --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def service(
    name: str, argv: Sequence[str], env: dict[str, str], logs: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m tickpipe.cli ARGV`` with ``env``, SIGTERMed when the block ends; its log's tail on failure."""
    log_path = logs / f"{name}.log"
    with open(log_path, "ab") as log:  # noqa: ASYNC230 - opened once, before the process starts
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tickpipe.cli", *argv, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log
        )
        try:
            yield proc
            if proc.returncode is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} during the run")
        except BaseException:
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            print(f"--- {name}'s log, last lines:\n" + "\n".join(tail), file=sys.stderr)
            raise
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    async with asyncio.timeout(30):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def api_ready(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("tickpipe api did not become ready")
            await asyncio.sleep(0.2)


async def fresh(pool: asyncpg.Pool, timeout: float = 120.0) -> None:
    """Until the consumers commit quotes less than a second old (caught up after a start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = await pool.fetchval("SELECT max(received_at) FROM quotes WHERE time > now() - interval '30 seconds'")
        if newest is not None and (datetime.now(UTC) - newest).total_seconds() < 1.0:
            return
        await asyncio.sleep(0.25)
    raise RuntimeError("the consumers did not catch up")


# --- one run -----------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """What stays up across runs."""

    kafka: str
    idempotence: bool
    redis_url: str
    database_url: str
    prefix: str
    symbols: tuple[str, ...]
    folder: Path
    producer_pid: int = 0

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka, "KAFKA_ENABLE_IDEMPOTENCE": str(self.idempotence).lower(),
                "REDIS_URL": self.redis_url, "DATABASE_URL": self.database_url, "KAFKA_TOPIC_PREFIX": self.prefix,
                "LOG_LEVEL": "WARNING"}  # fmt: skip


@dataclass
class Figures:
    """One run's measurements, every latency in ms, sorted."""

    flush_ms: float
    writes_per_s: float
    batch_wait_ms: float
    seconds: float
    quotes_sent: int = 0
    trades_sent: int = 0
    send_minus_t: list[float] = field(default_factory=list)
    live: list[float] = field(default_factory=list)
    expected: int = 0
    duplicates: int = 0
    client_failures: list[str] = field(default_factory=list)
    redis: list[float] = field(default_factory=list)
    api: list[float] = field(default_factory=list)
    durable: list[float] = field(default_factory=list)
    to_producer: list[float] = field(default_factory=list)
    to_kafka: list[float] = field(default_factory=list)
    fetched: list[float] = field(default_factory=list)
    producer_to_commit: list[float] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""
    cpu: dict[str, float] = field(default_factory=dict)


async def one_run(
    stack: Stack, flush_ms: float, writes_per_s: float, batch_wait_ms: float, args: argparse.Namespace
) -> Figures:
    figures = Figures(flush_ms, writes_per_s, batch_wait_ms, args.seconds, load_before=load())
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    tag = f"flush{flush_ms:g}-{writes_per_s:g}-{batch_wait_ms:g}"
    clients_out, listen_out = stack.folder / f"clients-{tag}.msgpack", stack.folder / f"listen-{tag}.msgpack"
    kafka_out = stack.folder / f"kafka-{tag}.msgpack"
    env = stack.env()
    consume_env = {**env, "BATCH_MAX_WAIT_MS": f"{batch_wait_ms:g}"}
    api_env = {**env, "API_PORT": str(port), "WS_FLUSH_INTERVAL_MS": f"{flush_ms:g}",
               "WS_FLUSH_WRITES_PER_S": f"{writes_per_s:g}"}  # fmt: skip
    pool = await asyncpg.create_pool(db.asyncpg_dsn(stack.database_url), min_size=1, max_size=2)
    try:
        async with (
            service(f"consume-{tag}", ["consume", "all", "--no-admin"], consume_env, stack.folder) as consumers,
            service(f"api-{tag}", ["api"], api_env, stack.folder) as api,
        ):
            await api_ready(api_url)
            ws_url = api_url.replace("http://", "ws://") + "/v2/stream"
            async with (
                helper("clients", clients_out, "--url", ws_url, "--count", str(args.clients), "--k", str(WATCHLIST),
                       "--symbols", ",".join(stack.symbols)) as clients,
                helper("listen", listen_out, "--redis", stack.redis_url) as listener,
                helper("kafka", kafka_out, "--kafka", stack.kafka, "--topic", topic("quotes", stack.prefix)) as kafka,
            ):  # fmt: skip
                await fresh(pool)
                await asyncio.sleep(args.warmup)
                gc.collect()
                gc.disable()  # this process sends: no collection pauses inside the window
                SendStamps.take()  # from the window on
                named = {
                    os.getpid(): "simulator (bench process)",
                    stack.producer_pid: "producer",
                    api.pid: "api",
                    consumers.pid: "consumers",
                    clients.pid: "100 WebSocket clients",
                    listener.pid: "Redis listener",
                    kafka.pid: "Kafka reader",
                }
                meter = CpuMeter(named)
                SendStamps.recording = True
                await asyncio.sleep(args.seconds)
                SendStamps.recording = False
                end_ns = time.time_ns()
                figures.cpu = meter.stop()
                gc.enable()
                await asyncio.gather(finish(clients, end_ns), finish(listener, end_ns), finish(kafka, end_ns))
            figures.load_after = load()
            sent = sent_ticks(SendStamps.take())
            await durable_rows(pool, sent, figures)
    finally:
        await pool.close()

    figures.quotes_sent = sum(1 for key in sent if key[0] == "q")
    figures.trades_sent = len(sent) - figures.quotes_sent
    figures.send_minus_t = sorted((stamp - key[2]) / 1e6 for key, stamp in sent.items())
    per_symbol = Counter(key[1] for key in sent if key[0] == "q")
    figures.expected = sum(per_symbol[s] for i in range(args.clients) for s in watchlist(i, stack.symbols, WATCHLIST))

    tally = msgpack.unpackb(clients_out.read_bytes())
    figures.client_failures = tally["failures"]
    redis_latency, at_redis = [], {}
    for now, payload in msgpack.unpackb(listen_out.read_bytes()):
        m = orjson.loads(payload)
        key = (m["T"], m["S"], parse_rfc3339_ns(m["t"]))
        stamp = sent.get(key)
        if stamp is not None:
            redis_latency.append((now - stamp) / 1e6)
            at_redis[key] = now
    figures.redis = sorted(redis_latency)

    live, through_api = [], []
    for records in tally["records"]:  # one client's
        keys = set()
        for now, symbol, t in records:
            key = ("q", symbol, parse_rfc3339_ns(t))
            stamp = sent.get(key)
            if stamp is not None:
                live.append((now - stamp) / 1e6)
                figures.duplicates += key in keys
                keys.add(key)
                if key in at_redis:
                    through_api.append((now - at_redis[key]) / 1e6)
    figures.live, figures.api = sorted(live), sorted(through_api)

    to_kafka, fetched = [], []
    for now, created_ms, value in msgpack.unpackb(kafka_out.read_bytes()):
        event = decode_kafka(value)
        stamp = sent.get(("q", event.symbol, event.timestamp))
        if stamp is not None:
            to_kafka.append((created_ms * 1_000_000 - stamp) / 1e6)
            fetched.append((now - stamp) / 1e6)
    figures.to_kafka, figures.fetched = sorted(to_kafka), sorted(fetched)
    return figures


async def durable_rows(pool: asyncpg.Pool, sent: dict[Key, int], figures: Figures, timeout: float = 60.0) -> None:
    """Wait until the window's quotes and trades are in PostgreSQL (or ``timeout``), then time each row."""
    if not sent:
        return
    low, high = min(k[2] for k in sent), max(k[2] for k in sent)
    start = datetime.fromtimestamp(low / 1e9 - 0.001, UTC)
    end = datetime.fromtimestamp(high / 1e9 + 0.001, UTC)
    count_sql = "SELECT (SELECT count(*) FROM quotes WHERE time BETWEEN $1 AND $2) + " \
                "(SELECT count(*) FROM trades WHERE time BETWEEN $1 AND $2)"  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # polling another process's writes
        if await pool.fetchval(count_sql, start, end) >= len(sent):
            break
        await asyncio.sleep(0.25)
    rows: list[asyncpg.Record] = []
    for table_name, code in (("quotes", "q"), ("trades", "t")):
        rows += await pool.fetch(
            f"SELECT '{code}' AS code, symbol, time_ns,"  # two fixed table names
            " (extract(epoch FROM received_at) * 1000000)::int8 AS received_us,"
            " (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::int8 AS committed_us"
            f" FROM {table_name} WHERE time BETWEEN $1 AND $2",
            start,
            end,
        )
    durable, to_producer, producer_to_commit = [], [], []
    for row in rows:
        stamp = sent.get((row["code"], row["symbol"], row["time_ns"]))
        if stamp is None or row["committed_us"] is None:
            continue
        committed = row["committed_us"] * 1000
        durable.append((committed - stamp) / 1e6)
        if row["received_us"] is not None:
            received = row["received_us"] * 1000
            to_producer.append((received - stamp) / 1e6)
            producer_to_commit.append((committed - received) / 1e6)
    figures.durable, figures.to_producer = sorted(durable), sorted(to_producer)
    figures.producer_to_commit = sorted(producer_to_commit)


# --- the floor ---------------------------------------------------------------------------------------------


async def floor(stack: Stack, rate: float, seconds: float) -> tuple[list[float], int]:
    """Quotes PUBLISHed straight to Redis (``t`` = publish time) -> the plain subscriber: latencies (ms), sent."""
    out = stack.folder / "listen-floor.msgpack"
    async with helper("listen", out, "--redis", stack.redis_url) as listener:
        published = await publish(stack.redis_url, list(stack.symbols[:50]), rate, seconds)
        await finish(listener, 0)  # every PUBLISH was answered: all is in the listener's socket already
    latency = []
    for now, payload in msgpack.unpackb(out.read_bytes()):
        latency.append((now - parse_rfc3339_ns(orjson.loads(payload)["t"])) / 1e6)
    return sorted(latency), sum(published.values())


# --- the whole bench ---------------------------------------------------------------------------------------


def row(name: str, values: Sequence[float], count: str, note: str = "") -> list[str]:
    return [name, count, f"{quantile(values, 0.5):.2f}", f"{quantile(values, 0.99):.2f}",
            f"{values[-1] if values else math.nan:.2f}", note]  # fmt: skip


def verdict(values: Sequence[float], target: float) -> str:
    p99 = quantile(values, 0.99)
    return f"target p99 < {target:g} ms: {'PASS' if p99 < target else 'MISS'}"


def report(floor_ms: list[float], floor_sent: int, runs: list[Figures], args: argparse.Namespace) -> None:
    header = ["", "count", "p50 ms", "p99 ms", "max ms", ""]
    print(f"\nend-to-end live latency: simulator send -> producer -> Redis -> tickpipe api -> {args.clients} "
          f"WebSocket clients, each watching {WATCHLIST} of {SYMBOLS} symbols; quotes at {args.rate:,.0f}/s "
          f"(+ trades at {args.rate * TRADE_RATIO / (1 - TRADE_RATIO):,.0f}/s), "
          f"{args.seconds:g} s per run")  # fmt: skip
    rows = [row("floor: PUBLISH -> plain Redis subscriber", floor_ms, f"{len(floor_ms):,} / {floor_sent:,}",
                "direct, same rate, measured first in this run")]  # fmt: skip
    for f in runs:
        name = flush_name(f)
        rows.append(row(f"{name}: send -> plain Redis subscriber", f.redis, f"{len(f.redis):,} / {f.quotes_sent:,}",
                        "the producer's share, same window"))  # fmt: skip
        rows.append(row(f"{name}: Redis -> api -> client", f.api, f"{len(f.api):,}",
                        "per quote: client read - the plain subscriber's read"))  # fmt: skip
        rows.append(row(f"{name}: send -> WebSocket client", f.live, f"{len(f.live):,} / {f.expected:,}",
                        verdict(f.live, LIVE_TARGET_MS)))  # fmt: skip
    print(table(header, rows))
    for f in runs:
        extra = f"; {f.duplicates} delivered twice to one client" if f.duplicates else ""
        if f.client_failures:
            extra = f"; client failures: {len(f.client_failures)} ({f.client_failures[0]})"
        print(f"  {flush_name(f)}: {f.quotes_sent / f.seconds:,.0f} quotes/s sent; simulator's own "
              f"send - t (its ticker's batching, not counted above): p50 {quantile(f.send_minus_t, 0.5):.2f} ms, "
              f"p99 {quantile(f.send_minus_t, 0.99):.2f} ms{extra}; {f.load_after} after the run")  # fmt: skip
    for f in runs:
        cores = 100 * (os.cpu_count() or 1)
        parts = ", ".join(f"{name} {pct:.0f}%" for name, pct in f.cpu.items() if name not in ("this run",))
        print(f"  CPU in the {flush_name(f)} window, % of one core ({cores}% in all): "
              f"this run {f.cpu.get('this run', 0):.0f}% ({parts})")  # fmt: skip
    for a in runs[:-1] if len(runs) >= 2 else ():
        b = runs[-1]
        print(f"  what the flush costs: {flush_name(a)} rather than {flush_name(b)} "
              f"adds {quantile(a.api, 0.5) - quantile(b.api, 0.5):+.2f} ms at p50 and "
              f"{quantile(a.api, 0.99) - quantile(b.api, 0.99):+.2f} ms at p99 to Redis -> api -> client "
              f"({quantile(a.live, 0.5) - quantile(b.live, 0.5):+.2f} / "
              f"{quantile(a.live, 0.99) - quantile(b.live, 0.99):+.2f} ms end to end)")  # fmt: skip

    print(f"\ndurable freshness: simulator send -> row committed in PostgreSQL (commit time = "
          f"pg_xact_commit_timestamp(xmin), microseconds), via the producer -> Kafka -> tickpipe consume all; "
          f"quotes and trades, {args.rate / (1 - TRADE_RATIO):,.0f} events/s")  # fmt: skip
    rows = []
    for f in runs:
        name = f"BATCH_MAX_WAIT_MS={f.batch_wait_ms:g}"
        sent = f.quotes_sent + f.trades_sent
        rows.append(row(f"{name}: send -> commit", f.durable, f"{len(f.durable):,} / {sent:,}",
                        verdict(f.durable, DURABLE_TARGET_MS)))  # fmt: skip
        rows.append(row("  send -> producer read", f.to_producer, f"{len(f.to_producer):,}",
                        "received_at (the producer's clock read)"))  # fmt: skip
        rows.append(row("  send -> record handed to aiokafka", f.to_kafka, f"{len(f.to_kafka):,}",
                        "quotes: the record's CreateTime (1 ms resolution)"))  # fmt: skip
        rows.append(row("  send -> fetched back from Kafka", f.fetched, f"{len(f.fetched):,}",
                        "quotes: a plain aiokafka reader (own process, defaults)"))  # fmt: skip
        rows.append(row("  producer read -> commit", f.producer_to_commit, f"{len(f.producer_to_commit):,}",
                        "producer batching + Kafka + batch wait + COPY + commit"))  # fmt: skip
    print(table(header, rows))
    print(f"\nmachine: {runs[-1].load_after if runs else load()} at the end; {runs[0].load_before if runs else ''} "
          "before the first run")  # fmt: skip


async def run(args: argparse.Namespace, stack: Stack, settings: Settings) -> None:
    topics = [*(topic(family, stack.prefix) for family in FAMILY_OF.values()), dlq_topic(settings)]
    await topics_ready(stack.kafka, topics, settings.kafka_partitions)
    async with redis.asyncio.Redis.from_url(stack.redis_url) as client:
        # Listed as a producer with the default prefix lists them: the API parks symbols listed nowhere.
        await client.sadd(SYMBOLS_KEY, *stack.symbols)

    floor_ms, floor_sent = await floor(stack, args.rate, args.floor_seconds)
    print(f"floor measured: {len(floor_ms):,} of {floor_sent:,}; {load()}", flush=True)

    SendStamps.install()
    config = SimulatorConfig(rate=args.rate / (1 - TRADE_RATIO), batch_size=25, symbols=stack.symbols)
    producer_env = {**stack.env(), "SPOOL_DIR": str(stack.folder / "spool"), "PRODUCER_ADMIN_PORT": "0",
                    "BACKFILL_ENABLED": "false"}  # fmt: skip
    runs: list[Figures] = []
    async with Simulator(config) as sim:
        producer_env["ALPACA_STREAM_URL"] = sim.url
        async with service("producer", ["producer"], producer_env, stack.folder) as producer:
            stack.producer_pid = producer.pid
            await sim.wait_for(lambda: sim.sent_total > 0, timeout=120)
            for flush_ms, writes, batch_wait_ms in zip(
                args.flush_ms, args.flush_writes, args.batch_wait_ms, strict=True
            ):
                runs.append(await one_run(stack, flush_ms, writes, batch_wait_ms, args))
                f = runs[-1]
                print(f"run {flush_name(f)} / batch wait {batch_wait_ms:g} ms: live p99 "
                      f"{quantile(f.live, 0.99):.2f} ms, durable p99 {quantile(f.durable, 0.99):.2f} ms; "
                      f"{f.load_after}", flush=True)  # fmt: skip
    report(floor_ms, floor_sent, runs, args)


def flush_name(f: Figures) -> str:
    if f.writes_per_s <= 0:
        return f"WS_FLUSH_INTERVAL_MS={f.flush_ms:g} fixed"
    return f"WS_FLUSH_INTERVAL_MS={f.flush_ms:g} adaptive ({f.writes_per_s:,.0f} writes/s)"


def intervals(text: str, default: float) -> list[float]:
    return [default if part.strip() == "default" else float(part) for part in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in ("clients", "listen", "kafka"):
        return helper_main(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each window")
    parser.add_argument("--floor-seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="quotes per second (trades come on top)")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--flush-ms", default="default,default,1",
                        help="WS_FLUSH_INTERVAL_MS of each run, comma list ('default': the setting's)")  # fmt: skip
    parser.add_argument("--flush-writes", default="default,0,0",
                        help="WS_FLUSH_WRITES_PER_S of each run (0: fixed), paired with --flush-ms")  # fmt: skip
    parser.add_argument("--batch-wait-ms", default="default,default,20",
                        help="BATCH_MAX_WAIT_MS of each run (the consumers'), paired with --flush-ms")  # fmt: skip
    parser.add_argument("--broker", choices=KINDS, default="apache",
                        help="embedded broker (ignored when KAFKA_BOOTSTRAP_SERVERS is set)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="8 s windows, 3 s floor")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.floor_seconds = 8.0, 3.0
    fields = Settings.model_fields
    args.flush_ms = intervals(args.flush_ms, fields["ws_flush_interval_ms"].default)
    args.flush_writes = intervals(args.flush_writes, fields["ws_flush_writes_per_s"].default)
    args.batch_wait_ms = intervals(args.batch_wait_ms, fields["batch_max_wait_ms"].default)
    if not len(args.flush_ms) == len(args.flush_writes) == len(args.batch_wait_ms):
        parser.error("--flush-ms, --flush-writes and --batch-wait-ms need as many values each")

    (broker,) = chosen([args.broker], os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    print(f"latency bench on {broker.description}; {load()} at start", flush=True)
    prefix = f"lat{uuid.uuid4().hex[:6]}."
    with tempfile.TemporaryDirectory(prefix="tickpipe-bench-latency-") as tmp, ExitStack() as services:
        folder = Path(tmp)
        kafka = services.enter_context(running(broker, folder / "kafka"))
        redis_url = services.enter_context(EmbeddedRedis(folder / "redis")).url
        pg = services.enter_context(
            EmbeddedPostgres(folder / "pg", fresh=True, settings={"track_commit_timestamp": "on"})
        )
        db.upgrade(pg.url)
        settings = load_settings(kafka_topic_prefix=prefix)
        stack = Stack(kafka, broker.idempotence, redis_url, pg.url, prefix, synthetic_symbols(SYMBOLS), folder)
        print(f"services up; {load()}", flush=True)
        run_loop(run(args, stack, settings))
    return 0


def run_loop(coro: Coroutine[Any, Any, None]) -> None:
    """On uvloop when installed, as the API runs."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def helper_main(argv: Iterable[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["clients", "listen", "kafka"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--drain", type=float, default=DRAIN_S)
    parser.add_argument("--url")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--k", type=int, default=WATCHLIST)
    parser.add_argument("--symbols", default="")
    parser.add_argument("--redis")
    parser.add_argument("--kafka")
    parser.add_argument("--topic")
    args = parser.parse_args(list(argv))
    roles = {"clients": clients_main, "listen": listen_main, "kafka": kafka_main}
    run_loop(roles[args.role](args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
