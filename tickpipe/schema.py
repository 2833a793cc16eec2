"""The PostgreSQL schema as SQLAlchemy Core tables: the single source the migration and the queries share.

Design choices, for analysts and for replays:

- long column names (``bid_price``), one row per upstream event;
- ``time`` is a ``timestamptz`` (microseconds, what SQL tools understand, and the
  daily partition key) and ``time_ns`` the exact nanoseconds Alpaca sent;
- prices are ``double precision``: exactly the float64 that arrived, no rounding;
- every table's primary key is deterministic from the event's content, so a
  redelivered or replayed record is a no-op (``ON CONFLICT DO NOTHING``), except
  bars, whose updated version replaces the minute bar (``DO UPDATE``);
- the primary key starts with ``symbol, time`` and serves "one symbol, a time
  range, newest first" by a backward index scan.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from tickpipe.feeds import STOCK

metadata = MetaData()


def _time_columns() -> list[Column[object]]:
    return [
        Column("symbol", Text, nullable=False),
        Column("time", DateTime(timezone=True), nullable=False, comment="event time (µs), partition key"),
        Column("time_ns", BigInteger, nullable=False, comment="exact event time, ns since the epoch"),
    ]


quotes = Table(
    "quotes",
    metadata,
    *_time_columns(),
    Column("event_key", BigInteger, nullable=False, comment="deterministic hash of the upstream content"),
    Column("bid_exchange", Text, nullable=False),
    Column("bid_price", Float(53), nullable=False),
    Column("bid_size", BigInteger, nullable=False),
    Column("ask_exchange", Text, nullable=False),
    Column("ask_price", Float(53), nullable=False),
    Column("ask_size", BigInteger, nullable=False),
    Column("conditions", ARRAY(Text), nullable=False),
    Column("tape", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("symbol", "time", "event_key", name="quotes_pkey"),
    postgresql_partition_by="RANGE (time)",
)

trades = Table(
    "trades",
    metadata,
    *_time_columns(),
    Column("exchange", Text, nullable=False),
    Column("trade_id", BigInteger, nullable=False),
    Column("price", Float(53), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("conditions", ARRAY(Text), nullable=False),
    Column("tape", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("symbol", "time", "exchange", "trade_id", name="trades_pkey"),
    postgresql_partition_by="RANGE (time)",
)

bars = Table(
    "bars",
    metadata,
    Column("symbol", Text, nullable=False),
    Column("timeframe", Text, nullable=False, comment="1Min (minute and updated bars) or 1Day"),
    Column("time", DateTime(timezone=True), nullable=False, comment="bar start, partition key"),
    Column("time_ns", BigInteger, nullable=False),
    Column("open", Float(53), nullable=False),
    Column("high", Float(53), nullable=False),
    Column("low", Float(53), nullable=False),
    Column("close", Float(53), nullable=False),
    Column("volume", BigInteger, nullable=False),
    Column("vwap", Float(53), nullable=False),
    Column("trade_count", BigInteger, nullable=False),
    Column("updated", Text, nullable=False, comment="b = minute bar, u = updated after late trades, d = daily"),
    Column("received_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("symbol", "timeframe", "time", name="bars_pkey"),
    postgresql_partition_by="RANGE (time)",
)

#: Tables that are partitioned by day, in the order migrations create them: every stored family's.
PARTITIONED_TABLES: Final = tuple(family.table for family in STOCK.stored if family.table is not None)
