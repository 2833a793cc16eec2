"""The order updates feed's table trade_updates (daily partitions), and API keys' scopes.

One row per update of an order from the trading API's ``trade_updates``
stream, keyed by (symbol, time, order id, event, execution id) so a redelivery
is a no-op; prices and quantities as ``numeric`` exactly as sent, the whole
order as ``jsonb``. tickpipe_reader may read it, as every table made after
0003 (its default privileges).

Order updates are private to the account: ``api_keys.scopes`` lists what a
key may see beyond market data; ``trade_updates`` lets it have the order
updates (``tickpipe keys add NAME --trade-updates``). Every existing key
has none. Descriptions frozen here as in 0005.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = """
CREATE TABLE trade_updates (
    symbol TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    time_ns BIGINT NOT NULL,
    order_id TEXT NOT NULL,
    event TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    order_quantity NUMERIC,
    filled_quantity NUMERIC,
    filled_average_price NUMERIC,
    fill_price NUMERIC,
    fill_quantity NUMERIC,
    position_quantity NUMERIC,
    order_status TEXT NOT NULL,
    order_details JSONB NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT trade_updates_pkey PRIMARY KEY (symbol, time, order_id, event, execution_id)
)
 PARTITION BY RANGE (time)
"""

_ORDER = "the order as it was after the event, "
_TIME_NS = "the same event time exact to the nanosecond, as Alpaca sent it: nanoseconds since 1970-01-01 UTC"
_RECEIVED_AT = (
    "when tickpipe's producer received the event from Alpaca (the producer's clock; for a backfilled event, "
    "when the backfill fetched it); received_at - time is the feed's latency. NULL when unknown"
)

#: Description of the table, then of each of its columns.
COMMENTS: tuple[str, dict[str, str]] = (
    "The account's order updates (the trading API's trade_updates stream): one row per update of an order, as "
    "it arrived. Private to the account: the API serves it only to keys allowed to see order updates. Daily "
    "partitions trade_updates_pYYYYMMDD.",
    {
        "symbol": "symbol of the order's asset: a ticker, a crypto pair or an OCC option contract, as the trading "
        "API writes it (AAPL, BTC/USD)",
        "time": "time of the event (UTC, to the microsecond), the update's timestamp as Alpaca's trading API "
        "stamped it; the daily partition key",
        "time_ns": _TIME_NS,
        "order_id": "the order's id (a UUID given by Alpaca): every update of one order has it, and Kafka keeps "
        "them in order by it",
        "event": "what happened to the order: new, fill, partial_fill, canceled, expired, done_for_day, replaced, "
        "rejected, pending_new, stopped, pending_cancel, pending_replace, calculated, suspended, "
        "order_replace_rejected, order_cancel_rejected",
        "execution_id": "id of the execution (a UUID) of a fill or partial fill; empty for an event that is no "
        "execution. With the order id, event and time, it keys the row",
        "client_order_id": "the id the account gave the order when it submitted it (empty when none was sent)",
        "side": "buy or sell",
        "order_type": "market, limit, stop, stop_limit or trailing_stop",
        "order_quantity": _ORDER + "its ordered quantity (shares, coins or contracts), exactly as sent; NULL for a "
        "notional order",
        "filled_quantity": _ORDER + "its quantity filled so far, exactly as sent",
        "filled_average_price": _ORDER + "the average price of its fills so far, exactly as sent; NULL before any fill",
        "fill_price": "price of this fill or partial fill, exactly as sent; NULL for an event that is no execution",
        "fill_quantity": "quantity of this fill or partial fill, exactly as sent; NULL for an event that is no "
        "execution",
        "position_quantity": "the account's position in the symbol after this fill (negative: short), exactly as "
        "sent; NULL for an event that is no execution",
        "order_status": _ORDER + "its status (new, partially_filled, filled, canceled, replaced ...)",
        "order_details": "the whole order object as Alpaca sent it with the event (limit and stop prices, time in "
        "force, created_at, filled_at, replaced_by, legs ...)",
        "received_at": _RECEIVED_AT,
    },
)

SCOPES = "ALTER TABLE api_keys ADD COLUMN scopes TEXT[] NOT NULL DEFAULT '{}'"
SCOPES_COMMENT = (
    "what the key may see beyond market data: trade_updates (the account's order updates, on /stream and "
    "GET /trade_updates); empty: market data only"
)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(
        "SELECT tickpipe_ensure_partitions('trade_updates', (now() AT TIME ZONE 'UTC')::date - 1, "
        "(now() AT TIME ZONE 'UTC')::date + 7)"
    )
    description, columns = COMMENTS
    op.execute(f"COMMENT ON TABLE trade_updates IS {_quoted(description)}")
    for column, text in columns.items():
        op.execute(f"COMMENT ON COLUMN trade_updates.{column} IS {_quoted(text)}")
    op.execute(SCOPES)
    op.execute(f"COMMENT ON COLUMN api_keys.scopes IS {_quoted(SCOPES_COMMENT)}")


def downgrade() -> None:
    op.execute("ALTER TABLE api_keys DROP COLUMN IF EXISTS scopes")
    op.execute("DROP TABLE IF EXISTS trade_updates CASCADE")
