"""The order updates feed: the trading API's stream ``/stream`` (``trade_updates``), private to the account.

Another dialect than the market-data streams (``TRADING``): the client sends
``{"action": "authenticate", "data": {"key_id", "secret_key"}}``, is answered
``{"stream": "authorization", "data": {"status": "authorized"}}``, then sends
``{"action": "listen", "data": {"streams": ["trade_updates"]}}`` and is
answered ``{"stream": "listening", ...}``; every message is one JSON object in
a binary frame, and an update is ``{"stream": "trade_updates", "data": {"event",
"execution_id", "order", "timestamp", "price", "qty", "position_qty"}}``. There
are no symbols to subscribe to: the stream carries every order of the account.

tickpipe keys its records by the order's id (``key``), so every update of one
order stays in order on one Kafka partition; its Redis channels are per symbol
(``trade_updates:AAPL``), its topic ``tickpipe.trade_updates``, its table
``trade_updates`` (migration 0008). Alpaca keeps no history of these events
(its REST ``/v2/orders`` shows orders' current state only), so a gap is not filled.

The API serves it at ``/stream`` (where alpaca-py's ``TradingStream`` connects) and
``GET /trade_updates``, both only to keys allowed to see order updates.
"""

from __future__ import annotations

from typing import Final

from tickpipe.feeds.spec import TRADING, EventType, Family, Feed

TRADE_UPDATES: Final = Family(
    "trade_updates",
    (EventType("o", "trade_updates", "order update", tick=True),),
    table="trade_updates",
    key="order_id",
    # Alpaca sends no snapshot on its trading stream; a new listener gets the updates from then on.
    snapshot=False,
    stage_columns="symbol text, time_ns bigint, received_ns bigint, order_id text, event text, execution_id text, "
    "client_order_id text, side text, order_type text, order_quantity numeric, filled_quantity numeric, "
    "filled_average_price numeric, fill_price numeric, fill_quantity numeric, position_quantity numeric, "
    "order_status text, order_details jsonb",
    stage_row="consumers.trade_update_staging:trade_update_row",
    # Its history is served by its own route (GET /trade_updates, by symbol or order), to permitted keys only.
    served=False,
)

TRADE_UPDATES_FEED: Final = Feed(
    name="trade_updates",
    path="/stream",
    variants=("paper",),
    dialect=TRADING,
    # An order's symbol: a ticker, a crypto pair or an OCC contract.
    symbol_pattern=r"[A-Z][A-Z0-9./-]{0,20}",
    families=(TRADE_UPDATES,),
    listed=("trade_updates",),
    stream_path="/stream",
    events="tickpipe.trade_update_events:TRADE_UPDATE_TYPES",
    example="AAPL",
    symbol_chars=21,
    encodings=("json",),
    host="paper-api.alpaca.markets",
)
