"""Feeds declared once: every list of channels, topics, tables and routes is derived from here.

A :class:`Feed` is one upstream stream (name, path, handshake dialect, symbol
pattern) and the :class:`Family` s it carries; a family is the event types
that share a Kafka topic (key = symbol), a Redis channel family, a snapshot
hash and, when stored, a table of :mod:`tickpipe.schema` with its conflict
rule and staging row. ``FEEDS`` lists every declared feed; ``tests/test_feeds.py``
holds each of them to its contract (types to channels, topics, tables, API
routes, WebSocket streams, the simulator's channels).

Declaring a new family, e.g. Alpaca's LULD bands (``lulds``, ``T`` = ``l``),
carried live and in Kafka but not stored, takes the family and its event struct::

    # tickpipe/feeds/stock.py
    LULDS: Final = Family("lulds", (EventType("l", "lulds", "LULD band"),))
    STOCK: Final = Feed(..., families=(QUOTES, ..., CANCELS, LULDS), uncarried=())

    # tickpipe/events.py: the message's fields, Alpaca's short names on the wire
    class Luld(BaseEvent, frozen=True, kw_only=True, tag="l"):
        type_code: ClassVar[str] = "l"
        limit_up: float = msgspec.field(name="u")
        ...

``SUBSCRIBED_TYPES``, the families of :mod:`tickpipe.names` (so the
producer's topics, Redis channels and snapshot hashes), the API's stream
channels and the simulator's follow. To store it as well: a table in
:mod:`tickpipe.schema` (and its migration), ``table="lulds"``, the staging
columns and function, its row in :mod:`tickpipe.rows`, and its response
shape in ``api/shape.py`` and ``api/models.py`` (the history and latest
routes); a table the API does not serve as routes of its own says
``served=False`` (statuses, corrections and cancels: ``Feed.tables`` lists
every table, ``Feed.stored`` the served ones) and needs no shape. The
contract test names whichever is missing. The consumers (``tickpipe consume``, its table
choices, staging tables and upserts) follow from ``table`` and the staging
declaration, and so does the folding of a batch's rows of one key by the
declared conflict rule (``Conflict.unless``). A family whose history other tables amend
names the SQL view that applies them (trades: ``view="trades_corrected"``,
corrections and cancels applied); its history route reads the view.
"""

from __future__ import annotations

from typing import Final

from tickpipe.feeds.crypto import CRYPTO
from tickpipe.feeds.news import NEWS
from tickpipe.feeds.options import OPTIONS
from tickpipe.feeds.spec import MARKET_DATA, TOPIC_PREFIX, TRADING, Conflict, EventType, Family, Feed
from tickpipe.feeds.stock import STOCK
from tickpipe.feeds.trade_updates import TRADE_UPDATES_FEED

#: Every declared feed.
FEEDS: Final = (STOCK, CRYPTO, OPTIONS, NEWS, TRADE_UPDATES_FEED)

#: Every stored family of every feed by its table name (table names are unique across feeds:
#: ``quotes``, ``crypto_quotes``): what the schema, the consumers and the API's history key on.
TABLES: Final[dict[str, tuple[Feed, Family]]] = {
    family.table: (feed, family) for feed in FEEDS for family in feed.tables if family.table is not None
}


def feed_of_table(table: str) -> Feed:
    """The feed a table belongs to; KeyError naming the known tables for another."""
    try:
        return TABLES[table][0]
    except KeyError:
        raise KeyError(f"expected a table among {', '.join(TABLES)}, got {table!r}") from None


__all__ = [
    "CRYPTO", "FEEDS", "MARKET_DATA", "NEWS", "OPTIONS", "STOCK", "TABLES", "TOPIC_PREFIX", "TRADE_UPDATES_FEED",
    "TRADING", "Conflict", "EventType", "Family", "Feed", "feed_of_table",
]  # fmt: skip
