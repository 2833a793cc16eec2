"""How fast the producer fans the upstream out to Redis and Kafka, next to the naive way, and its live latency.

Four measurements in one run, against a real Redis and a real
Kafka-protocol broker (``REDIS_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` if set,
else embedded ones), on each broker in turn:

1. **throughput**: the simulator in burst mode, in its own process, sends N
   events; the producer (this process) reads them and both sinks finish
   them. events/s = N / (last event acknowledged by Kafka and published on
   Redis - first event read); the producer process's CPU time per event over
   the same window is printed with it.
2. **naive baseline**, same simulator, same services: one
   ``await redis.publish`` and one ``await producer.send_and_wait`` per event
   in the read loop, the pattern in the seed projects.
3. **beside the other feeds**: the same burst, with the producers of the
   other feeds (crypto, options, news, trade_updates; ``--feeds`` chooses)
   streaming beside it, each its own process as ``tickpipe up`` runs them,
   on the same Kafka and Redis, reading one paced simulator of their own at
   its default live-like paces (crypto and options about 1,000 events/s each,
   the options producer on the simulator's whole chain of 2,560 contracts,
   news 2 stories/s, order updates 5/s). The stock figure next to the one of
   step 1 says whether carrying more feeds slows the stock path (issue #16).
   On a small machine every extra process takes CPU from the stock producer,
   so its throughput drop is partly the machine's; what isolates the stock
   path is the **CPU time per event** of the stock producer's process (user
   + system over the timed window, from ``psutil``), printed for both bursts
   side by side with the share of a core it got, and beside them what each
   other producer carried and the CPU it took meanwhile. ``--no-feeds`` skips
   this step.
4. **live latency** at 5,000 events/s: the simulator (this process) stamps
   each frame as it hands it to the socket; the producer runs as its own
   process (``python -m producer.cli``); a raw Redis subscriber, in a third
   process, stamps each message as it arrives. p50/p99 of the difference.

Brokers: embedded Apache Kafka with the idempotent producer on (as deployed),
then embedded Tansu with it off (Tansu refuses InitProducerId); ``--brokers
apache`` for one. With ``KAFKA_BOOTSTRAP_SERVERS`` set, that broker alone,
labelled "given" (idempotence from ``KAFKA_ENABLE_IDEMPOTENCE``, default on).
Before each measurement its topics are made and the broker warmed up (a JVM
fresh from its start is slower), off the clock (``bench.brokers.topics_ready``).
A final table gives every figure per broker beside its baseline.

    .venv/bin/python bench/producer.py [--events 500000] [--naive-events 5000] [--latency-seconds 10]
                                       [--brokers apache,tansu] [--feeds crypto,options,news,trade_updates | --no-feeds]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hiredis
import msgpack
import orjson
import psutil
import redis.asyncio
from websockets.asyncio.client import connect

SELF = Path(__file__).resolve()
ROOT = SELF.parent.parent
sys.path.insert(0, str(ROOT))

from bench.brokers import Broker, add_brokers_option, chosen, running, table, topics_ready  # noqa: E402
from bench.simulator import SendStamps, start_simulator  # noqa: E402
from producer.service import ProducerService  # noqa: E402
from simulator import Simulator, SimulatorConfig  # noqa: E402
from simulator.options import chain as option_chain  # noqa: E402
from simulator.symbols import synthetic_symbols  # noqa: E402
from tickpipe.codecs import decode_frame, encode_kafka, encode_live, parse_rfc3339_ns  # noqa: E402
from tickpipe.dev.embedded_redis import EmbeddedRedis  # noqa: E402
from tickpipe.health import doc_key  # noqa: E402
from tickpipe.kafka import dlq_topic, make_producer  # noqa: E402
from tickpipe.names import FAMILY_OF, topic  # noqa: E402
from tickpipe.settings import FEED_NAMES, FEED_SETTINGS, Settings, load_settings  # noqa: E402

#: Events a second into both sinks the producer must reach (issue #15; 50,000 before it).
TARGET_RATE = 100_000
#: Most CPU time per event the stock producer may take beside the other feeds, as a multiple of alone (issue #16:
#: the stock path must not slow down; its throughput on a small machine also shows the cores the feeds take).
CPU_TOLERANCE = 1.10
ALL_TYPES = "quotes,trades,bars,updatedBars,dailyBars,statuses"
SUBSCRIBE_ALL = {
    "action": "subscribe",
    **{c: ["*"] for c in ("quotes", "trades", "bars", "updatedBars", "dailyBars", "statuses")},
}


# --- services and the simulator process ------------------------------------------------------------


def services(stack: ExitStack, folder: Path, broker: Broker) -> tuple[str, str]:
    kafka = stack.enter_context(running(broker, folder / "kafka"))
    redis_url = os.environ.get("REDIS_URL") or stack.enter_context(EmbeddedRedis(folder / "redis")).url
    return kafka, redis_url


@contextmanager
def burst(*flags: str) -> Iterator[str]:
    """The simulator in burst mode, 50 symbols, in its own process; its URL. Stopped when the block ends."""
    sim, url = start_simulator("--burst", "--symbols", "50", *flags)
    try:
        yield url
    finally:
        sim.terminate()
        sim.wait(10)


def settings_for(broker: Broker, kafka: str, redis_url: str, upstream: str, spool: Path, **extra: Any) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=kafka, kafka_enable_idempotence=broker.idempotence, redis_url=redis_url,
        kafka_topic_prefix=f"bench{uuid.uuid4().hex[:6]}.", alpaca_stream_url=upstream, spool_dir=spool,
        subscribed_types=ALL_TYPES, producer_admin_port=0, log_level="WARNING", **extra,
    )  # fmt: skip


# --- 1. the producer, burst ----------------------------------------------------------------------


def producer_topics(settings: Settings) -> list[str]:
    """The topics a producer with these settings writes: one per family, and its dead letters."""
    return [*(topic(family, settings.kafka_topic_prefix) for family in FAMILY_OF.values()), dlq_topic(settings)]


@dataclass
class Burst:
    """One burst through the stock producer: its rate, and what it cost the producer's process."""

    rate: float
    #: CPU time (user + system, every thread) of the stock producer's process per event over the timed
    #: window, in microseconds: the stock path's own cost, whatever else shares the cores.
    cpu_us: float
    #: That CPU time over the window's wall time: the share of a core the stock producer got.
    core: float
    stats: dict[str, Any]


