"""Backfill throughput: ``tickpipe backfill`` of N trades REST -> Kafka -> PostgreSQL, next to REST -> COPY.

One run, one machine, the same window of the simulator's REST history:

1. the simulator (a child process, burst mode) is read over its stream until
   N trades were sent, so its REST history holds them;
2. **pipeline**: ``tickpipe backfill --types trades`` (a child) loads the window
   into Kafka, then ``tickpipe consume trades --burst`` (a child) writes it to
   PostgreSQL; its rate is rows over the two children's wall time, start-up included;
3. the same command again: Kafka gets every record a second time, PostgreSQL
   must gain 0 rows (rows are keyed by symbol, time, exchange and trade id);
4. **direct** (the baseline): the same pages fetched by the same REST client,
   turned into rows (``rows.to_row``) and COPYed straight into the emptied
   ``trades`` table, no Kafka, one transaction per page.

    python bench/backfill.py [--count 1000000] [--database-url URL] [--kafka HOST:PORT]

PostgreSQL: ``--database-url`` (default ``DATABASE_URL``; unset: an embedded
one in a temporary folder), database ``tickpipe_bench_backfill`` created
afresh. Kafka: ``--kafka`` (default ``KAFKA_BOOTSTRAP_SERVERS``; unset: an
embedded Apache Kafka).
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
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgpack
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.brokers import chosen, running  # noqa: E402
from bench.simulator import start_simulator  # noqa: E402
from producer.backfill import to_records  # noqa: E402
from producer.gaps import chunks  # noqa: E402
from producer.history_client import HistoryClient  # noqa: E402
from tickpipe import db  # noqa: E402
from tickpipe.codecs import decode_kafka, format_rfc3339_ns  # noqa: E402
from tickpipe.dev.embedded_pg import EmbeddedPostgres  # noqa: E402
from tickpipe.rows import COLUMNS, to_row  # noqa: E402

BENCH_DB = "tickpipe_bench_backfill"
PREFIX = "benchbf."
SYMBOLS = 50


@contextmanager
def postgres(url: str | None, folder: Path) -> Iterator[str]:
    """The server URL to create the bench database on: the given one, or an embedded one for the run."""
    if url:
        yield url
        return
    server = EmbeddedPostgres(folder / "pg", durable=False, fresh=True).start()
    try:
        yield server.url
    finally:
        server.stop()


async def fresh_database(server_url: str) -> str:
    admin = await asyncpg.connect(db.asyncpg_dsn(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{BENCH_DB}"))
    await asyncio.to_thread(db.upgrade, url)
    return url


@contextmanager
def simulator() -> Iterator[str]:
    """The simulator in burst mode as a child (``start_simulator``); its stream URL (REST on the same port)."""
    child, url = start_simulator("--burst", "--symbols", str(SYMBOLS), "--rest-rate-limit", "1000000")
    try:
        yield url
    finally:
        child.terminate()
        child.wait(30)


async def draw(url: str, count: int) -> tuple[list[str], int, int]:
    """Read the burst stream until ``count`` trades were sent: the symbols, first and last trade time (ns)."""
    symbols: set[str] = set()
    first = last = 0
    seen = 0
    headers = {"Content-Type": "application/msgpack"}
    async with connect(url, additional_headers=headers, max_size=2**26, proxy=None) as ws:
        await ws.recv()
        await ws.send(msgpack.packb({"action": "auth", "key": "bench", "secret": "bench"}))
        await ws.recv()
        await ws.send(msgpack.packb({"action": "subscribe", "trades": ["*"]}))
        while seen < count:
            for message in msgpack.unpackb(await ws.recv(), timestamp=0):
                if message.get("T") != "t":
                    continue
                stamp = message["t"].to_unix_nano()
                first = first or stamp
                last = max(last, stamp)
                symbols.add(message["S"])
                seen += 1
                if seen >= count:
                    break
    return sorted(symbols), first, last


def pipeline(env: dict[str, str], args: list[str], folder: Path, run: int) -> tuple[float, float]:
    """``tickpipe backfill`` then ``tickpipe consume trades --burst``: each child's wall time."""
    began = time.perf_counter()
    with (folder / f"backfill-{run}.log").open("wb") as log:
        done = subprocess.run([sys.executable, "-m", "tickpipe.cli", "backfill", *args], cwd=ROOT, env=env,
                              stdout=log, stderr=log, check=False)  # fmt: skip
    loaded = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"tickpipe backfill failed ({done.returncode}); see {folder / f'backfill-{run}.log'}")
    began = time.perf_counter()
    with (folder / f"consume-{run}.log").open("wb") as log:
        done = subprocess.run(
            [sys.executable, "-m", "tickpipe.cli", "consume", "trades", "--burst", "--no-admin", "--group",
             f"{PREFIX}bench"], cwd=ROOT, env=env, stdout=log, stderr=log, check=False,
        )  # fmt: skip
    consumed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"tickpipe consume failed ({done.returncode}); see {folder / f'consume-{run}.log'}")
    return loaded, consumed


