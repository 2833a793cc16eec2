"""Tables quotes, trades, bars, partitioned by day, and the functions that manage their partitions.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (not read from tickpipe.schema) so this revision stays what it was
# when later revisions change the model.
TABLES = """
CREATE TABLE quotes (
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
    conditions TEXT[] NOT NULL,
    tape TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT quotes_pkey PRIMARY KEY (symbol, time, event_key)
)
 PARTITION BY RANGE (time);

CREATE TABLE trades (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    exchange TEXT NOT NULL,
    trade_id BIGINT NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    size BIGINT NOT NULL,
    conditions TEXT[] NOT NULL,
    tape TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT trades_pkey PRIMARY KEY (symbol, time, exchange, trade_id)
)
 PARTITION BY RANGE (time);

CREATE TABLE bars (
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    open DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    close DOUBLE PRECISION NOT NULL,
    volume BIGINT NOT NULL,
    vwap DOUBLE PRECISION NOT NULL,
    trade_count BIGINT NOT NULL,
    updated TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT bars_pkey PRIMARY KEY (symbol, timeframe, time)
)
 PARTITION BY RANGE (time);
"""

PARTITIONED_TABLES = ("quotes", "trades", "bars")

# Partitions are named <table>_pYYYYMMDD and cover one UTC day. Two consumers may
# create the same partition at once: the loser's error is swallowed, since the
# partition it wanted now exists.
ENSURE_PARTITIONS = """
CREATE OR REPLACE FUNCTION tickpipe_ensure_partitions(parent text, first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date := first_day;
    created integer := 0;
    child text;
BEGIN
    WHILE day <= last_day LOOP
        child := format('%s_p%s', parent, to_char(day, 'YYYYMMDD'));
        IF to_regclass(child) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    child, parent,
                    (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
                created := created + 1;
            EXCEPTION WHEN duplicate_table OR unique_violation THEN
                NULL;
            END;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;
"""

# Retention is a partition drop: instant, no bloat, no long DELETE.
DROP_PARTITIONS = """
CREATE OR REPLACE FUNCTION tickpipe_drop_partitions_before(parent text, cutoff date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    child record;
    dropped integer := 0;
BEGIN
    FOR child IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = parent AND c.relname ~ ('^' || parent || '_p[0-9]{8}$')
    LOOP
        IF to_date(right(child.relname, 8), 'YYYYMMDD') < cutoff THEN
            EXECUTE format('DROP TABLE IF EXISTS %I', child.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;
"""


def upgrade() -> None:
    for statement in TABLES.split(";")[:-1]:
        op.execute(statement)
    op.execute(ENSURE_PARTITIONS)
    op.execute(DROP_PARTITIONS)
    for name in PARTITIONED_TABLES:
        op.execute(
            f"SELECT tickpipe_ensure_partitions('{name}', (now() AT TIME ZONE 'UTC')::date - 1, "
            f"(now() AT TIME ZONE 'UTC')::date + 7)"
        )


def downgrade() -> None:
    for name in reversed(PARTITIONED_TABLES):
        op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS tickpipe_ensure_partitions(text, date, date)")
    op.execute("DROP FUNCTION IF EXISTS tickpipe_drop_partitions_before(text, date)")