async def producer_throughput(settings: Settings, events: int, others: Others | None = None) -> Burst:
    """The stock producer in this process: events/s from its first event read to the last one in both sinks, and
    its process's CPU time over the same window (and, with ``others``, theirs)."""
    assert settings.kafka_bootstrap_servers
    await topics_ready(settings.kafka_bootstrap_servers, producer_topics(settings), settings.kafka_partitions)
    me = psutil.Process()
    watched = others.processes() if others else {}
    if others:
        assert settings.redis_url
        for b, count in zip(others.producers, await others.counts(settings.redis_url), strict=True):
            b.count = count
    service = ProducerService(settings, admin=False)
    task = asyncio.create_task(service.run())
    first = done = 0.0
    cpu_first = cpu_done = 0.0
    theirs: dict[str, float] = {}
    try:
        while not done:
            await asyncio.sleep(0.002)
            if task.done():
                task.result()
            now = time.perf_counter()
            if not first and service.upstream.events:
                first, cpu_first = now, cpu_seconds(me)
                theirs = {name: cpu_seconds(proc) for name, proc in watched.items()}
            live = service.live.published + service.live.dropped.total()
            if service.durable.stats.acked >= events and live >= events:
                done, cpu_done = now, cpu_seconds(me)
                theirs = {name: (cpu_seconds(proc) - theirs[name]) / (done - first) for name, proc in watched.items()}
    finally:
        service.stop()
        await task
    if others:
        assert settings.redis_url
        await asyncio.sleep(settings.health_interval_s * 1.5)  # their health documents rewritten since the burst
        for b, count in zip(others.producers, await others.counts(settings.redis_url), strict=True):
            if b.count and count and count[1] > b.count[1]:
                b.rate = (count[0] - b.count[0]) / (count[1] - b.count[1])
            b.core = theirs.get(b.feed)
        others.simulator_core = theirs.get("simulator")
    stats = {
        "redis_dropped": service.live.dropped.total(),
        "spooled": service.durable.stats.spooled,
        "reconnects": service.upstream.reconnects.total(),
    }
    cpu = cpu_done - cpu_first
    return Burst(events / (done - first), cpu / events * 1e6, cpu / (done - first), stats)


