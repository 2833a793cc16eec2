"""Consumer throughput: Kafka -> PostgreSQL rows/s, next to a plain COPY (the ceiling) and row-by-row INSERTs.

One run, one machine, the same rows into the same (emptied) ``quotes`` table:

1. ``tickpipe consume quotes --burst`` (a real child process) writes N quotes
   produced beforehand; its rate is rows over its working time (first record
   fetched to last offsets committed; the group join is reported apart);
2. the same N rows (``rows.to_row``, built before the clock starts) by plain
   ``COPY`` straight into ``quotes``, one transaction per ``BATCH_SIZE`` rows,
   over one connection and then over two at once (the consumer writes quotes
   over two); the ratio is taken against the faster;
3. a sample of them by row-by-row ``INSERT`` with a commit every 100 rows, the
   seed projects' pattern.

    python bench/consumer.py [--count 1000000] [--database-url URL] [--kafka HOST:PORT] [--keep]
                             [--brokers apache,tansu]

The database is ``tickpipe_bench_consumer`` on the server of ``--database-url``
(default: this machine's PostgreSQL, 127.0.0.1:5432), created afresh for each
broker. Brokers: embedded Apache Kafka (idempotent producer on, as deployed),
then embedded Tansu (off: it refuses InitProducerId), each measured with its own
COPY baselines; ``--brokers apache`` for one. With ``--kafka`` (default
``KAFKA_BOOTSTRAP_SERVERS``), that broker alone, labelled "given". Rows are
counted as the consumer writes them, not from end offsets (Tansu undercounts those).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_data import connect_server  # noqa: E402
from bench.brokers import Broker, add_brokers_option, chosen, quiet_retries, running, table  # noqa: E402
from tickpipe import db  # noqa: E402
from tickpipe.codecs import encode_kafka  # noqa: E402
from tickpipe.events import Quote  # noqa: E402
from tickpipe.kafka import ensure_topics, make_producer  # noqa: E402
from tickpipe.rows import COLUMNS, to_row  # noqa: E402
from tickpipe.settings import load_settings  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The pipeline's share of the best plain COPY of the same rows (issue #15; 0.40 before it).
COPY_SHARE_TARGET = 0.9
BENCH_DB = "tickpipe_bench_consumer"
PREFIX = "bench."
SYMBOLS = [f"S{n:03d}" for n in range(500)]
#: 2024-06-03T13:30:00Z, one quote every 20 µs: a busy market, all in one UTC day.
START_NS = 1_717_421_400 * 1_000_000_000
STEP_NS = 20_000
CHUNK = 100_000
CONDITIONS = (("R",), (), ("R", "Y"))


def quote(n: int) -> Quote:
    """The n-th bench quote: deterministic, cheap, distinct."""
    mid = 100 + (n % 500) + ((n * 7919) % 1000) / 100
    stamp = START_NS + n * STEP_NS + n % 997
    return Quote(
        symbol=SYMBOLS[n % 500], timestamp=stamp, received_at=stamp + 150_000, bid_exchange="V",
        bid_price=round(mid - 0.01, 2), bid_size=100 * (1 + n % 7), ask_exchange="N", ask_price=round(mid + 0.01, 2),
        ask_size=100 * (1 + n % 5), conditions=CONDITIONS[n % 3], tape="C",
    )  # fmt: skip


def chunks(count: int) -> Iterator[range]:
    for start in range(0, count, CHUNK):
        yield range(start, min(start + CHUNK, count))


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def fresh_database(server_url: str) -> str:
    admin = await connect_server(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await admin.close()
    url = with_database(server_url, BENCH_DB)
    await asyncio.to_thread(db.upgrade, url)
    return url


async def produce(bootstrap: str, count: int, idempotence: bool) -> float:
    settings = load_settings(kafka_enable_idempotence=idempotence, kafka_topic_prefix=PREFIX)
    await ensure_topics(bootstrap, [f"{PREFIX}quotes", f"{PREFIX}dlq"], settings.kafka_partitions)
    producer = make_producer(settings, bootstrap, linger_ms=50)
    await producer.start()
    began = time.perf_counter()
    try:
        with quiet_retries():  # a new topic on Apache Kafka: NotLeaderForPartition for a moment
            for part in chunks(count):
                futures = []
                for n in part:
                    ev = quote(n)
                    futures.append(await producer.send(f"{PREFIX}quotes", encode_kafka(ev), key=ev.symbol.encode()))
                await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count / (time.perf_counter() - began)


def consume(bootstrap: str, database_url: str, batch_size: int, idempotence: bool) -> dict[str, float]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap, DATABASE_URL=database_url, KAFKA_TOPIC_PREFIX=PREFIX,
        KAFKA_ENABLE_IDEMPOTENCE="true" if idempotence else "false", BATCH_SIZE=str(batch_size), LOG_LEVEL="WARNING",
    )  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tickpipe.cli", "consume", "quotes", "--burst", "--no-admin"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"tickpipe consume failed ({done.returncode}): {done.stderr[-2000:]}")
    stats = orjson.loads(done.stdout.strip().splitlines()[-1])["quotes"]
    return {"rows": stats["rows_written"], "busy": stats["busy_seconds"], "wall": wall}


async def plain_copy(database_url: str, count: int, batch_size: int, connections: int = 1) -> float:
    """COPY straight into ``quotes``, one transaction per batch, over ``connections`` connections at once."""
    conns = [await asyncpg.connect(db.asyncpg_dsn(database_url)) for _ in range(connections)]
    timed = 0.0

    async def copy(conn: asyncpg.Connection, batches: list[list[tuple[object, ...]]]) -> None:
        for batch in batches:
            async with conn.transaction():
                await conn.copy_records_to_table("quotes", records=batch, columns=COLUMNS["quotes"])

    try:
        await conns[0].execute("TRUNCATE quotes")
        await conns[0].execute("CHECKPOINT")
        for part in chunks(count):
            rows = [to_row(quote(n)) for n in part]  # built before the clock starts
            batches = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
            began = time.perf_counter()
            await asyncio.gather(*(copy(conn, batches[i::connections]) for i, conn in enumerate(conns)))
            timed += time.perf_counter() - began
        assert await conns[0].fetchval("SELECT count(*) FROM quotes") == count
    finally:
        for conn in conns:
            await conn.close()
    return count / timed


async def row_by_row(database_url: str, count: int) -> float:
    columns = COLUMNS["quotes"]
    sql = f"INSERT INTO quotes ({', '.join(columns)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})"
    conn = await asyncpg.connect(db.asyncpg_dsn(database_url))
    try:
        await conn.execute("TRUNCATE quotes")
        await conn.execute("CHECKPOINT")
        rows = [to_row(quote(n)) for n in range(count)]
        began = time.perf_counter()
        for start in range(0, count, 100):
            async with conn.transaction():
                for row in rows[start : start + 100]:
                    await conn.execute(sql, *row)
        return count / (time.perf_counter() - began)
    finally:
        await conn.close()


async def checkpoint(database_url: str) -> None:
    conn = await asyncpg.connect(db.asyncpg_dsn(database_url))
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


@dataclass
class Figures:
    """Every figure of one broker's run; the baselines are measured right after the pipeline, on the same rows."""

    broker: Broker
    produced: float
    run: dict[str, float]
    pipeline: float
    copy: float
    copy2: float
    single: float


