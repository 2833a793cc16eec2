"""Tables statuses, corrections, cancels (daily partitions) and the view trades_corrected.

Corrections and cancels are stored as they arrive and applied by the view, never
to ``trades`` in place: a replayed trade then cannot undo a correction, and the
trade as it was first printed stays readable.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (not read from tickpipe.schema), as in 0001.
TABLES = """
CREATE TABLE statuses (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    status_code TEXT NOT NULL,
    status_message TEXT NOT NULL,
    reason_code TEXT NOT NULL,
    reason_message TEXT NOT NULL,
    tape TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT statuses_pkey PRIMARY KEY (symbol, time, status_code, reason_code)
)
 PARTITION BY RANGE (time);

CREATE TABLE corrections (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    exchange TEXT NOT NULL,
    original_id BIGINT NOT NULL,
    original_price DOUBLE PRECISION NOT NULL,
    original_size BIGINT NOT NULL,
    original_conditions TEXT[] NOT NULL,
    corrected_id BIGINT NOT NULL,
    corrected_price DOUBLE PRECISION NOT NULL,
    corrected_size BIGINT NOT NULL,
    corrected_conditions TEXT[] NOT NULL,
    tape TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT corrections_pkey PRIMARY KEY (symbol, time, exchange, original_id, corrected_id)
)
 PARTITION BY RANGE (time);

CREATE INDEX corrections_original ON corrections (symbol, exchange, original_id, time);

CREATE TABLE cancels (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    exchange TEXT NOT NULL,
    trade_id BIGINT NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    size BIGINT NOT NULL,
    action TEXT NOT NULL,
    tape TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT cancels_pkey PRIMARY KEY (symbol, time, exchange, trade_id)
)
 PARTITION BY RANGE (time);

CREATE INDEX cancels_trade ON cancels (symbol, exchange, trade_id, time);
"""

PARTITIONED_TABLES = ("statuses", "corrections", "cancels")

# A trade as it stands: the last correction of its chain applied (a correction names the trade by
# its id, a later one names the id the previous one gave it), and the cancel of it or of its last
# corrected id. Trade ids repeat across days, so a correction or cancel counts for a trade only
# within the day after it (no market corrects a print later than that on the stream).
# ``cancelled`` is an EXISTS, not a LEFT JOIN's ``IS NOT NULL``: the planner estimates ``NOT EXISTS``
# from the cancels it has (few), so a history page stays an index scan of trades in time order that
# stops at LIMIT; with ``IS NULL`` on a joined column it guessed 0.5 % of trades kept and sorted them all.
_CANCEL_OF = """
    FROM cancels k
    WHERE k.symbol = t.symbol AND k.exchange = t.exchange AND k.trade_id IN (t.trade_id, c.corrected_id)
      AND k.time >= t.time AND k.time < t.time + interval '1 day'"""
VIEW = f"""
CREATE VIEW trades_corrected AS
SELECT t.symbol, t.time, t.time_ns, t.exchange, t.trade_id,
       coalesce(c.corrected_price, t.price) AS price,
       coalesce(c.corrected_size, t.size) AS size,
       coalesce(c.corrected_conditions, t.conditions) AS conditions,
       t.tape, t.received_at,
       c.corrected_id,
       t.price AS original_price, t.size AS original_size, t.conditions AS original_conditions,
       (SELECT k.action {_CANCEL_OF}
    ORDER BY k.time DESC LIMIT 1) AS cancel_action,
       EXISTS (SELECT {_CANCEL_OF}) AS cancelled
FROM trades t
LEFT JOIN LATERAL (
    WITH RECURSIVE chain AS (
        SELECT k.corrected_id, k.corrected_price, k.corrected_size, k.corrected_conditions, k.time, 1 AS depth
        FROM corrections k
        WHERE k.symbol = t.symbol AND k.exchange = t.exchange AND k.original_id = t.trade_id
          AND k.time >= t.time AND k.time < t.time + interval '1 day'
        UNION ALL
        SELECT k.corrected_id, k.corrected_price, k.corrected_size, k.corrected_conditions, k.time, chain.depth + 1
        FROM chain JOIN corrections k
          ON k.symbol = t.symbol AND k.exchange = t.exchange AND k.original_id = chain.corrected_id
         AND k.time >= chain.time AND k.time < t.time + interval '1 day'
        WHERE chain.depth < 32
    )
    SELECT * FROM chain ORDER BY depth DESC, time DESC LIMIT 1
) c ON true
"""

COMMENT = (
    "COMMENT ON VIEW trades_corrected IS 'trades with their corrections applied (price, size, conditions; "
    "original_* as printed) and cancelled = true for a cancelled or busted trade (cancel_action C or E)'"
)


def upgrade() -> None:
    for statement in TABLES.split(";")[:-1]:
        op.execute(statement)
    for name in PARTITIONED_TABLES:
        op.execute(
            f"SELECT tickpipe_ensure_partitions('{name}', (now() AT TIME ZONE 'UTC')::date - 1, "
            f"(now() AT TIME ZONE 'UTC')::date + 7)"
        )
    op.execute(VIEW)
    op.execute(COMMENT)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS trades_corrected")
    for name in reversed(PARTITIONED_TABLES):
        op.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