#: The feeds that run beside the stock one, as ``tickpipe up`` runs them with ALPACA_FEEDS naming them all.
OTHER_FEEDS = ("crypto", "options", "news", "trade_updates")


def feeds_option(value: str) -> list[str]:
    """``--feeds``: a comma list of :data:`OTHER_FEEDS`, in the order given."""
    feeds = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [feed for feed in feeds if feed not in OTHER_FEEDS]
    if unknown or not feeds:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(OTHER_FEEDS)}, got {value!r}")
    return list(dict.fromkeys(feeds))


def cpu_seconds(proc: psutil.Process) -> float:
    """A process's CPU time so far, user + system, every thread; 0 once it is gone."""
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


@dataclass
class Beside:
    """A producer of another feed, in its own process, and what it did while the stock burst ran."""

    feed: str
    proc: subprocess.Popen[bytes]
    health_key: str
    #: Its health document's event count and time before the burst, then its rate over the burst (events/s).
    count: tuple[float, float] | None = None
    rate: float | None = None
    #: The share of a core it used during the timed window.
    core: float | None = None


@dataclass
class Others:
    """The other feeds' producers and the paced simulator they read, running beside the stock burst."""

    producers: list[Beside]
    simulator: subprocess.Popen[str]
    #: The simulator's share of a core during the timed window.
    simulator_core: float | None = None

    def processes(self) -> dict[str, psutil.Process]:
        procs = {b.feed: psutil.Process(b.proc.pid) for b in self.producers}
        return procs | {"simulator": psutil.Process(self.simulator.pid)}

    async def counts(self, redis_url: str) -> list[tuple[float, float] | None]:
        """Each producer's (events read, time) from its health document (rewritten every second)."""
        client = redis.asyncio.from_url(redis_url)
        try:
            out: list[tuple[float, float] | None] = []
            for b in self.producers:
                raw = await client.get(b.health_key)
                doc = orjson.loads(raw) if raw else {}
                count, at = doc.get("count"), doc.get("updated_at")
                out.append((float(count), float(at)) if count is not None and at is not None else None)
            return out
        finally:
            await client.aclose()


def feed_env(broker: Broker, settings: Settings, feed: str, upstream: str) -> dict[str, str]:
    """The environment of ``tickpipe producer --feed <feed>``: the stock producer's Kafka, Redis, topic prefix
    and spool; the paced simulator's host for every stream (each feed's path on it, as ALPACA_STREAM_URL
    elsewhere than Alpaca gives); for options, the simulator's whole chain (OPTION_SYMBOLS has no ``*``)."""
    assert settings.kafka_bootstrap_servers and settings.redis_url
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "REDIS_URL": settings.redis_url,
           "KAFKA_ENABLE_IDEMPOTENCE": str(broker.idempotence).lower(), "ALPACA_STREAM_URL": upstream,
           "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix, "SPOOL_DIR": str(settings.spool_path),
           FEED_SETTINGS[FEED_NAMES[feed].name].admin_port.upper(): "0", "LOG_LEVEL": "WARNING"}  # fmt: skip
    if feed == "options":
        # The simulator lists the default chain of its start date; a contract it does not list, it adds.
        env["OPTION_SYMBOLS"] = ",".join(option_chain(start_ns=time.time_ns()))
    return env


