"""The stock feed: Alpaca's market-data stream v2 (``iex``, ``sip``, ``test``), as tickpipe carries it."""

from __future__ import annotations

from typing import Final

from tickpipe.feeds.spec import Conflict, EventType, Family, Feed

QUOTES: Final = Family(
    "quotes",
    (EventType("q", "quotes", "quote", tick=True),),
    table="quotes",
    required=True,
    stage_columns="symbol text, time_ns bigint, received_ns bigint, event_key bigint, bid_exchange text, "
    "bid_price float8, bid_size bigint, ask_exchange text, ask_price float8, ask_size bigint, conditions text, "
    "tape text",
    stage_row="consumers.staging:quote_row",
    hidden=("event_key",),
    history="quotes",
    history_on_request=True,
)
TRADES: Final = Family(
    "trades",
    (EventType("t", "trades", "trade", tick=True),),
    table="trades",
    required=True,
    stage_columns="symbol text, time_ns bigint, received_ns bigint, exchange text, trade_id bigint, price float8, "
    "size bigint, conditions text, tape text",
    stage_row="consumers.staging:trade_row",
    view="trades_corrected",
    history="trades",
)
BARS: Final = Family(
    "bars",
    (
        EventType("b", "bars", "bar"),
        EventType("u", "updatedBars", "updated bar"),
        EventType("d", "dailyBars", "daily bar"),
    ),
    table="bars",
    required=True,
    # An updated bar replaces the minute bar; a minute bar never replaces an updated one (a replay
    # of an old record must not undo a correction).
    conflict=Conflict(replace=True, unless=("updated", "u", "b")),
    stage_columns="symbol text, timeframe text, time_ns bigint, received_ns bigint, open float8, high float8, "
    "low float8, close float8, volume bigint, vwap float8, trade_count bigint, updated text",
    stage_row="consumers.staging:bar_row",
    pinned=(("timeframe", "1Min"),),
    hidden=("updated",),
    latest_codes=("b", "u"),
    history="bars",
    history_params=(("timeframe", "1Min"),),  # the stream's bars: minute bars
    history_codes=("b", "u"),
)
# Trading statuses (halts, resumptions, LULD pauses), trade corrections and cancels/errors are stored
# as they arrive, one row per message, and never served as routes of their own: corrections and cancels
# amend the trade history (the ``trades_corrected`` view, which ``/trades/{symbol}`` reads), statuses
# are for analysts in SQL.
STATUSES: Final = Family(
    "statuses",
    (EventType("s", "statuses", "trading status"),),
    table="statuses",
    stage_columns="symbol text, time_ns bigint, received_ns bigint, status_code text, status_message text, "
    "reason_code text, reason_message text, tape text",
    stage_row="consumers.staging:status_row",
    served=False,
)
CORRECTIONS: Final = Family(
    "corrections",
    (EventType("c", "corrections", "trade correction", follows="trades"),),
    snapshot=False,
    table="corrections",
    stage_columns="symbol text, time_ns bigint, received_ns bigint, exchange text, original_id bigint, "
    "original_price float8, original_size bigint, original_conditions text, corrected_id bigint, "
    "corrected_price float8, corrected_size bigint, corrected_conditions text, tape text",
    stage_row="consumers.staging:correction_row",
    served=False,
)
CANCELS: Final = Family(
    "cancels",
    (EventType("x", "cancelErrors", "trade cancel", follows="trades"),),
    snapshot=False,
    table="cancels",
    stage_columns="symbol text, time_ns bigint, received_ns bigint, exchange text, trade_id bigint, price float8, "
    "size bigint, action text, tape text",
    stage_row="consumers.staging:cancel_row",
    served=False,
)

STOCK: Final = Feed(
    name="stock",
    path="/v2/{variant}",
    variants=("iex", "sip", "test"),
    dialect="alpaca-v2",
    symbol_pattern=r"[A-Z][A-Z0-9./-]{0,15}",
    families=(QUOTES, TRADES, BARS, STATUSES, CORRECTIONS, CANCELS),
    listed=("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds", "corrections", "cancelErrors"),
    uncarried=(("lulds", "l"),),
    history_path="/v2/stocks/{history}",
    history_feed=True,
)
