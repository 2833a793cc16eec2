"""The PostgreSQL schema as SQLAlchemy Core tables: the single source the migration and the queries share.

Design choices, for analysts and for replays:

- long column names (``bid_price``), one row per upstream event;
- ``time`` is a ``timestamptz`` (microseconds, what SQL tools understand, and the
  daily partition key) and ``time_ns`` the exact nanoseconds Alpaca sent;
- prices are ``double precision``: exactly the float64 that arrived, no rounding;
- every table's primary key is deterministic from the event's content, so a
  redelivered or replayed record is a no-op (``ON CONFLICT DO NOTHING``), except
  bars, whose updated version replaces the minute bar (``DO UPDATE``);
- corrections and cancels are stored as they arrive, never applied to ``trades``
  in place (a replay of a trade must not undo them, and the original stays
  readable); the view ``trades_corrected`` (migration 0002) applies them;
- the primary key starts with ``symbol, time`` and serves "one symbol, a time
  range, newest first" by a backward index scan;
- every table, view and column carries its description (``comment=``), which
  migration 0003 puts in the database (``\\d+ quotes`` in psql shows it).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from tickpipe.feeds import TABLES

metadata = MetaData()
#: The views, described as tables (their columns and descriptions), apart from ``metadata``: migrations
#: create them (0002), never ``metadata.create_all`` or an autogenerate.
views = MetaData()

# Descriptions every table repeats. They reach the database as COMMENT ON (migration 0003, which spells
# them as they were then; a test holds the migrated database to the text here).
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


def _time_columns(time: str = _TIME) -> list[Column[object]]:
    return [
        Column("symbol", Text, nullable=False, comment=_SYMBOL),
        Column("time", DateTime(timezone=True), nullable=False, comment=time),
        Column("time_ns", BigInteger, nullable=False, comment=_TIME_NS),
    ]


def _received_at() -> Column[object]:
    return Column("received_at", DateTime(timezone=True), nullable=True, comment=_RECEIVED_AT)


def _tape() -> Column[object]:
    return Column("tape", Text, nullable=False, comment=_TAPE)


quotes = Table(
    "quotes",
    metadata,
    *_time_columns(),
    Column(
        "event_key",
        BigInteger,
        nullable=False,
        comment="deterministic 64-bit hash of the quote's upstream content (every field but received_at): "
        "it tells apart two quotes of one symbol at the same time, and makes a redelivered or replayed quote "
        "a no-op. An identifier, not a quantity",
    ),
    Column(
        "bid_exchange",
        Text,
        nullable=False,
        comment="exchange code of the best bid (e.g. V = IEX, Q = Nasdaq, N = NYSE)",
    ),
    Column(
        "bid_price",
        Float(53),
        nullable=False,
        comment="best bid price, USD per share, exactly as sent (double precision, no rounding)",
    ),
    Column(
        "bid_size", BigInteger, nullable=False, comment="shares at the best bid (Alpaca sends round lots as shares)"
    ),
    Column("ask_exchange", Text, nullable=False, comment="exchange code of the best ask"),
    Column("ask_price", Float(53), nullable=False, comment="best ask (offer) price, USD per share, exactly as sent"),
    Column("ask_size", BigInteger, nullable=False, comment="shares at the best ask"),
    Column(
        "conditions",
        ARRAY(Text),
        nullable=False,
        comment="quote condition codes of the tape (e.g. R regular two-sided quote)",
    ),
    _tape(),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "event_key", name="quotes_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="National best bid and offer updates (NBBO for the SIP feed, IEX's own quote for the IEX feed): "
    "one row per quote event. Daily partitions quotes_pYYYYMMDD.",
)

trades = Table(
    "trades",
    metadata,
    *_time_columns(),
    Column("exchange", Text, nullable=False, comment=_EXCHANGE),
    Column(
        "trade_id",
        BigInteger,
        nullable=False,
        comment="trade id given by the exchange: unique per symbol, exchange and day (ids repeat across days)",
    ),
    Column(
        "price",
        Float(53),
        nullable=False,
        comment="trade price, USD per share, exactly as sent (double precision, no rounding)",
    ),
    Column("size", BigInteger, nullable=False, comment="shares traded"),
    Column("conditions", ARRAY(Text), nullable=False, comment=_CONDITIONS),
    _tape(),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "exchange", "trade_id", name="trades_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="Trades (prints) as first reported: one row per trade event. Corrections and cancels are stored apart "
    "(tables corrections, cancels) and applied by the view trades_corrected. Daily partitions trades_pYYYYMMDD.",
)

bars = Table(
    "bars",
    metadata,
    Column("symbol", Text, nullable=False, comment=_SYMBOL),
    Column(
        "timeframe",
        Text,
        nullable=False,
        comment="1Min for minute bars (updated = 'b' or 'u'), 1Day for daily bars (updated = 'd')",
    ),
    Column(
        "time",
        DateTime(timezone=True),
        nullable=False,
        comment="start of the bar (UTC): the minute 09:30 covers 09:30:00 to 09:30:59.999; the partition key",
    ),
    Column("time_ns", BigInteger, nullable=False, comment="the same bar start, nanoseconds since 1970-01-01 UTC"),
    Column("open", Float(53), nullable=False, comment="first trade price of the bar, USD"),
    Column("high", Float(53), nullable=False, comment="highest trade price of the bar, USD"),
    Column("low", Float(53), nullable=False, comment="lowest trade price of the bar, USD"),
    Column("close", Float(53), nullable=False, comment="last trade price of the bar, USD"),
    Column("volume", BigInteger, nullable=False, comment="shares traded in the bar"),
    Column("vwap", Float(53), nullable=False, comment="volume-weighted average price of the bar's trades, USD"),
    Column("trade_count", BigInteger, nullable=False, comment="number of trades in the bar"),
    Column(
        "updated",
        Text,
        nullable=False,
        comment="which message this row is, by Alpaca's event type: b = minute bar as first sent, "
        "u = updated minute bar (late trades included; replaces the b row, never the reverse), d = daily bar",
    ),
    _received_at(),
    PrimaryKeyConstraint("symbol", "timeframe", "time", name="bars_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="OHLCV bars: one row per symbol, timeframe and bar start. A minute bar (updated = 'b') is replaced by "
    "its updated version (updated = 'u') when late trades arrive; daily bars have updated = 'd'. "
    "Daily partitions bars_pYYYYMMDD.",
)

statuses = Table(
    "statuses",
    metadata,
    *_time_columns(),
    Column(
        "status_code",
        Text,
        nullable=False,
        comment="status code of the tape, e.g. H halt, T resumption (UTP); 2 halt, 3 resume (CTA)",
    ),
    Column(
        "status_message",
        Text,
        nullable=False,
        comment="the status code in words, as Alpaca sends it (e.g. Trading Halt)",
    ),
    Column(
        "reason_code",
        Text,
        nullable=False,
        comment="reason code of the status, e.g. LUDP: a limit up-limit down (LULD) pause",
    ),
    Column("reason_message", Text, nullable=False, comment="the reason code in words, as Alpaca sends it"),
    _tape(),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "status_code", "reason_code", name="statuses_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="Trading status messages: halts, resumptions, LULD pauses, quote-only periods. One row per status "
    "event. Daily partitions statuses_pYYYYMMDD.",
)

corrections = Table(
    "corrections",
    metadata,
    *_time_columns("when the correction was sent (UTC, to the microsecond); the partition key"),
    Column("exchange", Text, nullable=False, comment="exchange code of the corrected trade"),
    Column(
        "original_id",
        BigInteger,
        nullable=False,
        comment="trade_id of the trade corrected (or the corrected_id of an earlier correction)",
    ),
    Column("original_price", Float(53), nullable=False, comment="the trade's price before this correction, USD"),
    Column("original_size", BigInteger, nullable=False, comment="the trade's size before this correction, shares"),
    Column(
        "original_conditions", ARRAY(Text), nullable=False, comment="the trade's condition codes before this correction"
    ),
    Column(
        "corrected_id",
        BigInteger,
        nullable=False,
        comment="the trade's id from this correction on (a later correction or cancel names this id)",
    ),
    Column("corrected_price", Float(53), nullable=False, comment="the trade's price after this correction, USD"),
    Column("corrected_size", BigInteger, nullable=False, comment="the trade's size after this correction, shares"),
    Column(
        "corrected_conditions", ARRAY(Text), nullable=False, comment="the trade's condition codes after this correction"
    ),
    _tape(),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "exchange", "original_id", "corrected_id", name="corrections_pkey"),
    # How trades_corrected finds the corrections of one trade: by its id, not by the correction's time.
    Index("corrections_original", "symbol", "exchange", "original_id", "time"),
    postgresql_partition_by="RANGE (time)",
    comment="Trade corrections as they arrived: each names a trade by its id (original_*) and gives its new values "
    "(corrected_*). Never applied to trades in place: read trades_corrected for trades as they stand. "
    "Daily partitions corrections_pYYYYMMDD.",
)

cancels = Table(
    "cancels",
    metadata,
    *_time_columns("when the cancel was sent (UTC, to the microsecond); the partition key"),
    Column("exchange", Text, nullable=False, comment="exchange code of the cancelled trade"),
    Column(
        "trade_id",
        BigInteger,
        nullable=False,
        comment="trade_id of the trade cancelled (or the corrected_id a correction gave it)",
    ),
    Column("price", Float(53), nullable=False, comment="price of the cancelled trade, USD"),
    Column("size", BigInteger, nullable=False, comment="size of the cancelled trade, shares"),
    Column("action", Text, nullable=False, comment="as Alpaca sends it: C = cancel, E = error (trade busted)"),
    _tape(),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "exchange", "trade_id", name="cancels_pkey"),
    Index("cancels_trade", "symbol", "exchange", "trade_id", "time"),
    postgresql_partition_by="RANGE (time)",
    comment="Trade cancels and busts (errors) as they arrived. Never applied to trades in place: trades_corrected "
    "marks a cancelled trade. Daily partitions cancels_pYYYYMMDD.",
)

#: The view of trades as they stand (migration 0002 creates it), for its columns and descriptions.
trades_corrected = Table(
    "trades_corrected",
    views,
    Column("symbol", Text, comment=_SYMBOL),
    Column("time", DateTime(timezone=True), comment="trade time as first printed (UTC, to the microsecond)"),
    Column("time_ns", BigInteger, comment=_TIME_NS),
    Column("exchange", Text, comment=_EXCHANGE),
    Column(
        "trade_id", BigInteger, comment="trade id as first printed (see corrected_id for the id a correction gave it)"
    ),
    Column("price", Float(53), comment="price as it stands: the last correction's, else as printed, USD"),
    Column("size", BigInteger, comment="size as it stands: the last correction's, else as printed, shares"),
    Column("conditions", ARRAY(Text), comment="condition codes as they stand: the last correction's, else as printed"),
    Column("tape", Text, comment=_TAPE),
    Column(
        "received_at",
        DateTime(timezone=True),
        comment="when the producer received the trade as first printed (see trades.received_at)",
    ),
    Column("corrected_id", BigInteger, comment="the trade's id after its last correction; NULL when never corrected"),
    Column("original_price", Float(53), comment="price as first printed, USD"),
    Column("original_size", BigInteger, comment="size as first printed, shares"),
    Column("original_conditions", ARRAY(Text), comment="condition codes as first printed"),
    Column(
        "cancel_action",
        Text,
        comment="C = cancelled, E = error (busted), from the last cancel of the trade; NULL if none",
    ),
    Column(
        "cancelled", Boolean, comment="true when the trade was cancelled or busted: leave it out of volumes and prices"
    ),
    comment="Trades as they stand: the last correction of each trade applied (price, size, conditions; original_* as "
    "first printed) and cancelled = true for a cancelled or busted trade. Filter on symbol and time: "
    "corrections and cancels count within one day after the trade.",
)

# The crypto feed's tables (migration 0005): pairs, fractional sizes, no exchanges or tapes.
_PAIR = "currency pair, as Alpaca writes it (e.g. BTC/USD: the price of one BTC in USD)"
_CRYPTO_TIME = "event time (UTC, to the microsecond), as Alpaca's crypto venue stamped it; the daily partition key"
_BOOK_SIDE = "{side} price levels of the message, best first: {what} (quote currency per unit of the base currency)"

crypto_quotes = Table(
    "crypto_quotes",
    metadata,
    Column("symbol", Text, nullable=False, comment=_PAIR),
    Column("time", DateTime(timezone=True), nullable=False, comment=_CRYPTO_TIME),
    Column("time_ns", BigInteger, nullable=False, comment=_TIME_NS),
    Column(
        "event_key",
        BigInteger,
        nullable=False,
        comment="deterministic 64-bit hash of the quote's upstream content (every field but received_at): "
        "it tells apart two quotes of one pair at the same time, and makes a redelivered quote a no-op",
    ),
    Column("bid_price", Float(53), nullable=False, comment="best bid price, quote currency per unit, exactly as sent"),
    Column("bid_size", Float(53), nullable=False, comment="size at the best bid, in units of the base currency"),
    Column("ask_price", Float(53), nullable=False, comment="best ask price, quote currency per unit, exactly as sent"),
    Column("ask_size", Float(53), nullable=False, comment="size at the best ask, in units of the base currency"),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "event_key", name="crypto_quotes_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="Crypto quotes (best bid and ask of Alpaca's crypto venue): one row per quote event. "
    "Daily partitions crypto_quotes_pYYYYMMDD.",
)

crypto_trades = Table(
    "crypto_trades",
    metadata,
    Column("symbol", Text, nullable=False, comment=_PAIR),
    Column("time", DateTime(timezone=True), nullable=False, comment=_CRYPTO_TIME),
    Column("time_ns", BigInteger, nullable=False, comment=_TIME_NS),
    Column("trade_id", BigInteger, nullable=False, comment="trade id given by the venue, unique per pair"),
    Column("price", Float(53), nullable=False, comment="trade price, quote currency per unit, exactly as sent"),
    Column("size", Float(53), nullable=False, comment="size traded, in units of the base currency (fractional)"),
    Column(
        "taker_side",
        Text,
        nullable=False,
        comment="the taker's side: B = a buyer lifted the ask, S = a seller hit the bid",
    ),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "trade_id", name="crypto_trades_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="Crypto trades: one row per trade event. Daily partitions crypto_trades_pYYYYMMDD.",
)

crypto_bars = Table(
    "crypto_bars",
    metadata,
    Column("symbol", Text, nullable=False, comment=_PAIR),
    Column(
        "timeframe",
        Text,
        nullable=False,
        comment="1Min for minute bars (updated = 'b' or 'u'), 1Day for daily bars (updated = 'd')",
    ),
    Column(
        "time",
        DateTime(timezone=True),
        nullable=False,
        comment="start of the bar (UTC): the minute 09:30 covers 09:30:00 to 09:30:59.999; the partition key",
    ),
    Column("time_ns", BigInteger, nullable=False, comment="the same bar start, nanoseconds since 1970-01-01 UTC"),
    Column("open", Float(53), nullable=False, comment="first trade price of the bar"),
    Column("high", Float(53), nullable=False, comment="highest trade price of the bar"),
    Column("low", Float(53), nullable=False, comment="lowest trade price of the bar"),
    Column("close", Float(53), nullable=False, comment="last trade price of the bar"),
    Column("volume", Float(53), nullable=False, comment="units of the base currency traded in the bar (fractional)"),
    Column("vwap", Float(53), nullable=False, comment="volume-weighted average price of the bar's trades"),
    Column("trade_count", BigInteger, nullable=False, comment="number of trades in the bar"),
    Column(
        "updated",
        Text,
        nullable=False,
        comment="which message this row is, by Alpaca's event type: b = minute bar as first sent, "
        "u = updated minute bar (late trades included; replaces the b row, never the reverse), d = daily bar",
    ),
    _received_at(),
    PrimaryKeyConstraint("symbol", "timeframe", "time", name="crypto_bars_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="Crypto OHLCV bars: one row per pair, timeframe and bar start; an updated minute bar replaces the "
    "minute bar. Daily partitions crypto_bars_pYYYYMMDD.",
)

crypto_orderbooks = Table(
    "crypto_orderbooks",
    metadata,
    Column("symbol", Text, nullable=False, comment=_PAIR),
    Column("time", DateTime(timezone=True), nullable=False, comment=_CRYPTO_TIME),
    Column("time_ns", BigInteger, nullable=False, comment=_TIME_NS),
    Column(
        "event_key",
        BigInteger,
        nullable=False,
        comment="deterministic 64-bit hash of the message's upstream content (every field but received_at): "
        "makes a redelivered message a no-op",
    ),
    Column(
        "reset",
        Boolean,
        nullable=False,
        comment="true: the message is the whole book (replace it); false: only the levels that changed",
    ),
    Column("bid_prices", ARRAY(Float(53)), nullable=False, comment=_BOOK_SIDE.format(side="bid", what="prices")),
    Column(
        "bid_sizes",
        ARRAY(Float(53)),
        nullable=False,
        comment="size at each of bid_prices, in units of the base currency; 0 removes the level",
    ),
    Column("ask_prices", ARRAY(Float(53)), nullable=False, comment=_BOOK_SIDE.format(side="ask", what="prices")),
    Column(
        "ask_sizes",
        ARRAY(Float(53)),
        nullable=False,
        comment="size at each of ask_prices, in units of the base currency; 0 removes the level",
    ),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "event_key", name="crypto_orderbooks_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="Crypto order book messages (level 2) in arrival order: a whole book (reset) after each "
    "subscription, then changed levels. A pair's book at a moment is its last reset row with the later rows "
    "applied in time order. Daily partitions crypto_orderbooks_pYYYYMMDD.",
)

# The options feed's tables (migration 0006): OCC contracts, whole-contract sizes, one condition code.
_CONTRACT = "OCC option contract symbol: root, expiry YYMMDD, C or P, strike x 1000 in 8 digits (AAPL240621C00190000)"
_OPTION_TIME = "event time (UTC, to the microsecond), as OPRA stamped it; the daily partition key"
_OPTION_KEY = (
    "deterministic 64-bit hash of the message's upstream content (every field but received_at): OPRA gives "
    "no id, so it tells apart two messages of one contract at the same time and makes a redelivery a no-op"
)

options_trades = Table(
    "options_trades",
    metadata,
    Column("symbol", Text, nullable=False, comment=_CONTRACT),
    Column("time", DateTime(timezone=True), nullable=False, comment=_OPTION_TIME),
    Column("time_ns", BigInteger, nullable=False, comment=_TIME_NS),
    Column("event_key", BigInteger, nullable=False, comment=_OPTION_KEY),
    Column("exchange", Text, nullable=False, comment="OPRA exchange code of the venue that printed the trade"),
    Column("price", Float(53), nullable=False, comment="premium per share of the underlying, USD, exactly as sent"),
    Column("size", BigInteger, nullable=False, comment="contracts traded"),
    Column("condition", Text, nullable=False, comment="OPRA trade condition code, as sent"),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "event_key", name="options_trades_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="Option trades (OPRA, or Alpaca's indicative feed): one row per trade event. "
    "Daily partitions options_trades_pYYYYMMDD.",
)

options_quotes = Table(
    "options_quotes",
    metadata,
    Column("symbol", Text, nullable=False, comment=_CONTRACT),
    Column("time", DateTime(timezone=True), nullable=False, comment=_OPTION_TIME),
    Column("time_ns", BigInteger, nullable=False, comment=_TIME_NS),
    Column("event_key", BigInteger, nullable=False, comment=_OPTION_KEY),
    Column("bid_exchange", Text, nullable=False, comment="OPRA exchange code of the best bid"),
    Column("bid_price", Float(53), nullable=False, comment="best bid premium, USD, exactly as sent"),
    Column("bid_size", BigInteger, nullable=False, comment="contracts at the best bid"),
    Column("ask_exchange", Text, nullable=False, comment="OPRA exchange code of the best ask"),
    Column("ask_price", Float(53), nullable=False, comment="best ask premium, USD, exactly as sent"),
    Column("ask_size", BigInteger, nullable=False, comment="contracts at the best ask"),
    Column("condition", Text, nullable=False, comment="OPRA quote condition code, as sent"),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "event_key", name="options_quotes_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="Option quotes (best bid and offer of a contract): one row per quote event. "
    "Daily partitions options_quotes_pYYYYMMDD.",
)

# The order updates feed's table (migration 0008): the trading stream's trade_updates, private to the account.
_ORDER = "the order as it was after the event, "

trade_updates = Table(
    "trade_updates",
    metadata,
    Column(
        "symbol",
        Text,
        nullable=False,
        comment="symbol of the order's asset: a ticker, a crypto pair or an "
        "OCC option contract, as the trading API writes it (AAPL, BTC/USD)",
    ),
    Column(
        "time",
        DateTime(timezone=True),
        nullable=False,
        comment="time of the event (UTC, to the microsecond), "
        "the update's timestamp as Alpaca's trading API stamped it; the daily partition key",
    ),
    Column("time_ns", BigInteger, nullable=False, comment=_TIME_NS),
    Column(
        "order_id",
        Text,
        nullable=False,
        comment="the order's id (a UUID given by Alpaca): every update of "
        "one order has it, and Kafka keeps them in order by it",
    ),
    Column(
        "event",
        Text,
        nullable=False,
        comment="what happened to the order: new, fill, partial_fill, canceled, "
        "expired, done_for_day, replaced, rejected, pending_new, stopped, pending_cancel, pending_replace, "
        "calculated, suspended, order_replace_rejected, order_cancel_rejected",
    ),
    Column(
        "execution_id",
        Text,
        nullable=False,
        comment="id of the execution (a UUID) of a fill or partial fill; "
        "empty for an event that is no execution. With the order id, event and time, it keys the row",
    ),
    Column(
        "client_order_id",
        Text,
        nullable=False,
        comment="the id the account gave the order when it submitted it (empty when none was sent)",
    ),
    Column("side", Text, nullable=False, comment="buy or sell"),
    Column("order_type", Text, nullable=False, comment="market, limit, stop, stop_limit or trailing_stop"),
    Column(
        "order_quantity",
        Numeric,
        nullable=True,
        comment=_ORDER + "its ordered quantity (shares, coins or "
        "contracts), exactly as sent; NULL for a notional order",
    ),
    Column("filled_quantity", Numeric, nullable=True, comment=_ORDER + "its quantity filled so far, exactly as sent"),
    Column(
        "filled_average_price",
        Numeric,
        nullable=True,
        comment=_ORDER + "the average price of its fills so far, exactly as sent; NULL before any fill",
    ),
    Column(
        "fill_price",
        Numeric,
        nullable=True,
        comment="price of this fill or partial fill, exactly as sent; NULL for an event that is no execution",
    ),
    Column(
        "fill_quantity",
        Numeric,
        nullable=True,
        comment="quantity of this fill or partial fill, exactly as sent; NULL for an event that is no execution",
    ),
    Column(
        "position_quantity",
        Numeric,
        nullable=True,
        comment="the account's position in the symbol after this "
        "fill (negative: short), exactly as sent; NULL for an event that is no execution",
    ),
    Column(
        "order_status",
        Text,
        nullable=False,
        comment=_ORDER + "its status (new, partially_filled, filled, canceled, replaced ...)",
    ),
    Column(
        "order_details",
        JSONB,
        nullable=False,
        comment="the whole order object as Alpaca sent it with the "
        "event (limit and stop prices, time in force, created_at, filled_at, replaced_by, legs ...)",
    ),
    _received_at(),
    PrimaryKeyConstraint("symbol", "time", "order_id", "event", "execution_id", name="trade_updates_pkey"),
    postgresql_partition_by="RANGE (time)",
    comment="The account's order updates (the trading API's trade_updates stream): one row per update of an "
    "order, as it arrived. Private to the account: the API serves it only to keys allowed to see order "
    "updates. Daily partitions trade_updates_pYYYYMMDD.",
)

# The news feed's table (migration 0007): one row per story, its latest version (an update replaces it).
_NEWS_RECEIVED_AT = (
    "when tickpipe's producer received this version of the story from Alpaca (the producer's clock); NULL when unknown"
)

news = Table(
    "news",
    metadata,
    Column("news_id", BigInteger, nullable=False, comment="Alpaca's story id; a story re-sent with it is an update"),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        comment="when the story was first published (UTC, as Alpaca sent it); the daily partition key",
    ),
    Column(
        "updated_at",
        DateTime(timezone=True),
        nullable=False,
        comment="when the story was last changed (UTC): the stored version is the one with the newest",
    ),
    Column("headline", Text, nullable=False, comment="the story's headline"),
    Column("summary", Text, nullable=False, comment="the story's summary (often its first sentence; may be empty)"),
    Column("author", Text, nullable=False, comment="who wrote it (e.g. Benzinga Newsdesk)"),
    Column("url", Text, nullable=True, comment="where the story is published; NULL when Alpaca gives none"),
    Column("content", Text, nullable=False, comment="the story's text, HTML as sent (empty when not sent)"),
    Column(
        "symbols",
        ARRAY(Text),
        nullable=False,
        comment="the symbols the story is about, as Alpaca lists them (may be empty: a story about the market)",
    ),
    Column("source", Text, nullable=False, comment="where the story comes from (e.g. benzinga)"),
    Column("received_at", DateTime(timezone=True), nullable=True, comment=_NEWS_RECEIVED_AT),
    PrimaryKeyConstraint("news_id", "created_at", name="news_pkey"),
    Index("news_symbols_idx", "symbols", postgresql_using="gin"),
    postgresql_partition_by="RANGE (created_at)",
    comment="News stories (Alpaca's news stream, from Benzinga): one row per story, its latest version "
    "(a story re-sent with a newer updated_at replaces it). Search by symbol with symbols && ARRAY['AAPL']. "
    "Daily partitions news_pYYYYMMDD.",
)

#: Tables that are partitioned by day, in the order migrations create them: every stored family's.
PARTITIONED_TABLES: Final = tuple(TABLES)