@contextmanager
def other_feeds(broker: Broker, settings: Settings, feeds: list[str]) -> Iterator[Others]:
    """``tickpipe producer --feed <feed>`` for each of ``feeds``, each in its own process as ``tickpipe up`` runs
    them, on the same Kafka and Redis as ``settings``, reading one paced simulator of their own.

    That simulator serves every feed at its default live-like pace: crypto and options about 1,000 events/s
    each (``--rate``'s default; the crypto book changes and trades, quotes and bars on top), news 2 stories/s
    (``news_rate``), order updates 5/s (``order_rate``). The burst simulator could not serve them: it counts
    every event it sends towards ``--count``, whichever feed it went to. Yields once every producer has read
    events (its health document counts some), so the stock measurement runs beside producers that are
    streaming, not starting.
    """
    assert settings.kafka_bootstrap_servers and settings.redis_url
    sim, upstream = start_simulator()
    producers: list[Beside] = []
    try:
        topics = [topic(word, settings.kafka_topic_prefix) for feed in feeds for word in FEED_NAMES[feed].words]
        asyncio.run(topics_ready(settings.kafka_bootstrap_servers, topics, settings.kafka_partitions, warm_up=0))
        for feed in feeds:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tickpipe.cli", "producer", "--feed", feed],
                cwd=ROOT, env=feed_env(broker, settings, feed, upstream),
            )  # fmt: skip
            key = doc_key("producer", f"{FEED_NAMES[feed].name}-{socket.gethostname()}-{proc.pid}",
                          settings.kafka_topic_prefix)  # fmt: skip
            producers.append(Beside(feed, proc, key))
        others = Others(producers, sim)
        redis_url = settings.redis_url

        async def streaming() -> None:
            deadline = time.monotonic() + 60
            while True:
                counts = await others.counts(redis_url)
                if all(c and c[0] > 0 for c in counts):
                    return
                for b, c in zip(producers, counts, strict=True):
                    if b.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"expected the {b.feed} producer to stream within 60 s (exit {b.proc.poll()}, health {c})"
                        )
                await asyncio.sleep(0.2)

        asyncio.run(streaming())
        yield others
        for b in producers:
            if b.proc.poll() is not None:
                raise RuntimeError(f"the {b.feed} producer stopped during the measurement (exit {b.proc.returncode})")
    finally:
        for b in producers:
            if b.proc.poll() is None:
                b.proc.send_signal(signal.SIGTERM)
        for b in producers:
            try:
                b.proc.wait(30)
            except subprocess.TimeoutExpired:
                b.proc.kill()
                b.proc.wait(10)
        sim.terminate()
        sim.wait(10)


# --- 2. the naive way ------------------------------------------------------------------------------


async def naive_throughput(kafka: str, redis_url: str, url: str, events: int, settings: Settings) -> float:
    """One awaited PUBLISH and one awaited send_and_wait per event, in the read loop."""
    topics = {code: topic(family, settings.kafka_topic_prefix) for code, family in FAMILY_OF.items()}
    await topics_ready(kafka, topics.values(), settings.kafka_partitions)
    producer = make_producer(settings, kafka, linger_ms=0)  # the naive pattern's default: no linger
    await producer.start()
    client = redis.asyncio.from_url(redis_url)
    try:
        async with connect(url, additional_headers={"Content-Type": "application/msgpack"}, max_size=2**24) as ws:
            await ws.recv()
            await ws.send(msgpack.packb({"action": "auth", "key": "k", "secret": "s"}))
            await ws.recv()
            await ws.send(msgpack.packb(SUBSCRIBE_ALL))
            await ws.recv()
            seen = 0
            began = time.perf_counter()
            while seen < events:
                frame = await ws.recv()
                for event in decode_frame(frame, time.time_ns()).events:
                    await client.publish(f"{event.family}:{event.symbol}", encode_live(event))
                    await producer.send_and_wait(
                        topics[event.type_code], encode_kafka(event), key=event.symbol.encode()
                    )
                    seen += 1
                    if seen == events:
                        break
            return seen / (time.perf_counter() - began)
    finally:
        await producer.stop()
        await client.aclose()


# --- 3. live latency -------------------------------------------------------------------------------


def sent_at(frames: list[tuple[int, bytes | str]]) -> dict[tuple[str, str, int], int]:
    """The send time of every event in the msgpack ``frames`` (:meth:`SendStamps.take`), by (T, S, t)."""
    out: dict[tuple[str, str, int], int] = {}
    for stamp, frame in frames:
        if not isinstance(frame, bytes):
            continue
        for m in msgpack.unpackb(frame, timestamp=0):
            if isinstance(m, dict) and isinstance(m.get("t"), msgpack.Timestamp):
                out.setdefault((m["T"], m["S"], m["t"].to_unix_nano()), stamp)
    return out


