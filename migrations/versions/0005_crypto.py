"""The crypto feed's tables: crypto_trades, crypto_quotes, crypto_bars, crypto_orderbooks (daily partitions).

Pairs (``BTC/USD``) and fractional sizes; no exchanges, tapes or conditions.
Order book messages are stored one row per message, whole books (``reset``) and
changed levels alike, so a pair's book at any moment can be rebuilt in SQL.
Their descriptions are those of :mod:`tickpipe.schema`, frozen here as 0003
froze the stock tables'; the read-only role of 0003 may read them (default privileges).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE crypto_trades (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    trade_id BIGINT NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    size DOUBLE PRECISION NOT NULL,
    taker_side TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT crypto_trades_pkey PRIMARY KEY (symbol, time, trade_id)
)
 PARTITION BY RANGE (time);

CREATE TABLE crypto_quotes (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    event_key BIGINT NOT NULL,
    bid_price DOUBLE PRECISION NOT NULL,
    bid_size DOUBLE PRECISION NOT NULL,
    ask_price DOUBLE PRECISION NOT NULL,
    ask_size DOUBLE PRECISION NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT crypto_quotes_pkey PRIMARY KEY (symbol, time, event_key)
)
 PARTITION BY RANGE (time);

CREATE TABLE crypto_bars (
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    open DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    close DOUBLE PRECISION NOT NULL,
    volume DOUBLE PRECISION NOT NULL,
    vwap DOUBLE PRECISION NOT NULL,
    trade_count BIGINT NOT NULL,
    updated TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT crypto_bars_pkey PRIMARY KEY (symbol, timeframe, time)
)
 PARTITION BY RANGE (time);

CREATE TABLE crypto_orderbooks (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    event_key BIGINT NOT NULL,
    reset BOOLEAN NOT NULL,
    bid_prices DOUBLE PRECISION[] NOT NULL,
    bid_sizes DOUBLE PRECISION[] NOT NULL,
    ask_prices DOUBLE PRECISION[] NOT NULL,
    ask_sizes DOUBLE PRECISION[] NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT crypto_orderbooks_pkey PRIMARY KEY (symbol, time, event_key)
)
 PARTITION BY RANGE (time);
"""

PARTITIONED_TABLES = ("crypto_trades", "crypto_quotes", "crypto_bars", "crypto_orderbooks")

#: Description of each table, then of each of its columns.
COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "crypto_trades": (
        "Crypto trades: one row per trade event. Daily partitions crypto_trades_pYYYYMMDD.",
        {
            "symbol": "currency pair, as Alpaca writes it (e.g. BTC/USD: the price of one BTC in USD)",
            "time": "event time (UTC, to the microsecond), as Alpaca's crypto venue stamped it; the daily "
            "partition key",
            "time_ns": "the same event time exact to the nanosecond, as Alpaca sent it: nanoseconds since "
            "1970-01-01 UTC",
            "trade_id": "trade id given by the venue, unique per pair",
            "price": "trade price, quote currency per unit, exactly as sent",
            "size": "size traded, in units of the base currency (fractional)",
            "taker_side": "the taker's side: B = a buyer lifted the ask, S = a seller hit the bid",
            "received_at": "when tickpipe's producer received the event from Alpaca (the producer's clock; "
            "for a backfilled event, when the backfill fetched it); received_at - time is "
            "the feed's latency. NULL when unknown",
        },
    ),
    "crypto_quotes": (
        "Crypto quotes (best bid and ask of Alpaca's crypto venue): one row per quote event. Daily "
        "partitions crypto_quotes_pYYYYMMDD.",
        {
            "symbol": "currency pair, as Alpaca writes it (e.g. BTC/USD: the price of one BTC in USD)",
            "time": "event time (UTC, to the microsecond), as Alpaca's crypto venue stamped it; the daily "
            "partition key",
            "time_ns": "the same event time exact to the nanosecond, as Alpaca sent it: nanoseconds since "
            "1970-01-01 UTC",
            "event_key": "deterministic 64-bit hash of the quote's upstream content (every field but "
            "received_at): it tells apart two quotes of one pair at the same time, and makes "
            "a redelivered quote a no-op",
            "bid_price": "best bid price, quote currency per unit, exactly as sent",
            "bid_size": "size at the best bid, in units of the base currency",
            "ask_price": "best ask price, quote currency per unit, exactly as sent",
            "ask_size": "size at the best ask, in units of the base currency",
            "received_at": "when tickpipe's producer received the event from Alpaca (the producer's clock; "
            "for a backfilled event, when the backfill fetched it); received_at - time is "
            "the feed's latency. NULL when unknown",
        },
    ),
    "crypto_bars": (
        "Crypto OHLCV bars: one row per pair, timeframe and bar start; an updated minute bar replaces the "
        "minute bar. Daily partitions crypto_bars_pYYYYMMDD.",
        {
            "symbol": "currency pair, as Alpaca writes it (e.g. BTC/USD: the price of one BTC in USD)",
            "timeframe": "1Min for minute bars (updated = 'b' or 'u'), 1Day for daily bars (updated = 'd')",
            "time": "start of the bar (UTC): the minute 09:30 covers 09:30:00 to 09:30:59.999; the partition key",
            "time_ns": "the same bar start, nanoseconds since 1970-01-01 UTC",
            "open": "first trade price of the bar",
            "high": "highest trade price of the bar",
            "low": "lowest trade price of the bar",
            "close": "last trade price of the bar",
            "volume": "units of the base currency traded in the bar (fractional)",
            "vwap": "volume-weighted average price of the bar's trades",
            "trade_count": "number of trades in the bar",
            "updated": "which message this row is, by Alpaca's event type: b = minute bar as first sent, u = "
            "updated minute bar (late trades included; replaces the b row, never the reverse), d "
            "= daily bar",
            "received_at": "when tickpipe's producer received the event from Alpaca (the producer's clock; "
            "for a backfilled event, when the backfill fetched it); received_at - time is the "
            "feed's latency. NULL when unknown",
        },
    ),
    "crypto_orderbooks": (
        "Crypto order book messages (level 2) in arrival order: a whole book (reset) after each "
        "subscription, then changed levels. A pair's book at a moment is its last reset row with "
        "the later rows applied in time order. Daily partitions crypto_orderbooks_pYYYYMMDD.",
        {
            "symbol": "currency pair, as Alpaca writes it (e.g. BTC/USD: the price of one BTC in USD)",
            "time": "event time (UTC, to the microsecond), as Alpaca's crypto venue stamped it; the "
            "daily partition key",
            "time_ns": "the same event time exact to the nanosecond, as Alpaca sent it: nanoseconds "
            "since 1970-01-01 UTC",
            "event_key": "deterministic 64-bit hash of the message's upstream content (every field but "
            "received_at): makes a redelivered message a no-op",
            "reset": "true: the message is the whole book (replace it); false: only the levels that changed",
            "bid_prices": "bid price levels of the message, best first: prices (quote currency per "
            "unit of the base currency)",
            "bid_sizes": "size at each of bid_prices, in units of the base currency; 0 removes the level",
            "ask_prices": "ask price levels of the message, best first: prices (quote currency per "
            "unit of the base currency)",
            "ask_sizes": "size at each of ask_prices, in units of the base currency; 0 removes the level",
            "received_at": "when tickpipe's producer received the event from Alpaca (the producer's "
            "clock; for a backfilled event, when the backfill fetched it); received_at "
            "- time is the feed's latency. NULL when unknown",
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
