"""Descriptions on every table, view and column (``\\d+`` in psql), and the read-only role tickpipe_reader.

The descriptions are those of :mod:`tickpipe.schema` (``comment=``), spelled here as
they were at this revision, as 0001 and 0002 freeze their tables; a test holds the
migrated database and the model to the same text.

tickpipe_reader is a NOLOGIN group role: it may read every table and view of the
schema, now and later (default privileges), and write nothing. A person or a tool
logs in as its own role and is made a member (README, "Querying the data")::

    CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE tickpipe_reader;

Roles belong to the whole server, not to one database: the role is created only
if absent (two databases migrated at once may race to create it), and a downgrade
drops it only when nothing else holds it (no members, no grants in another database).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READER = "tickpipe_reader"

_SYMBOL = "ticker symbol, as Alpaca sends it (e.g. AAPL)"
_TIME = "event time (UTC, to the microsecond), as the exchange or SIP stamped it; the daily partition key"
_TIME_NS = "the same event time exact to the nanosecond, as Alpaca sent it: nanoseconds since 1970-01-01 UTC"
_TAPE = "consolidated tape: A = NYSE, B = NYSE Arca, Cboe and other regional, C = Nasdaq listed"
_RECEIVED_AT = (
    "when tickpipe's producer received the event from Alpaca (the producer's clock; for a backfilled event, "
    "when the backfill fetched it); received_at - time is the feed's latency. NULL when unknown"
)
_EXCHANGE = "exchange code of the venue that printed the trade (e.g. V = IEX, Q = Nasdaq, N = NYSE)"
_CONDITIONS = "trade condition codes of the tape (e.g. @ regular sale, I odd lot, T extended hours)"

#: Description of each table and view, then of each of its columns, in column order.
COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "quotes": (
        "National best bid and offer updates (NBBO for the SIP feed, IEX's own quote for the IEX feed): "
        "one row per quote event. Daily partitions quotes_pYYYYMMDD.",
        {
            "symbol": _SYMBOL,
            "time": _TIME,
            "time_ns": _TIME_NS,
            "event_key": (
                "deterministic 64-bit hash of the quote's upstream content (every field but received_at): "
                "it tells apart two quotes of one symbol at the same time, and makes a redelivered or "
                "replayed quote a no-op. An identifier, not a quantity"
            ),
            "bid_exchange": "exchange code of the best bid (e.g. V = IEX, Q = Nasdaq, N = NYSE)",
            "bid_price": "best bid price, USD per share, exactly as sent (double precision, no rounding)",
            "bid_size": "shares at the best bid (Alpaca sends round lots as shares)",
            "ask_exchange": "exchange code of the best ask",
            "ask_price": "best ask (offer) price, USD per share, exactly as sent",
            "ask_size": "shares at the best ask",
            "conditions": "quote condition codes of the tape (e.g. R regular two-sided quote)",
            "tape": _TAPE,
            "received_at": _RECEIVED_AT,
        },
    ),
    "trades": (
        "Trades (prints) as first reported: one row per trade event. Corrections and cancels are stored apart "
        "(tables corrections, cancels) and applied by the view trades_corrected. Daily partitions "
        "trades_pYYYYMMDD.",
        {
            "symbol": _SYMBOL,
            "time": _TIME,
            "time_ns": _TIME_NS,
            "exchange": _EXCHANGE,
            "trade_id": "trade id given by the exchange: unique per symbol, exchange and day (ids repeat across days)",
            "price": "trade price, USD per share, exactly as sent (double precision, no rounding)",
            "size": "shares traded",
            "conditions": _CONDITIONS,
            "tape": _TAPE,
            "received_at": _RECEIVED_AT,
        },
    ),
    "bars": (
        "OHLCV bars: one row per symbol, timeframe and bar start. A minute bar (updated = 'b') is replaced by "
        "its updated version (updated = 'u') when late trades arrive; daily bars have updated = 'd'. "
        "Daily partitions bars_pYYYYMMDD.",
        {
            "symbol": _SYMBOL,
            "timeframe": "1Min for minute bars (updated = 'b' or 'u'), 1Day for daily bars (updated = 'd')",
            "time": "start of the bar (UTC): the minute 09:30 covers 09:30:00 to 09:30:59.999; the partition key",
            "time_ns": "the same bar start, nanoseconds since 1970-01-01 UTC",
            "open": "first trade price of the bar, USD",
            "high": "highest trade price of the bar, USD",
            "low": "lowest trade price of the bar, USD",
            "close": "last trade price of the bar, USD",
            "volume": "shares traded in the bar",
            "vwap": "volume-weighted average price of the bar's trades, USD",
            "trade_count": "number of trades in the bar",
            "updated": (
                "which message this row is, by Alpaca's event type: b = minute bar as first sent, "
                "u = updated minute bar (late trades included; replaces the b row, never the reverse), "
                "d = daily bar"
            ),
            "received_at": _RECEIVED_AT,
        },
    ),
    "statuses": (
        "Trading status messages: halts, resumptions, LULD pauses, quote-only periods. One row per status "
        "event. Daily partitions statuses_pYYYYMMDD.",
        {
            "symbol": _SYMBOL,
            "time": _TIME,
            "time_ns": _TIME_NS,
            "status_code": "status code of the tape, e.g. H halt, T resumption (UTP); 2 halt, 3 resume (CTA)",
            "status_message": "the status code in words, as Alpaca sends it (e.g. Trading Halt)",
            "reason_code": "reason code of the status, e.g. LUDP: a limit up-limit down (LULD) pause",
            "reason_message": "the reason code in words, as Alpaca sends it",
            "tape": _TAPE,
            "received_at": _RECEIVED_AT,
        },
    ),
    "corrections": (
        "Trade corrections as they arrived: each names a trade by its id (original_*) and gives its new values "
        "(corrected_*). Never applied to trades in place: read trades_corrected for trades as they stand. "
        "Daily partitions corrections_pYYYYMMDD.",
        {
            "symbol": _SYMBOL,
            "time": "when the correction was sent (UTC, to the microsecond); the partition key",
            "time_ns": _TIME_NS,
            "exchange": "exchange code of the corrected trade",
            "original_id": "trade_id of the trade corrected (or the corrected_id of an earlier correction)",
            "original_price": "the trade's price before this correction, USD",
            "original_size": "the trade's size before this correction, shares",
            "original_conditions": "the trade's condition codes before this correction",
            "corrected_id": "the trade's id from this correction on (a later correction or cancel names this id)",
            "corrected_price": "the trade's price after this correction, USD",
            "corrected_size": "the trade's size after this correction, shares",
            "corrected_conditions": "the trade's condition codes after this correction",
            "tape": _TAPE,
            "received_at": _RECEIVED_AT,
        },
    ),
    "cancels": (
        "Trade cancels and busts (errors) as they arrived. Never applied to trades in place: trades_corrected "
        "marks a cancelled trade. Daily partitions cancels_pYYYYMMDD.",
        {
            "symbol": _SYMBOL,
            "time": "when the cancel was sent (UTC, to the microsecond); the partition key",
            "time_ns": _TIME_NS,
            "exchange": "exchange code of the cancelled trade",
            "trade_id": "trade_id of the trade cancelled (or the corrected_id a correction gave it)",
            "price": "price of the cancelled trade, USD",
            "size": "size of the cancelled trade, shares",
            "action": "as Alpaca sends it: C = cancel, E = error (trade busted)",
            "tape": _TAPE,
            "received_at": _RECEIVED_AT,
        },
    ),
    "trades_corrected": (
        "Trades as they stand: the last correction of each trade applied (price, size, conditions; original_* as "
        "first printed) and cancelled = true for a cancelled or busted trade. Filter on symbol and time: "
        "corrections and cancels count within one day after the trade.",
        {
            "symbol": _SYMBOL,
            "time": "trade time as first printed (UTC, to the microsecond)",
            "time_ns": _TIME_NS,
            "exchange": _EXCHANGE,
            "trade_id": "trade id as first printed (see corrected_id for the id a correction gave it)",
            "price": "price as it stands: the last correction's, else as printed, USD",
            "size": "size as it stands: the last correction's, else as printed, shares",
            "conditions": "condition codes as they stand: the last correction's, else as printed",
            "tape": _TAPE,
            "received_at": "when the producer received the trade as first printed (see trades.received_at)",
            "corrected_id": "the trade's id after its last correction; NULL when never corrected",
            "original_price": "price as first printed, USD",
            "original_size": "size as first printed, shares",
            "original_conditions": "condition codes as first printed",
            "cancel_action": "C = cancelled, E = error (busted), from the last cancel of the trade; NULL if none",
            "cancelled": "true when the trade was cancelled or busted: leave it out of volumes and prices",
        },
    ),
}

VIEWS = ("trades_corrected",)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _comment_statements(clear: bool = False) -> list[str]:
    statements = []
    for relation, (description, columns) in COMMENTS.items():
        kind = "VIEW" if relation in VIEWS else "TABLE"
        statements.append(f"COMMENT ON {kind} {relation} IS {'NULL' if clear else _literal(description)}")
        for column, text in columns.items():
            statements.append(f'COMMENT ON COLUMN {relation}."{column}" IS {"NULL" if clear else _literal(text)}')
    return statements


# CREATE ROLE has no IF NOT EXISTS; two databases of one server migrated at once may both find the
# role absent, and the loser's error is swallowed, since the role it wanted now exists.
CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        BEGIN
            CREATE ROLE {READER} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END $$
"""

