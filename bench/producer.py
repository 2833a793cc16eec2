"""How fast the producer fans the upstream out to Redis and Kafka, next to the naive way, and its live latency.

Three measurements in one run, against a real Redis and a real
Kafka-protocol broker (``REDIS_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` if set,
else embedded ones):

1. **throughput**: the simulator in burst mode, in its own process, sends N
   events; the producer (this process) reads them and both sinks finish
   them. events/s = N / (last event acknowledged by Kafka and published on
   Redis - first event read).
2. **naive baseline**, same simulator, same services: one
   ``await redis.publish`` and one ``await producer.send_and_wait`` per event
   in the read loop, the pattern in the seed projects.
3. **live latency** at 5,000 events/s: the simulator (this process) stamps
   each frame as it hands it to the socket; the producer runs as its own
   process (``python -m producer.cli``); a raw Redis subscriber, in a third
   process, stamps each message as it arrives. p50/p99 of the difference.

    .venv/bin/python bench/producer.py [--events 500000] [--naive-events 5000] [--latency-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import hiredis
import msgpack
import orjson
import redis.asyncio
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

SELF = Path(__file__).resolve()
ROOT = SELF.parent.parent
sys.path.insert(0, str(ROOT))

from bench.simulator import start_simulator  # noqa: E402
from producer.service import ProducerService  # noqa: E402
from simulator import Simulator, SimulatorConfig  # noqa: E402
from simulator.symbols import synthetic_symbols  # noqa: E402
from tickpipe.codecs import decode_frame, encode_kafka, encode_live, parse_rfc3339_ns  # noqa: E402
from tickpipe.embedded_kafka import EmbeddedKafka  # noqa: E402
from tickpipe.embedded_redis import EmbeddedRedis  # noqa: E402
from tickpipe.kafka import ensure_topics, make_producer  # noqa: E402
from tickpipe.settings import Settings, load_settings  # noqa: E402

ALL_TYPES = "quotes,trades,bars,updatedBars,dailyBars,statuses"
SUBSCRIBE_ALL = {
    "action": "subscribe",
    **{c: ["*"] for c in ("quotes", "trades", "bars", "updatedBars", "dailyBars", "statuses")},
}


# --- services and the simulator process ------------------------------------------------------------


def services(stack: ExitStack, folder: Path) -> tuple[str, str]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(EmbeddedKafka(folder / "kafka")).url
    redis_url = os.environ.get("REDIS_URL") or stack.enter_context(EmbeddedRedis(folder / "redis")).url
    return kafka, redis_url


def settings_for(kafka: str, redis_url: str, upstream: str, spool: Path, **extra: Any) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=kafka, kafka_enable_idempotence=False, redis_url=redis_url,
        kafka_topic_prefix=f"bench{uuid.uuid4().hex[:6]}.", alpaca_stream_url=upstream, spool_dir=spool,
        subscribed_types=ALL_TYPES, producer_admin_port=0, log_level="WARNING", **extra,
    )  # fmt: skip


# --- 1. the producer, burst ----------------------------------------------------------------------


async def producer_throughput(settings: Settings, events: int) -> tuple[float, dict[str, Any]]:
    service = ProducerService(settings, admin=False)
    task = asyncio.create_task(service.run())
    first = done = 0.0
    try:
        while not done:
            await asyncio.sleep(0.002)
            if task.done():
                task.result()
            now = time.perf_counter()
            if not first and service.upstream.events:
                first = now
            live = service.live.published + service.live.dropped.total()
            if service.durable.stats.acked >= events and live >= events:
                done = now
    finally:
        service.stop()
        await task
    stats = {
        "redis_dropped": service.live.dropped.total(),
        "spooled": service.durable.stats.spooled,
        "reconnects": service.upstream.reconnects.total(),
    }
    return events / (done - first), stats


# --- 2. the naive way ------------------------------------------------------------------------------


async def naive_throughput(kafka: str, redis_url: str, url: str, events: int, settings: Settings) -> float:
    """One awaited PUBLISH and one awaited send_and_wait per event, in the read loop."""
    topics = {code: f"{settings.kafka_topic_prefix}{family}" for code, family in
              {"q": "quotes", "t": "trades", "b": "bars", "u": "bars", "d": "bars", "s": "statuses",
               "c": "corrections", "x": "cancels"}.items()}  # fmt: skip
    await ensure_topics(kafka, set(topics.values()), settings.kafka_partitions)
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


class Stamped:
    """Every frame the in-process simulator hands to a socket, with the time it did."""

    frames: list[tuple[int, bytes]] = []

    @classmethod
    def install(cls) -> None:
        original = ServerConnection.send

        async def send(self: ServerConnection, message: Any, text: bool | None = None) -> None:
            if isinstance(message, bytes) and len(message) > 40:
                cls.frames.append((time.time_ns(), message))
            await original(self, message, text=text)

        ServerConnection.send = send  # type: ignore[method-assign,assignment]

    @classmethod
    def sent_at(cls) -> dict[tuple[str, str, int], int]:
        out: dict[tuple[str, str, int], int] = {}
        for stamp, frame in cls.frames:
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


async def live_latency(kafka: str, redis_url: str, folder: Path, seconds: float, rate: int) -> tuple[float, float, int]:
    """Simulator here, producer and subscriber in processes of their own: nothing shares a loop with the stamps."""
    Stamped.install()
    out = folder / "received.msgpack"
    listener = await asyncio.create_subprocess_exec(
        sys.executable, str(SELF), "--subscriber", redis_url, str(out),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert listener.stdout is not None
    if (await listener.stdout.readline()).strip() != b"ready":
        raise RuntimeError("the subscriber process did not start")
    config = SimulatorConfig(rate=rate, batch_size=25, symbols=synthetic_symbols(50))
    async with Simulator(config) as sim:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "KAFKA_ENABLE_IDEMPOTENCE": "false",
               "REDIS_URL": redis_url, "ALPACA_STREAM_URL": sim.url, "SUBSCRIBED_TYPES": ALL_TYPES,
               "SPOOL_DIR": str(folder / "spool"), "PRODUCER_ADMIN_PORT": "0", "LOG_LEVEL": "WARNING",
               "KAFKA_TOPIC_PREFIX": f"lat{uuid.uuid4().hex[:6]}."}  # fmt: skip
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "producer.cli", cwd=ROOT, env=env)
        try:
            await sim.wait_for(lambda: sim.sent_total > 0, timeout=60)  # connected end to end
            await asyncio.sleep(1.0)  # warm-up
            Stamped.frames.clear()
            await asyncio.sleep(seconds)
            sent = Stamped.sent_at()  # the window: what was sent during it
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--latency-rate", type=int, default=5_000)
    parser.add_argument("--subscriber", nargs=2, metavar=("REDIS_URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        subscriber_main(args.subscriber[0], Path(args.subscriber[1]))
        return
    with tempfile.TemporaryDirectory(prefix="tickpipe-bench-") as tmp:
        # Each measurement gets services of its own (embedded ones are fresh), so none inherits
        # the previous one's load: Tansu keeps every record in memory.
        with ExitStack() as stack:
            folder = Path(tmp) / "throughput"
            kafka, redis_url = services(stack, folder)
            sim, url = start_simulator("--burst", "--count", str(args.events), "--symbols", "50")
            try:
                settings = settings_for(kafka, redis_url, url, folder / "spool", live_queue_size=args.events)
                rate, stats = asyncio.run(producer_throughput(settings, args.events))
            finally:
                sim.terminate()
                sim.wait(10)

        with ExitStack() as stack:
            folder = Path(tmp) / "naive"
            kafka, redis_url = services(stack, folder)
            sim, url = start_simulator("--burst", "--symbols", "50")
            try:
                settings = settings_for(kafka, redis_url, url, folder / "spool")
                naive = asyncio.run(naive_throughput(kafka, redis_url, url, args.naive_events, settings))
            finally:
                sim.terminate()
                sim.wait(10)

        with ExitStack() as stack:
            folder = Path(tmp) / "latency"
            kafka, redis_url = services(stack, folder)
            p50, p99, samples = asyncio.run(
                live_latency(kafka, redis_url, folder, args.latency_seconds, args.latency_rate)
            )

    print(
        f"producer, simulator burst -> Redis + Kafka: {rate:,.0f} events/s over {args.events:,} events "
        f"(baseline, one awaited publish + send_and_wait per event: {naive:,.0f} events/s; "
        f"{rate / naive:,.1f}x); Redis drops {stats['redis_dropped']}, spooled {stats['spooled']}"
    )
    print(
        f"live latency at {args.latency_rate:,} events/s, simulator send -> Redis subscriber: "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms over {samples:,} updates"
    )
    print(
        f"targets: >= 50,000 events/s -> {'met' if rate >= 50_000 else 'NOT met'}; "
        f">= 20x naive -> {'met' if rate >= 20 * naive else 'NOT met'}; "
        f"p99 < 5 ms -> {'met' if p99 < 5 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
