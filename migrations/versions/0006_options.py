"""The options feed's tables: options_trades, options_quotes (daily partitions).

OCC contract symbols, whole-contract sizes and one condition code per message.
OPRA gives a trade no id, so both tables are keyed by the hash of the message's
content (``event_key``), as the stock quotes are. Descriptions frozen here as in 0005.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE options_trades (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    event_key BIGINT NOT NULL,
    exchange TEXT NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    size BIGINT NOT NULL,
    condition TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT options_trades_pkey PRIMARY KEY (symbol, time, event_key)
)
 PARTITION BY RANGE (time);

CREATE TABLE options_quotes (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    event_key BIGINT NOT NULL,
    bid_exchange TEXT NOT NULL,
    bid_price DOUBLE PRECISION NOT NULL,
    bid_size BIGINT NOT NULL,
    ask_exchange TEXT NOT NULL,
    ask_price DOUBLE PRECISION NOT NULL,
    ask_size BIGINT NOT NULL,
    condition TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT options_quotes_pkey PRIMARY KEY (symbol, time, event_key)
)
 PARTITION BY RANGE (time);
"""

PARTITIONED_TABLES = ("options_trades", "options_quotes")

#: Description of each table, then of each of its columns.
COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "options_trades": (
        "Option trades (OPRA, or Alpaca's indicative feed): one row per trade event. Daily partitions "
        "options_trades_pYYYYMMDD.",
        {
            "symbol": "OCC option contract symbol: root, expiry YYMMDD, C or P, strike x 1000 in 8 digits "
            "(AAPL240621C00190000)",
            "time": "event time (UTC, to the microsecond), as OPRA stamped it; the daily partition key",
            "time_ns": "the same event time exact to the nanosecond, as Alpaca sent it: nanoseconds since "
            "1970-01-01 UTC",
            "event_key": "deterministic 64-bit hash of the message's upstream content (every field but "
            "received_at): OPRA gives no id, so it tells apart two messages of one contract "
            "at the same time and makes a redelivery a no-op",
            "exchange": "OPRA exchange code of the venue that printed the trade",
            "price": "premium per share of the underlying, USD, exactly as sent",
            "size": "contracts traded",
            "condition": "OPRA trade condition code, as sent",
            "received_at": "when tickpipe's producer received the event from Alpaca (the producer's "
            "clock; for a backfilled event, when the backfill fetched it); received_at - "
            "time is the feed's latency. NULL when unknown",
        },
    ),
    "options_quotes": (
        "Option quotes (best bid and offer of a contract): one row per quote event. Daily partitions "
        "options_quotes_pYYYYMMDD.",
        {
            "symbol": "OCC option contract symbol: root, expiry YYMMDD, C or P, strike x 1000 in 8 digits "
            "(AAPL240621C00190000)",
            "time": "event time (UTC, to the microsecond), as OPRA stamped it; the daily partition key",
            "time_ns": "the same event time exact to the nanosecond, as Alpaca sent it: nanoseconds since "
            "1970-01-01 UTC",
            "event_key": "deterministic 64-bit hash of the message's upstream content (every field but "
            "received_at): OPRA gives no id, so it tells apart two messages of one contract "
            "at the same time and makes a redelivery a no-op",
            "bid_exchange": "OPRA exchange code of the best bid",
            "bid_price": "best bid premium, USD, exactly as sent",
            "bid_size": "contracts at the best bid",
            "ask_exchange": "OPRA exchange code of the best ask",
            "ask_price": "best ask premium, USD, exactly as sent",
            "ask_size": "contracts at the best ask",
            "condition": "OPRA quote condition code, as sent",
            "received_at": "when tickpipe's producer received the event from Alpaca (the producer's "
            "clock; for a backfilled event, when the backfill fetched it); received_at - "
            "time is the feed's latency. NULL when unknown",
        },
    ),
}


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def upgrade() -> None:
    for statement in TABLES.split(";")[:-1]:
        op.execute(statement)
    for name in PARTITIONED_TABLES:
        op.execute(
            f"SELECT tickpipe_ensure_partitions('{name}', (now() AT TIME ZONE 'UTC')::date - 1, "
            f"(now() AT TIME ZONE 'UTC')::date + 7)"
        )
    for table, (description, columns) in COMMENTS.items():
        op.execute(f"COMMENT ON TABLE {table} IS {_quoted(description)}")
        for column, text in columns.items():
            op.execute(f"COMMENT ON COLUMN {table}.{column} IS {_quoted(text)}")


def downgrade() -> None:
    for name in reversed(PARTITIONED_TABLES):
        op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
