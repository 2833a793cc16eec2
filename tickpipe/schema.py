"""The PostgreSQL schema as SQLAlchemy Core tables: the single source the migration and the queries share.

Design choices, for analysts and for replays:

- long column names (``bid_price``), one row per upstream event;
- ``time`` is a ``timestamptz`` (microseconds, what SQL tools understand, and the
  daily partition key) and ``time_ns`` the exact nanoseconds Alpaca sent;
- prices are ``double precision``: exactly the float64 that arrived, no rounding;
- every table's primary key is deterministic from the event's content, so a
  redelivered or replayed record is a no-op (``ON CONFLICT DO NOTHING``), except
  bars, whose updated version replaces the minute bar (``DO UPDATE``);
- corrections and cancels are stored as they arrive, never applied to ``trades``
  in place (a replay of a trade must not undo them, and the original stays
  readable); the view ``trades_corrected`` (migration 0002) applies them;
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
    Index,
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

statuses = Table(
    "statuses",
    metadata,
    *_time_columns(),
    Column("status_code", Text, nullable=False, comment="e.g. H halt, T resumption (UTP); 2 halt, 3 resume (CTA)"),
    Column("status_message", Text, nullable=False),
    Column("reason_code", Text, nullable=False, comment="e.g. LUDP: a limit up-limit down (LULD) pause"),
    Column("reason_message", Text, nullable=False),
    Column("tape", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("symbol", "time", "status_code", "reason_code", name="statuses_pkey"),
    postgresql_partition_by="RANGE (time)",
)

corrections = Table(
    "corrections",
    metadata,
    *_time_columns(),
    Column("exchange", Text, nullable=False),
    Column("original_id", BigInteger, nullable=False, comment="trade_id of the trade (or correction) corrected"),
    Column("original_price", Float(53), nullable=False),
    Column("original_size", BigInteger, nullable=False),
    Column("original_conditions", ARRAY(Text), nullable=False),
    Column("corrected_id", BigInteger, nullable=False, comment="the trade's id from now on (a later message names it)"),
    Column("corrected_price", Float(53), nullable=False),
    Column("corrected_size", BigInteger, nullable=False),
    Column("corrected_conditions", ARRAY(Text), nullable=False),
    Column("tape", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("symbol", "time", "exchange", "original_id", "corrected_id", name="corrections_pkey"),
    # How trades_corrected finds the corrections of one trade: by its id, not by the correction's time.
    Index("corrections_original", "symbol", "exchange", "original_id", "time"),
    postgresql_partition_by="RANGE (time)",
)

cancels = Table(
    "cancels",
    metadata,
    *_time_columns(),
    Column("exchange", Text, nullable=False),
    Column("trade_id", BigInteger, nullable=False, comment="the trade cancelled"),
    Column("price", Float(53), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("action", Text, nullable=False, comment="as Alpaca sends it: C = cancel, E = error"),
    Column("tape", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("symbol", "time", "exchange", "trade_id", name="cancels_pkey"),
    Index("cancels_trade", "symbol", "exchange", "trade_id", "time"),
    postgresql_partition_by="RANGE (time)",
)

#: Tables that are partitioned by day, in the order migrations create them: every stored family's.
PARTITIONED_TABLES: Final = tuple(family.table for family in STOCK.tables if family.table is not None)
