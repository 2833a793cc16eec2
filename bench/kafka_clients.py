"""How fast each Python Kafka client can write the producer's records: the ceiling under the producer's figure.

The producer's Kafka path (``producer/kafka_backend.py``) builds one batch per
partition with aiokafka's ``create_batch``/``send_batch``. Is that the
fastest way a Python process can hand records to Kafka with the idempotent
producer on? This bench answers it on the same broker, same records (the
producer's shape: ~110-byte values keyed by one of 500 symbols, lz4, 6
partitions, acks=all), one client after the other:

1. **aiokafka ``send()``** per record, futures gathered (the library's usual way);
2. **aiokafka batches** (``create_batch``/``send_batch``, one batch per partition
   per round, every round awaited: what the producer does);
3. **confluent-kafka** (librdkafka) ``produce()`` per record with ``poll(0)``,
   ``enable.idempotence=true``, ``linger.ms=5``, then ``flush()`` — if
   installed (``pip install confluent-kafka``; it is not a dependency).

Each figure is records acknowledged per second over the whole run (first
record handed over -> last acknowledged). The broker is warmed up first, off
the clock (``bench.brokers.topics_ready``).

    .venv/bin/python bench/kafka_clients.py [--records 500000] [--brokers apache]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from bench.brokers import Broker, add_brokers_option, chosen, running, table, topics_ready

TOPIC = "tickpipe-bench.clients"
PARTITIONS = 6
SYMBOLS = [f"S{n:03d}" for n in range(500)]


def records(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` (key, value) pairs shaped like the producer's quote records."""
    rng = random.Random(7)
    return [
        (symbol.encode(), bytes(rng.getrandbits(8) for _ in range(110)))
        for symbol in (SYMBOLS[rng.randrange(len(SYMBOLS))] for _ in range(count))
    ]


def aiokafka_producer(bootstrap: str, idempotence: bool) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotence, linger_ms=5,
        max_batch_size=1 << 20, compression_type="lz4", client_id="tickpipe-bench-clients",
    )  # fmt: skip


async def aiokafka_send(bootstrap: str, idempotence: bool, data: list[tuple[bytes, bytes]]) -> float:
    producer = aiokafka_producer(bootstrap, idempotence)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(TOPIC, value, key=key) for key, value in data]
        await asyncio.gather(*futures)
        return len(data) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def aiokafka_batches(
    bootstrap: str, idempotence: bool, data: list[tuple[bytes, bytes]], round_size: int
) -> float:
    """One batch per partition per round, each round awaited before the next: the producer's way."""
    producer = aiokafka_producer(bootstrap, idempotence)
    await producer.start()
    try:
        started = time.perf_counter()
        for at in range(0, len(data), round_size):
            by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
            for key, value in data[at : at + round_size]:
                by_partition[(murmur2(key) & 0x7FFFFFFF) % PARTITIONS].append((key, value))
            pending = []
            for partition, items in by_partition.items():
                batch = producer.create_batch()
                for key, value in items:
                    if batch.append(key=key, value=value, timestamp=None) is None:  # full: ship it, start another
                        batch.close()
                        pending.append(await producer.send_batch(batch, TOPIC, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
                batch.close()
                pending.append(await producer.send_batch(batch, TOPIC, partition=partition))
            await asyncio.gather(*pending)
        return len(data) / (time.perf_counter() - started)
    finally:
        await producer.stop()


def confluent(bootstrap: str, idempotence: bool, data: list[tuple[bytes, bytes]]) -> float | None:
    try:
        from confluent_kafka import Producer
    except ImportError:
        return None
    failures: list[Any] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": idempotence, "linger.ms": 5,
        "compression.type": "lz4", "queue.buffering.max.messages": 2_000_000, "client.id": "tickpipe-bench-clients",
    })  # fmt: skip
    started = time.perf_counter()
    for key, value in data:
        while True:
            try:
                producer.produce(TOPIC, value, key, on_delivery=delivered)
                break
            except BufferError:  # its queue is full: serve deliveries, then hand it the record again
                producer.poll(0.01)
        producer.poll(0)
    left = producer.flush(120)
    elapsed = time.perf_counter() - started
    if left or failures:
        raise RuntimeError(f"confluent-kafka: {left} records unacknowledged, {len(failures)} failed: {failures[:3]}")
    return len(data) / elapsed


def measure(broker: Broker, folder: Path, count: int) -> list[list[str]]:
    data = records(count)
    rows: list[list[str]] = []
    with running(broker, folder) as bootstrap:
        asyncio.run(topics_ready(bootstrap, [TOPIC], PARTITIONS))

        def timed(name: str, run: Callable[[], Coroutine[Any, Any, float]]) -> None:
            rate = asyncio.run(run())
            rows.append([name, broker.label, f"{rate:,.0f}"])
            print(f"  {name}: {rate:,.0f} records/s", flush=True)

        timed("aiokafka send() per record", lambda: aiokafka_send(bootstrap, broker.idempotence, data))
        timed("aiokafka batches, rounds of 10,000 (the producer's way)",
              lambda: aiokafka_batches(bootstrap, broker.idempotence, data, 10_000))  # fmt: skip
        rate = confluent(bootstrap, broker.idempotence, data)
        name = "confluent-kafka produce() per record"
        rows.append([name, broker.label, "not installed" if rate is None else f"{rate:,.0f}"])
        shown = "not installed (pip install confluent-kafka)" if rate is None else f"{rate:,.0f} records/s"
        print(f"  {name}: {shown}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500_000, help="records per client (default 500,000)")
    add_brokers_option(parser)
    parser.set_defaults(brokers=["apache"])
    args = parser.parse_args()
    brokers = chosen(args.brokers, os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"kafka clients bench: {args.records:,} records each, {os.cpu_count()} cores, load average {load}")
    rows: list[list[str]] = []
    for broker in brokers:
        print(f"{broker.description}:", flush=True)
        with tempfile.TemporaryDirectory(prefix="tickpipe-bench-") as tmp:
            rows += measure(broker, Path(tmp), args.records)
    print()
    print(table(["client", "broker", "records/s"], rows))


if __name__ == "__main__":
    main()
