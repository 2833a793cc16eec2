"""The crypto feed: Alpaca's crypto stream ``/v1beta3/crypto/us`` (pairs such as ``BTC/USD``).

Its wire names collide with the stock feed's (``t``, ``q``, ``b`` ...;
``trades``, ``quotes`` ...), so its event structs have their own registry
(:mod:`tickpipe.crypto_events`, named by ``events``), and its names are
qualified by ``qualifier``: topics ``tickpipe.crypto.quotes``, Redis channels
``crypto.quotes:BTC/USD``, hashes ``latest:crypto.quotes``, tables
``crypto_quotes``, routes ``/crypto/quotes/...``; the stock feed's stay as they are.

Order book messages are stored one row per message, in the order each pair's
Kafka partition holds them (``reset`` true for a whole book): replaying a pair's
rows in ``time`` order from its last reset rebuilds its book at any moment. The
current book of each pair is the snapshot hash's (``latest:crypto.orderbooks``).

Gaps in its stream are filled as the stock feed's are (:mod:`producer.gaps`): trades, minute bars
(and quotes with BACKFILL_QUOTES) from Alpaca's crypto history, ``/v1beta3/crypto/us/{trades,quotes,bars}``.
Order books have no REST history of a past window (Alpaca serves only the latest books), so a gap
leaves none to fetch: the subscription of the new connection starts with each pair's whole book
(``r`` true), which replaces whatever the gap left stale.
"""

from __future__ import annotations

from typing import Final

from tickpipe.feeds.spec import Conflict, EventType, Family, Feed

QUOTES: Final = Family(
    "quotes",
    (EventType("q", "quotes", "quote", tick=True),),
    table="crypto_quotes",
    stage_columns="symbol text, time_ns bigint, received_ns bigint, event_key bigint, bid_price float8, "
    "bid_size float8, ask_price float8, ask_size float8",
    stage_row="consumers.crypto_staging:quote_row",
    hidden=("event_key",),
    # Filled only with BACKFILL_QUOTES, as the stock feed's: many times the trades.
    history="quotes",
    history_on_request=True,
)
TRADES: Final = Family(
    "trades",
    (EventType("t", "trades", "trade", tick=True),),
    table="crypto_trades",
    stage_columns="symbol text, time_ns bigint, received_ns bigint, trade_id bigint, price float8, size float8, "
    "taker_side text",
    stage_row="consumers.crypto_staging:trade_row",
    history="trades",
)
BARS: Final = Family(
    "bars",
    (
        EventType("b", "bars", "bar"),
        EventType("u", "updatedBars", "updated bar"),
        EventType("d", "dailyBars", "daily bar"),
    ),
    table="crypto_bars",
    # As the stock bars: an updated bar replaces the minute bar, never the other way round.
    conflict=Conflict(replace=True, unless=("updated", "u", "b")),
    stage_columns="symbol text, timeframe text, time_ns bigint, received_ns bigint, open float8, high float8, "
    "low float8, close float8, volume float8, vwap float8, trade_count bigint, updated text",
    stage_row="consumers.crypto_staging:bar_row",
    pinned=(("timeframe", "1Min"),),
    hidden=("updated",),
    latest_codes=("b", "u"),
    # REST minute bars stand for minute and updated bars; a daily bar is re-sent after every minute.
    history="bars",
    history_params=(("timeframe", "1Min"),),  # the stream's bars: minute bars
    history_codes=("b", "u"),
)
#: Level 2 books: a full snapshot (``r`` true) first after each subscription, then changed levels.
#: Stored for analysts (SQL) and served as the current book (``/crypto/orderbooks/latest``), not as pages.
#: No ``history``: Alpaca has the latest books only, not those of a past window; after a gap the new
#: connection's snapshot (``r`` true) restores each book whole.
ORDERBOOKS: Final = Family(
    "orderbooks",
    (EventType("o", "orderbooks", "order book", tick=True),),
    book=True,
    table="crypto_orderbooks",
    stage_columns="symbol text, time_ns bigint, received_ns bigint, event_key bigint, reset bool, "
    "bid_prices text, bid_sizes text, ask_prices text, ask_sizes text",
    stage_row="consumers.crypto_staging:orderbook_row",
    served=False,
)

CRYPTO: Final = Feed(
    name="crypto",
    path="/v1beta3/crypto/{variant}",
    variants=("us",),
    dialect="alpaca-v2",
    # BTC/USD, ETH/USDT, SHIB/USD, 1INCH/USD: base and quote currency, slash-separated.
    symbol_pattern=r"[A-Z0-9]{1,12}/[A-Z0-9]{1,12}",
    families=(TRADES, QUOTES, BARS, ORDERBOOKS),
    listed=("trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars"),
    stream_path="/v1beta3/crypto/us",
    qualifier="crypto",
    events="tickpipe.crypto_events:CRYPTO_EVENT_TYPES",
    example="BTC/USD",
    day_zone="America/Chicago",
    symbol_chars=25,
    history_path="/v1beta3/crypto/us/{history}",
)
