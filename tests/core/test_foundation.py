"""The foundation end to end through real services: events through Kafka and Redis, into the schema and back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime

import asyncpg
import msgpack
import pytest
import redis.asyncio
from aiokafka import AIOKafkaConsumer

from tests.helpers.broker import IDEMPOTENCE
from tests.helpers.services import database_of_its_own
from tickpipe import db
from tickpipe.codecs import decode_frame, decode_kafka, decode_live, encode_kafka, encode_live, event_key
from tickpipe.events import Bar, Event, Quote, Trade, UpdatedBar
from tickpipe.kafka import ensure_topics, make_producer
from tickpipe.names import channel, topic
from tickpipe.rows import COLUMNS, KEYS, from_row, to_row
from tickpipe.schema import PARTITIONED_TABLES
from tickpipe.settings import load_settings


def sample_events(symbol: str) -> list[Event]:
    """Upstream-shaped messages with awkward nanoseconds and prices, decoded as the producer would."""
    base = 1_763_800_000 * 10**9  # 2025-11-22
    raw = [
        {"T": "q", "S": symbol, "bx": "V", "bp": 187.23, "bs": 3, "ax": "Q", "ap": 187.25000000000003, "as": 1,
         "c": ["R"], "z": "C", "t": msgpack.Timestamp.from_unix_nano(base + 123_456_789)},
        {"T": "q", "S": symbol, "bx": "V", "bp": 187.22, "bs": 5, "ax": "K", "ap": 187.26, "as": 2,
         "c": [], "z": "C", "t": msgpack.Timestamp.from_unix_nano(base + 123_456_790)},
        {"T": "t", "S": symbol, "i": 52983525029461, "x": "V", "p": 0.1 + 0.2, "s": 100, "c": ["@", "I"],
         "z": "C", "t": msgpack.Timestamp.from_unix_nano(base + 999_999_999)},
        {"T": "b", "S": symbol, "o": 187.1, "h": 187.4, "l": 187.0, "c": 187.3, "v": 12_345, "vw": 187.2111,
         "n": 42, "t": msgpack.Timestamp.from_unix_nano(base - base % (60 * 10**9))},
    ]  # fmt: skip
    decoded = decode_frame(msgpack.packb(raw, datetime=False), received_at=time.time_ns())
    assert decoded.rejected == []
    return decoded.events


async def test_events_through_kafka_keep_every_field(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = load_settings(kafka_enable_idempotence=IDEMPOTENCE, kafka_topic_prefix=topic_prefix)
    events = sample_events("AAPL")
    name = topic("quotes", topic_prefix)
    await ensure_topics(kafka_bootstrap, [name], partitions=3)
    producer = make_producer(settings, kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send(name, key=event.symbol.encode(), value=encode_kafka(event))
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        name, bootstrap_servers=kafka_bootstrap, group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    received: list[Event] = []
    try:
        async with asyncio.timeout(60):
            while len(received) < len(events):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    received.extend(decode_kafka(record.value) for record in records if record.value)
        await consumer.commit()
    finally:
        await consumer.stop()
    # one key, so one partition, so producer order
    assert received == events


async def test_events_through_redis_pubsub_are_alpaca_shaped(
    redis_client: redis.asyncio.Redis, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    events = [e for e in sample_events(symbol) if isinstance(e, Quote)]
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(channel("quotes", symbol))
    try:
        async with asyncio.timeout(10):
            while (await pubsub.get_message(timeout=1.0)) is None:
                pass  # the subscribe confirmation
        for event in events:
            assert await redis_client.publish(channel("quotes", symbol), encode_live(event)) == 1
        got: list[Event] = []
        async with asyncio.timeout(10):
            while len(got) < len(events):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    got.append(decode_live(message["data"]))
    finally:
        await pubsub.aclose()
    assert [e.timestamp for e in got] == [e.timestamp for e in events]
    assert got == [msgspec_without_receive(e) for e in events]


def msgspec_without_receive(event: Event) -> Event:
    import msgspec

    return msgspec.structs.replace(event, received_at=0)


async def insert(conn: asyncpg.Connection, events: list[Event]) -> None:
    """What a consumer does, in its simplest form: stage with COPY, upsert by the deterministic key."""
    await db.ensure_partitions(conn, {datetime.fromtimestamp(e.timestamp // 10**9, UTC).date() for e in events})
    by_table: dict[str, list[tuple[object, ...]]] = {}
    for event in events:
        by_table.setdefault(event.family, []).append(to_row(event))
    async with conn.transaction():
        for table, rows in by_table.items():
            columns = COLUMNS[table]
            await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_{table} (LIKE {table}) ON COMMIT DELETE ROWS")
            await conn.copy_records_to_table(f"stage_{table}", records=rows, columns=columns)
            await conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM stage_{table} "
                f"ON CONFLICT ({', '.join(KEYS[table])}) DO NOTHING"
            )


async def test_rows_read_back_field_for_field_and_replays_are_no_ops(clean_db: str) -> None:
    events = sample_events("MSFT")
    conn = await asyncpg.connect(clean_db)
    try:
        await insert(conn, events)
        await insert(conn, events)  # a replay
        back: list[Event] = []
        for table, order in (("quotes", "time_ns"), ("trades", "time_ns"), ("bars", "time_ns")):
            rows = await conn.fetch(f"SELECT * FROM {table} WHERE symbol = 'MSFT' ORDER BY {order}")
            back.extend(from_row(table, row, with_received=True) for row in rows)
        quote_key = await conn.fetchval("SELECT event_key FROM quotes ORDER BY time_ns LIMIT 1")
        exact_ns = await conn.fetchval("SELECT time_ns FROM trades")
    finally:
        await conn.close()
    assert len(back) == len(events)  # one copy each, despite the replay
    for got, sent in zip(back, events, strict=True):
        # receive time is stored as timestamptz (microseconds); everything upstream sent is exact
        assert msgspec_without_receive(got) == msgspec_without_receive(sent)
        assert got.received_at // 1000 == sent.received_at // 1000
    assert quote_key == event_key(events[0])
    assert exact_ns == events[2].timestamp and exact_ns % 10**9 == 999_999_999
    assert isinstance(back[2], Trade) and back[2].price == 0.1 + 0.2


async def test_updated_bar_replaces_the_minute_bar(clean_db: str) -> None:
    (bar,) = [e for e in sample_events("NVDA") if isinstance(e, Bar)]
    import msgspec

    updated = UpdatedBar(**{f: getattr(bar, f) for f in bar.__struct_fields__ if f != "volume"}, volume=99_999)
    conn = await asyncpg.connect(clean_db)
    try:
        await insert(conn, [bar])
        await db.ensure_partitions(conn, [date(2025, 11, 22)])
        columns = COLUMNS["bars"]
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in KEYS["bars"])
        await conn.executemany(
            f"INSERT INTO bars ({', '.join(columns)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))}) "
            f"ON CONFLICT ({', '.join(KEYS['bars'])}) DO UPDATE SET {updates}",
            [to_row(updated)],
        )
        rows = await conn.fetch("SELECT * FROM bars WHERE symbol = 'NVDA'")
    finally:
        await conn.close()
    assert [from_row("bars", row) for row in rows] == [msgspec.structs.replace(updated, received_at=0)]


async def test_partitions_are_daily_and_retention_drops_old_ones(clean_db: str) -> None:
    conn = await asyncpg.connect(clean_db)
    try:
        created = await db.ensure_partitions(conn, [date(2020, 1, 1), date(2020, 1, 2)])
        assert created == 2 * len(PARTITIONED_TABLES)  # two days, every partitioned table
        assert await db.ensure_partitions(conn, [date(2020, 1, 1)]) == 0  # idempotent
        names = {
            r["relname"]
            for r in await conn.fetch("SELECT relname FROM pg_class WHERE relname LIKE '%_p2020%' AND relkind = 'r'")
        }
        assert names == {f"{t}_p2020010{d}" for t in PARTITIONED_TABLES for d in (1, 2)}
        _, dropped = await db.maintain_partitions(conn, ahead_days=2, retention_days=30)
        assert dropped >= 6
        left = await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE '%_p2020%' AND relkind = 'r'")
        assert left == 0
        today = datetime.now(UTC).date()
        ahead = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"quotes_p{today:%Y%m%d}")
        assert ahead
    finally:
        await conn.close()


CRYPTO_TABLES = ("crypto_trades", "crypto_quotes", "crypto_bars", "crypto_orderbooks", "options_trades",
                 "options_quotes", "news", "trade_updates")  # fmt: skip


@pytest.mark.parametrize("cycles", [2])
async def test_migrations_up_down_up(postgres_server_url: str, cycles: int) -> None:
    with database_of_its_own(postgres_server_url, "tickpipe_mig", migrated=False) as url:
        for _ in range(cycles):
            await asyncio.to_thread(db.upgrade, url)
            conn = await asyncpg.connect(url)
            tables = {r["relname"] for r in await conn.fetch("SELECT relname FROM pg_class WHERE relkind = 'p'")}
            await conn.close()
            assert tables == {"quotes", "trades", "bars", "statuses", "corrections", "cancels", *CRYPTO_TABLES}
            await asyncio.to_thread(db.downgrade, url)
            conn = await asyncpg.connect(url)
            left = await conn.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relname <> 'alembic_version' AND c.relkind IN ('r', 'p')"
            )
            await conn.close()
            assert left == 0
        await asyncio.to_thread(db.upgrade, url)
