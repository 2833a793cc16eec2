"""The writer against a real PostgreSQL: rows exactly as ``rows.to_row`` says, idempotent, refusals isolated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
from aiokafka.structs import TopicPartition

from consumers.batch import Batch, build_batch
from consumers.staging import MAX_TIMESTAMP_NS
from consumers.writer import WriteError, Writer
from tests.helpers.consumers import BASE_NS, Rec, expected_bars, make_bars, make_quotes, make_trades
from tickpipe.codecs import encode_kafka
from tickpipe.dev.embedded import free_port
from tickpipe.events import Bar, Event, Quote, UpdatedBar
from tickpipe.rows import COLUMNS, to_row

TP = TopicPartition("t.x", 0)


def batch_of(table: str, events: list[Event]) -> Batch:
    records = [Rec(TP.topic, 0, i, ev.symbol.encode(), encode_kafka(ev)) for i, ev in enumerate(events)]
    return build_batch(table, {TP: records})


@pytest.fixture
async def conn(clean_db: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(clean_db)
    yield connection
    await connection.close()


async def stored(conn: asyncpg.Connection, table: str) -> set[tuple[object, ...]]:
    rows = await conn.fetch(f"SELECT {', '.join(COLUMNS[table])} FROM {table}")
    return {tuple(tuple(v) if isinstance(v, list) else v for v in row.values()) for row in rows}


def reference(events: list[Event]) -> set[tuple[object, ...]]:
    return {tuple(tuple(v) if isinstance(v, list) else v for v in to_row(ev)) for ev in events}


@pytest.mark.parametrize("table", ["quotes", "trades"])
async def test_rows_are_exactly_what_rows_to_row_gives(clean_db: str, conn: asyncpg.Connection, table: str) -> None:
    events: list[Event] = list(make_quotes(400) if table == "quotes" else make_trades(400))
    writer = Writer(clean_db, table)
    try:
        result = await writer.write(batch_of(table, events))
    finally:
        await writer.close()
    assert result.inserted == 400 and not result.refused
    assert await stored(conn, table) == reference(events)


async def test_extreme_timestamps_keep_their_microsecond(clean_db: str, conn: asyncpg.Connection) -> None:
    base = make_quotes(1)[0]
    stamps = [0, 1, 999, 1_000, 1_001, BASE_NS + 999_999_999, MAX_TIMESTAMP_NS - 1]
    events: list[Event] = [msgspec.structs.replace(base, timestamp=t, received_at=max(t - 1, 0)) for t in stamps]
    writer = Writer(clean_db, "quotes")
    try:
        assert (await writer.write(batch_of("quotes", events))).inserted == len(stamps)
    finally:
        await writer.close()
    assert await stored(conn, "quotes") == reference(events)
    last = await conn.fetchval("SELECT max(time) FROM quotes")
    assert last == datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


async def test_writing_a_batch_twice_adds_nothing(clean_db: str, conn: asyncpg.Connection) -> None:
    batch = batch_of("quotes", list(make_quotes(300)))
    writer = Writer(clean_db, "quotes")
    try:
        assert (await writer.write(batch)).inserted == 300
        assert (await writer.write(batch)).inserted == 0
    finally:
        await writer.close()
    assert await conn.fetchval("SELECT count(*) FROM quotes") == 300


async def test_partitions_are_created_for_new_days(clean_db: str, conn: asyncpg.Connection) -> None:
    day = datetime(2031, 7, 9, 12, tzinfo=UTC)
    quote = msgspec.structs.replace(make_quotes(1)[0], timestamp=int(day.timestamp()) * 10**9)
    writer = Writer(clean_db, "quotes")
    try:
        assert (await writer.write(batch_of("quotes", [quote]))).inserted == 1
    finally:
        await writer.close()
    assert await conn.fetchval("SELECT to_regclass('quotes_p20310709') IS NOT NULL")


async def test_updated_bars_replace_minute_bars_and_never_the_reverse(clean_db: str, conn: asyncpg.Connection) -> None:
    events = make_bars(6)
    writer = Writer(clean_db, "bars")
    try:
        await writer.write(batch_of("bars", events))
        # Replayed later, one record at a time (across batches): the table must not change.
        for ev in events[:12]:
            await writer.write(batch_of("bars", [ev]))
        # A late updated bar in its own batch replaces the minute bar.
        minute = events[0]
        assert isinstance(minute, Bar) and minute.type_code == "b"
        fields = {f: getattr(minute, f) for f in ("symbol", "timestamp", "open", "high", "low", "vwap")}
        late = UpdatedBar(**fields, close=1.5, volume=99, trade_count=9, received_at=minute.received_at + 1)
        assert (await writer.write(batch_of("bars", [late]))).inserted == 1
    finally:
        await writer.close()
    want = expected_bars([*events, late])
    assert await stored(conn, "bars") == reference(list(want.values()))


async def test_rows_postgres_refuses_are_isolated_and_the_rest_stored(clean_db: str, conn: asyncpg.Connection) -> None:
    quotes = list(make_quotes(200))
    bad = {17, 18, 150}
    for i in bad:
        quotes[i] = msgspec.structs.replace(quotes[i], symbol=f"BAD\x00{i}")
    batch = batch_of("quotes", list(quotes))
    writer = Writer(clean_db, "quotes")
    try:
        result = await writer.write(batch)
    finally:
        await writer.close()
    assert sorted(index for index, _ in result.refused) == sorted(bad)
    assert all("22021" in reason and "0x00" in reason for _, reason in result.refused)
    assert result.inserted == 197
    good: list[Event] = [q for i, q in enumerate(quotes) if i not in bad]
    assert await stored(conn, "quotes") == reference(good)


async def test_a_constraint_refusal_names_the_constraint(clean_db: str, conn: asyncpg.Connection) -> None:
    quotes: list[Quote] = make_quotes(50)
    quotes[7] = msgspec.structs.replace(quotes[7], bid_price=50_000.0)
    await conn.execute("ALTER TABLE quotes ADD CONSTRAINT test_bid_cap CHECK (bid_price < 10000)")
    writer = Writer(clean_db, "quotes")
    try:
        result = await writer.write(batch_of("quotes", list(quotes)))
    finally:
        await writer.close()
        await conn.execute("ALTER TABLE quotes DROP CONSTRAINT test_bid_cap")
    assert [index for index, _ in result.refused] == [7]
    assert "23514" in result.refused[0][1] and "test_bid_cap" in result.refused[0][1]
    assert result.inserted == 49


async def test_an_unreachable_database_is_a_write_error_not_a_refusal() -> None:
    writer = Writer(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", "quotes", connect_timeout=2)
    with pytest.raises(WriteError, match="PostgreSQL did not take the write"):
        await writer.write(batch_of("quotes", list(make_quotes(3))))
    with pytest.raises(WriteError):
        await writer.ping()
    assert not writer.connected


async def test_a_lost_connection_is_replaced(clean_db: str, conn: asyncpg.Connection) -> None:
    writer = Writer(clean_db, "quotes")
    try:
        await writer.write(batch_of("quotes", list(make_quotes(10, seed=5))))
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tickpipe-consumer-quotes'"
        )
        batch = batch_of("quotes", list(make_quotes(10, seed=6)))
        outcomes: list[object] = []
        while not outcomes or isinstance(outcomes[-1], WriteError):
            assert len(outcomes) < 2, f"the connection was not replaced: {outcomes}"
            try:
                outcomes.append((await writer.write(batch)).inserted)
            except WriteError as exc:  # at most once: the dead connection is dropped, the next attempt reconnects
                outcomes.append(exc)
        assert outcomes[-1] == 10
    finally:
        await writer.close()
    assert await conn.fetchval("SELECT count(*) FROM quotes") == 20
