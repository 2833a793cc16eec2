"""The crypto feed: Alpaca's crypto stream ``/v1beta3/crypto/us`` (pairs such as ``BTC/USD``).

Served by the simulator only so far: no family has a table yet and the feed
is not among :data:`tickpipe.feeds.FEEDS`, whose contract would demand the
topics, tables and routes of the next slices. Its wire names collide with the
stock feed's (``t``, ``q``, ``b`` ...; ``trades``, ``quotes`` ...), so its
event structs have their own registry (:mod:`tickpipe.crypto_events`); once
it is carried (``tickpipe producer --feed crypto``), its names are qualified by
``qualifier``: topics ``tickpipe.crypto.quotes``, Redis channels
``crypto.quotes:BTC/USD``, hashes ``latest:crypto.quotes`` (its tables, the next
slice, are to be ``crypto_quotes``), the stock feed's staying as they are.

Gaps in its stream are filled as the stock feed's are (:mod:`producer.gaps`): trades, minute bars
(and quotes with BACKFILL_QUOTES) from Alpaca's crypto history, ``/v1beta3/crypto/us/{trades,quotes,bars}``.
Order books have no REST history of a past window (Alpaca serves only the latest books), so a gap
leaves none to fetch: the subscription of the new connection starts with each pair's whole book
(``r`` true), which replaces whatever the gap left stale.
"""

from __future__ import annotations

from typing import Final

from tickpipe.feeds.spec import EventType, Family, Feed

#: Quotes are filled only with BACKFILL_QUOTES, as the stock feed's: many times the trades.
QUOTES: Final = Family(
    "quotes", (EventType("q", "quotes", "quote", tick=True),), history="quotes", history_on_request=True
)
TRADES: Final = Family("trades", (EventType("t", "trades", "trade", tick=True),), history="trades")
BARS: Final = Family(
    "bars",
    (
        EventType("b", "bars", "bar"),
        EventType("u", "updatedBars", "updated bar"),
        EventType("d", "dailyBars", "daily bar"),
    ),
    # REST minute bars stand for minute and updated bars; a daily bar is re-sent after every minute.
    history="bars",
    history_codes=("b", "u"),
)
#: Level 2 books: a full snapshot (``r`` true) first after each subscription, then changed levels.
#: No ``history``: Alpaca has the latest books only, not those of a past window; after a gap the new
#: connection's snapshot (``r`` true) restores each book whole.
ORDERBOOKS: Final = Family("orderbooks", (EventType("o", "orderbooks", "order book", tick=True),), book=True)

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
    history_path="/v1beta3/crypto/us/{history}",
)