async def subscribe_raw(
    redis_url: str, received: list[tuple[int, bytes]], ready: asyncio.Event, flowing: asyncio.Event
) -> None:
    """PSUBSCRIBE with a bare socket and hiredis, stamping each read: the subscriber adds no latency of its own."""
    from redis.asyncio.connection import parse_url

    options = parse_url(redis_url)
    reader, writer = await asyncio.open_connection(options.get("host", "127.0.0.1"), options.get("port", 6379))
    writer.write(b"*4\r\n$10\r\nPSUBSCRIBE\r\n$8\r\nquotes:*\r\n$8\r\ntrades:*\r\n$6\r\nbars:*\r\n")
    parser = hiredis.Reader()
    try:
        while True:
            data = await reader.read(1 << 16)
            now = time.time_ns()
            if not data:
                return
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if reply[0] == b"pmessage":
                    received.append((now, reply[3]))
                    flowing.set()
                else:
                    ready.set()
    finally:
        writer.close()


async def live_latency(
    broker: Broker, kafka: str, redis_url: str, folder: Path, seconds: float, rate: int
) -> tuple[float, float, int]:
    """Simulator here, producer and subscriber in processes of their own: nothing shares a loop with the stamps."""
    SendStamps.install()
    SendStamps.recording = True
    out = folder / "received.msgpack"
    listener = await asyncio.create_subprocess_exec(
        sys.executable, str(SELF), "--subscriber", redis_url, str(out),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert listener.stdout is not None
    if (await listener.stdout.readline()).strip() != b"ready":
        raise RuntimeError("the subscriber process did not start")
    prefix = f"lat{uuid.uuid4().hex[:6]}."
    settings = load_settings(kafka_topic_prefix=prefix)  # the producer process's, for its topics
    await topics_ready(kafka, producer_topics(settings), settings.kafka_partitions)
    config = SimulatorConfig(rate=rate, batch_size=25, symbols=synthetic_symbols(50))
    async with Simulator(config) as sim:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka,
               "KAFKA_ENABLE_IDEMPOTENCE": "true" if broker.idempotence else "false",
               "REDIS_URL": redis_url, "ALPACA_STREAM_URL": sim.url, "SUBSCRIBED_TYPES": ALL_TYPES,
               "SPOOL_DIR": str(folder / "spool"), "PRODUCER_ADMIN_PORT": "0", "LOG_LEVEL": "WARNING",
               "KAFKA_TOPIC_PREFIX": prefix}  # fmt: skip
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "producer.cli", cwd=ROOT, env=env)
        try:
            await sim.wait_for(lambda: sim.sent_total > 0, timeout=60)  # connected end to end
            await asyncio.sleep(1.0)  # warm-up
            SendStamps.take()  # the window starts
            await asyncio.sleep(seconds)
            sent = sent_at(SendStamps.take())  # the window: what was sent during it
            await asyncio.sleep(0.5)  # its last updates on their way
        finally:
            proc.terminate()
            await proc.wait()
            listener.terminate()
            await listener.wait()
    delays = []
    for stamp, payload in msgpack.unpackb(out.read_bytes()):
        message = orjson.loads(payload)
        key = (message["T"], message["S"], parse_rfc3339_ns(message["t"]))
        if key in sent:
            delays.append((stamp - sent[key]) / 1e6)
    if len(delays) < 100:
        raise RuntimeError(f"only {len(delays)} live updates matched a sent frame")
    cuts = statistics.quantiles(delays, n=100)
    return cuts[49], cuts[98], len(delays)


def subscriber_main(redis_url: str, out: Path) -> None:
    """``--subscriber URL FILE``: print ``ready`` once subscribed, stamp every update until SIGTERM, save them."""
    received: list[tuple[int, bytes]] = []

    async def run() -> None:
        stop, subscribed, flowing = asyncio.Event(), asyncio.Event(), asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        task = asyncio.create_task(subscribe_raw(redis_url, received, subscribed, flowing))
        await subscribed.wait()
        print("ready", flush=True)
        await stop.wait()
        task.cancel()

    asyncio.run(run())
    out.write_bytes(msgpack.packb(received))