async def count_rows(url: str) -> int:
    conn = await asyncpg.connect(db.asyncpg_dsn(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM trades"))
    finally:
        await conn.close()


async def direct(rest_url: str, url: str, symbols: list[str], start: int, end: int) -> tuple[int, float]:
    """REST pages -> rows -> COPY into the emptied ``trades`` table, no Kafka: rows and seconds."""
    conn = await asyncpg.connect(db.asyncpg_dsn(url))
    client = HistoryClient(rest_url, "bench", "bench", "iex", per_minute=1_000_000)
    rows = 0
    try:
        await conn.execute("TRUNCATE trades")
        began = time.perf_counter()
        for group in chunks(symbols):
            async for page in client.pages("trades", group, start, end):
                records, _ = to_records("trades", page.items, {"t": "trades"}, time.time_ns())
                batch = [to_row(decode_kafka(value)) for _, _, value in records]
                await conn.copy_records_to_table("trades", records=batch, columns=list(COLUMNS["trades"]))
                rows += len(batch)
        return rows, time.perf_counter() - began
    finally:
        await client.aclose()
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="trades to load (default 1,000,000)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args()
    print(f"backfill bench: {args.count:,} trades, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)  # fmt: skip
    broker = chosen(["apache"], args.kafka)[0]
    with (
        tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp,
        running(broker, Path(tmp) / "kafka") as bootstrap,
        postgres(args.database_url, Path(tmp)) as server,
        simulator() as stream_url,
    ):
        folder = Path(tmp)
        url = asyncio.run(fresh_database(server))
        symbols, start, end = asyncio.run(draw(stream_url, args.count))
        rest_url = f"http://{urlsplit(stream_url).netloc}"
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=bootstrap, DATABASE_URL=url, KAFKA_TOPIC_PREFIX=PREFIX, ALPACA_DATA_URL=rest_url,
            KAFKA_ENABLE_IDEMPOTENCE="true" if broker.idempotence else "false", DATA_DIR=str(folder / "data"),
            BACKFILL_REQUESTS_PER_MINUTE="1000000", LOG_LEVEL="WARNING",
        )  # fmt: skip
        cli = ["--symbols", ",".join(symbols), "--start", format_rfc3339_ns(start), "--end", format_rfc3339_ns(end),
               "--types", "trades", "--progress", "none", "--checkpoint", str(folder / "checkpoint.json")]  # fmt: skip
        print(f"  drew {args.count:,} trades of {len(symbols)} symbols from the simulator's stream", flush=True)

        loaded, consumed = pipeline(env, cli, folder, 1)
        rows = asyncio.run(count_rows(url))
        rate = rows / (loaded + consumed)
        print(f"  tickpipe backfill + consume  {rate:>10,.0f} rows/s  ({rows:,} rows: REST -> Kafka {loaded:.2f} s, "
              f"Kafka -> PostgreSQL {consumed:.2f} s, process start-ups included)", flush=True)  # fmt: skip
        loaded2, consumed2 = pipeline(env, cli, folder, 2)
        again = asyncio.run(count_rows(url))
        print(f"  the same command again       {again - rows:>10,} new rows  ({loaded2:.2f} s + {consumed2:.2f} s; "
              "every record sent to Kafka twice)", flush=True)  # fmt: skip
        copied, seconds = asyncio.run(direct(rest_url, url, symbols, start, end))
        print(f"  direct REST -> COPY          {copied / seconds:>10,.0f} rows/s  ({copied:,} rows in {seconds:.2f} s, "
              "no Kafka, one transaction per page)", flush=True)  # fmt: skip
        if copied != rows or again != rows:
            raise SystemExit(f"expected the same rows every way: pipeline {rows}, again {again}, direct {copied}")
        print(f"  pipeline / direct = {rate / (copied / seconds):.2f}; second run added {again - rows} rows; "
              f"load average {os.getloadavg()[0]:.1f} at the end")  # fmt: skip


if __name__ == "__main__":
    main()