def measure(broker: Broker, args: argparse.Namespace) -> Figures:
    """Produce, consume, then the COPY and row-by-row baselines (the broker still up, idle), into a fresh database."""
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as folder, running(broker, Path(folder)) as bootstrap:
        url = asyncio.run(fresh_database(args.database_url))
        produced = asyncio.run(produce(bootstrap, args.count, broker.idempotence))
        print(f"  {broker.label}: produced into Kafka at {produced:,.0f} records/s (not part of the figures)",
              flush=True)  # fmt: skip
        asyncio.run(checkpoint(url))
        run = consume(bootstrap, url, args.batch_size, broker.idempotence)
        if run["rows"] != args.count:
            raise SystemExit(f"{broker.label}: expected {args.count} rows written, the consumer wrote {run['rows']}")
        pipeline = run["rows"] / run["busy"]
        copy = asyncio.run(plain_copy(url, args.count, args.batch_size))
        copy2 = asyncio.run(plain_copy(url, args.count, args.batch_size, connections=2))
        single = asyncio.run(row_by_row(url, min(args.row_by_row, args.count)))
        if not args.keep:
            asyncio.run(drop(args.database_url))
    return Figures(broker, produced, run, pipeline, copy, copy2, single)


def report(f: Figures, args: argparse.Namespace) -> None:
    """One broker's figures, as soon as they are in."""
    run = f.run
    print(f"{f.broker.description}:")
    print(f"  kafka -> postgres (tickpipe consume) {f.pipeline:>10,.0f} rows/s  "
          f"({run['rows']:,} rows in {run['busy']:.2f} s working; process wall {run['wall']:.2f} s incl. start, "
          "group join, burst drain)")  # fmt: skip
    print(f"  plain COPY, same rows (ceiling)      {f.copy:>10,.0f} rows/s  ({args.batch_size} rows per transaction)")
    print(f"  plain COPY over 2 connections        {f.copy2:>10,.0f} rows/s  (as many as the consumer writes with)")
    print(f"  row-by-row INSERT, commit per 100    {f.single:>10,.0f} rows/s  "
          f"({min(args.row_by_row, args.count):,}-row sample)", flush=True)  # fmt: skip