@dataclass
class Figures:
    """Every figure of one broker's run."""

    broker: Broker
    alone: Burst
    naive: float
    #: The same burst with the other feeds' producers streaming beside it (None: not measured).
    beside: Burst | None
    others: Others | None
    p50: float
    p99: float
    samples: int


def measure(broker: Broker, tmp: Path, args: argparse.Namespace) -> Figures:
    """The measurements on one broker."""
    # Each measurement gets services of its own (embedded ones are fresh), so none inherits
    # the previous one's load: Tansu keeps every record in memory.
    with ExitStack() as stack:
        folder = tmp / "throughput"
        kafka, redis_url = services(stack, folder, broker)
        url = stack.enter_context(burst("--count", str(args.events)))
        settings = settings_for(broker, kafka, redis_url, url, folder / "spool", live_queue_size=args.events)
        alone = asyncio.run(producer_throughput(settings, args.events))

    beside = others = None
    if args.feeds:
        with ExitStack() as stack:
            folder = tmp / "beside"
            kafka, redis_url = services(stack, folder, broker)
            url = stack.enter_context(burst("--count", str(args.events)))
            settings = settings_for(broker, kafka, redis_url, url, folder / "spool", live_queue_size=args.events)
            others = stack.enter_context(other_feeds(broker, settings, args.feeds))
            beside = asyncio.run(producer_throughput(settings, args.events, others))

    with ExitStack() as stack:
        folder = tmp / "naive"
        kafka, redis_url = services(stack, folder, broker)
        url = stack.enter_context(burst())
        settings = settings_for(broker, kafka, redis_url, url, folder / "spool")
        naive = asyncio.run(naive_throughput(kafka, redis_url, url, args.naive_events, settings))

    with ExitStack() as stack:
        folder = tmp / "latency"
        kafka, redis_url = services(stack, folder, broker)
        p50, p99, samples = asyncio.run(
            live_latency(broker, kafka, redis_url, folder, args.latency_seconds, args.latency_rate)
        )
    return Figures(broker, alone, naive, beside, others, p50, p99, samples)


def sinks(burst: Burst) -> str:
    return f"Redis drops {burst.stats['redis_dropped']}, spooled {burst.stats['spooled']}"


def meanwhile(others: Others) -> str:
    """What each other feed's producer carried and the CPU it took while the stock burst ran."""

    def core(share: float | None) -> str:
        return "-" if share is None else f"{share:.2f}"

    parts = [
        f"{b.feed} {'-' if b.rate is None else f'{b.rate:,.0f}'} events/s, {core(b.core)} of a core"
        for b in others.producers
    ]
    return "; ".join(parts) + f"; their simulator {core(others.simulator_core)} of a core"


def report(f: Figures, args: argparse.Namespace) -> None:
    """One broker's figures, as soon as they are in."""
    a, b = f.alone, f.beside
    lines = [
        f"{f.broker.description}:",
        f"  producer, simulator burst -> Redis + Kafka: {a.rate:,.0f} events/s over {args.events:,} events "
        f"(baseline, one awaited publish + send_and_wait per event: {f.naive:,.0f} events/s; "
        f"{a.rate / f.naive:,.1f}x); {sinks(a)}",
        f"    the stock producer's process over that burst: {a.cpu_us:.2f} us CPU per event (user + system), "
        f"{a.core:.2f} of a core",
    ]
    if b and f.others:
        lines += [
            f"  the same burst beside the {', '.join(args.feeds)} producers: {b.rate:,.0f} events/s "
            f"({b.rate / a.rate:.2f} of the stock producer alone, {a.rate:,.0f}); {sinks(b)}",
            f"    the stock producer's process over it: {b.cpu_us:.2f} us CPU per event ({b.cpu_us / a.cpu_us:.2f} of "
            f"alone, {a.cpu_us:.2f}: the stock path's own cost), {b.core:.2f} of a core (alone {a.core:.2f})",
            f"    meanwhile: {meanwhile(f.others)}",
        ]
    lines.append(
        f"  live latency at {args.latency_rate:,} events/s, simulator send -> Redis subscriber: "
        f"p50 {f.p50:.2f} ms, p99 {f.p99:.2f} ms over {f.samples:,} updates"
    )
    print("\n".join(lines), flush=True)


