"""The options feed: Alpaca's option stream ``/v1beta1/{opra|indicative}`` (OCC contracts such as
``AAPL240621C00190000``).

MessagePack only: Alpaca answers a JSON client with error 412 ("option messages are only available
in MsgPack format"). Two channels, trades and quotes (no bars); ``*`` is allowed for trades, never
for quotes (error 413, "star subscription is not allowed for option quotes"). Its wire codes (``t``,
``q``) are the stock feed's with other fields, so its event structs have their own registry
(:mod:`tickpipe.option_events`), and its names are qualified by ``qualifier``: topics
``tickpipe.options.trades``, Redis channels ``options.quotes:AAPL240621C00190000``, hashes
``latest:options.quotes``.

Stored in ``options_trades`` and ``options_quotes`` (migration 0006), served under ``/options/...``
and streamed by the API at ``stream_path`` (``/v1beta1/opra``, where alpaca-py's ``OptionDataStream`` connects).

Gaps in its stream are filled as the stock feed's are (:mod:`producer.gaps`): trades from Alpaca's option
history, ``/v1beta1/options/trades?symbols=`` (alpaca-py's ``OptionHistoricalDataClient.get_option_trades``),
at most 100 contracts a request (Alpaca's bound; :data:`producer.gaps.CHUNK_SYMBOLS`), so a chain of
thousands is fetched in batches within the backfill's request budget. That API takes no ``feed``
(``OptionTradesRequest`` has none): the history is OPRA's, which the ``indicative`` stream is derived from.
Quotes have no REST history (Alpaca serves only each contract's latest quote, ``/v1beta1/options/quotes/latest``),
so a gap leaves them missing: the contract's next quote on the new connection replaces the stale one live.
Option bars exist in that API but the stream carries none.
"""

from __future__ import annotations

from typing import Final

from tickpipe.feeds.spec import EventType, Family, Feed

# Option trades carry no trade id: a trade's key is its content's hash (``event_key``), as a quote's is.
QUOTES: Final = Family(
    "quotes",
    (EventType("q", "quotes", "quote", tick=True),),
    table="options_quotes",
    stage_columns="symbol text, time_ns bigint, received_ns bigint, event_key bigint, bid_exchange text, "
    "bid_price float8, bid_size bigint, ask_exchange text, ask_price float8, ask_size bigint, condition text",
    stage_row="consumers.option_staging:quote_row",
    hidden=("event_key",),
    # No ``history``: Alpaca keeps no option quotes of a past window (the latest quote only).
)
TRADES: Final = Family(
    "trades",
    (EventType("t", "trades", "trade", tick=True),),
    table="options_trades",
    stage_columns="symbol text, time_ns bigint, received_ns bigint, event_key bigint, exchange text, price float8, "
    "size bigint, condition text",
    stage_row="consumers.option_staging:trade_row",
    hidden=("event_key",),
    history="trades",
)

#: An OCC contract symbol: the root (1 to 6 letters or digits, e.g. ``SPXW``, ``BRK2``), expiry
#: ``YYMMDD``, ``C`` or ``P``, and the strike times 1000 in 8 digits (``00190000`` is 190).
OCC_PATTERN: Final = r"[A-Z][A-Z0-9]{0,5}[0-9]{6}[CP][0-9]{8}"

OPTIONS: Final = Feed(
    name="options",
    path="/v1beta1/{variant}",
    variants=("opra", "indicative"),
    dialect="alpaca-v2",
    symbol_pattern=OCC_PATTERN,
    families=(TRADES, QUOTES),
    listed=("trades", "quotes"),
    stream_path="/v1beta1/opra",
    qualifier="options",
    events="tickpipe.option_events:OPTION_EVENT_TYPES",
    example="AAPL240621C00190000",
    symbol_chars=21,
    encodings=("msgpack",),
    starless=("quotes",),
    history_path="/v1beta1/options/{history}",
)