def summary(results: list[Figures], args: argparse.Namespace) -> None:
    """The final table, a broker per row, and the targets."""
    header = ["broker", "idempotence", "kafka -> postgres", "plain COPY", "COPY, 2 conns", "row-by-row",
              "/ best COPY", "/ row-by-row", "working", "process wall"]  # fmt: skip
    rows = [
        [f.broker.label, "on" if f.broker.idempotence else "off", f"{f.pipeline:,.0f} rows/s", f"{f.copy:,.0f} rows/s",
         f"{f.copy2:,.0f} rows/s", f"{f.single:,.0f} rows/s", f"{f.pipeline / max(f.copy, f.copy2):.2f}",
         f"{f.pipeline / f.single:.1f}x", f"{f.run['busy']:.2f} s", f"{f.run['wall']:.2f} s"]
        for f in results
    ]  # fmt: skip
    print()
    print(f"consumer bench: {args.count:,} quotes, BATCH_SIZE {args.batch_size}; plain COPY and row-by-row "
          f"INSERT ({min(args.row_by_row, args.count):,}-row sample) of the same rows right after each broker's "
          "pipeline")  # fmt: skip
    print(table(header, rows))
    print(f"  load average {os.getloadavg()[0]:.1f} at the end (other processes share the {os.cpu_count()} cores)")
    for f in results:
        ratio = f.pipeline / max(f.copy, f.copy2)
        print(f"  {f.broker.description}: pipeline / best plain COPY = {ratio:.2f} (target >= {COPY_SHARE_TARGET}: "
              f"{'met' if ratio >= COPY_SHARE_TARGET else 'NOT met'}); "
              f"pipeline / row-by-row = {f.pipeline / f.single:.1f}x; "
              f"target >= 100,000 rows/s: {'met' if f.pipeline >= 100_000 else 'NOT met'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--row-by-row", type=int, default=20_000, help="rows for the row-by-row INSERT sample")
    parser.add_argument("--batch-size", type=int, default=load_settings().batch_size)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_SERVER)
    parser.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    add_brokers_option(parser)
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = parser.parse_args()
    brokers = chosen(args.brokers, args.kafka)
    print(f"consumer bench: {args.count:,} quotes, BATCH_SIZE {args.batch_size}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start; on {', '.join(b.description for b in brokers)}",
          flush=True)  # fmt: skip
    results = []
    for broker in brokers:
        results.append(measure(broker, args))
        report(results[-1], args)
    summary(results, args)


async def drop(server_url: str) -> None:
    admin = await asyncpg.connect(db.asyncpg_dsn(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    finally:
        await admin.close()


if __name__ == "__main__":
    main()