def summary(results: list[Figures], args: argparse.Namespace) -> None:
    """The final table, a broker per row, and the targets."""
    header = ["broker", "idempotence", "burst -> Redis + Kafka", "beside the feeds", "CPU/event alone",
              "CPU/event beside", "naive baseline", "burst/naive", "Redis drops", "spooled", "live p50", "live p99",
              "updates"]  # fmt: skip
    rows = [
        [f.broker.label, "on" if f.broker.idempotence else "off", f"{f.alone.rate:,.0f} events/s",
         f"{f.beside.rate:,.0f} events/s ({f.beside.rate / f.alone.rate:.2f})" if f.beside else "-",
         f"{f.alone.cpu_us:.2f} us", f"{f.beside.cpu_us:.2f} us ({f.beside.cpu_us / f.alone.cpu_us:.2f})" if f.beside
         else "-", f"{f.naive:,.0f} events/s", f"{f.alone.rate / f.naive:,.1f}x",
         f"{f.alone.stats['redis_dropped']:,}", f"{f.alone.stats['spooled']:,}", f"{f.p50:.2f} ms", f"{f.p99:.2f} ms",
         f"{f.samples:,}"]
        for f in results
    ]  # fmt: skip
    print()
    print(f"producer bench: burst of {args.events:,} events, naive baseline over {args.naive_events:,}, "
          f"live latency {args.latency_seconds:g} s at {args.latency_rate:,} events/s; "
          + (f"beside: the {', '.join(args.feeds)} producers; " if args.feeds else "")
          + f"baselines on the same broker, same run; load average {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} cores)")  # fmt: skip
    print(table(header, rows))
    for f in results:
        b = f.beside
        kept = b is not None and b.cpu_us <= CPU_TOLERANCE * f.alone.cpu_us
        print(
            f"targets on {f.broker.description}: >= {TARGET_RATE:,} events/s -> "
            f"{'met' if f.alone.rate >= TARGET_RATE else 'NOT met'}; "
            f">= 20x naive -> {'met' if f.alone.rate >= 20 * f.naive else 'NOT met'}; "
            f"p99 < 5 ms -> {'met' if f.p99 < 5 else 'NOT met'}"
            + (
                f"; beside the feeds: >= {TARGET_RATE:,} events/s -> {'met' if b.rate >= TARGET_RATE else 'NOT met'}, "
                f"CPU per event <= {CPU_TOLERANCE:.2f}x alone -> "
                f"{'met' if kept else 'NOT met'} ({b.cpu_us / f.alone.cpu_us:.2f}x)"
                if b
                else ""
            )
        )
    idempotent = [f for f in results if f.broker.idempotence]
    verdict = ", ".join(f"{f.broker.label} {'met' if f.alone.rate >= TARGET_RATE else 'NOT met'} "
                        f"({f.alone.rate:,.0f} events/s)"
                        for f in idempotent) or "not measured (no broker here ran with idempotence on)"  # fmt: skip
    print(f"target >= {TARGET_RATE:,} events/s into both sinks with the idempotent producer on: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--latency-rate", type=int, default=5_000)
    parser.add_argument(
        "--feeds",
        type=feeds_option,
        default=list(OTHER_FEEDS),
        metavar=",".join(OTHER_FEEDS),
        help="the feeds whose producers stream beside the stock one in the second burst (default: all of them)",
    )
    parser.add_argument(
        "--no-feeds", dest="feeds", action="store_const", const=[], help="skip the burst beside the other feeds"
    )
    add_brokers_option(parser)
    parser.add_argument("--subscriber", nargs=2, metavar=("REDIS_URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        subscriber_main(args.subscriber[0], Path(args.subscriber[1]))
        return
    brokers = chosen(args.brokers, os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    print(f"producer bench on {', '.join(b.description for b in brokers)}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="tickpipe-bench-") as tmp:
        for n, broker in enumerate(brokers):
            results.append(measure(broker, Path(tmp) / str(n), args))
            report(results[-1], args)
    summary(results, args)


if __name__ == "__main__":
    main()