# The schema the tables are in (the first of the search path, where 0001 created them).
GRANT = f"""
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO {READER}', current_schema());
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO {READER}', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO {READER}', current_schema());
END $$
"""

REVOKE = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE SELECT ON TABLES FROM {READER}', current_schema());
        EXECUTE format('REVOKE SELECT ON ALL TABLES IN SCHEMA %I FROM {READER}', current_schema());
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {READER}', current_schema());
    END IF;
END $$
"""

# Dropped only when nothing else holds it: no member (a login role given it by hand) and no privilege in
# another database (DROP ROLE then fails with dependent_objects_still_exist; the role stays).
DROP_ROLE = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}')
       AND NOT EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
                       WHERE r.rolname = '{READER}') THEN
        BEGIN
            DROP ROLE {READER};
        EXCEPTION WHEN dependent_objects_still_exist OR undefined_object THEN
            NULL;
        END;
    END IF;
END $$
"""


def upgrade() -> None:
    for statement in _comment_statements():
        op.execute(statement)
    op.execute(CREATE_ROLE)
    op.execute(GRANT)


def downgrade() -> None:
    op.execute(REVOKE)
    op.execute(DROP_ROLE)
    for statement in _comment_statements(clear=True):
        op.execute(statement)
    # 0002 described the view itself; put its words back.
    op.execute(
        "COMMENT ON VIEW trades_corrected IS 'trades with their corrections applied (price, size, conditions; "
        "original_* as printed) and cancelled = true for a cancelled or busted trade (cancel_action C or E)'"
    )
