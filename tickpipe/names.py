"""Every name two parts of tickpipe must agree on: topics, channels, hashes, tables.

Kept in one module (as arq keeps its Redis keys in ``constants.py``) so that a
rename is one edit and a typo is an import error, not a silent mismatch. The
families and their event types are derived from the feed declarations
(:mod:`tickpipe.feeds`).
"""

from __future__ import annotations

from typing import Final, Literal

from tickpipe import feeds
from tickpipe.feeds import STOCK

#: Event type codes, as Alpaca's stream sends them in the ``T`` field.
QUOTE: Final = "q"
TRADE: Final = "t"
BAR: Final = "b"
UPDATED_BAR: Final = "u"
DAILY_BAR: Final = "d"
STATUS: Final = "s"
CORRECTION: Final = "c"
CANCEL: Final = "x"

EventType = Literal["q", "t", "b", "u", "d", "s", "c", "x"]

#: Which family (topic, channel, table) each event type belongs to.
FAMILY_OF: Final[dict[str, str]] = STOCK.family_of

#: The families every part must carry; the others are carried when configured.
REQUIRED_FAMILIES: Final = tuple(family.name for family in STOCK.families if family.required)
FAMILIES: Final = tuple(family.name for family in STOCK.families)

TOPIC_PREFIX: Final = feeds.TOPIC_PREFIX
DLQ_TOPIC: Final = "tickpipe.dlq"
LATEST_PREFIX: Final = "latest:"
SYMBOLS_KEY: Final = "tickpipe:symbols"
#: The default namespace of Redis keys (``tickpipe.health.namespace`` gives another topic prefix's own).
NAMESPACE: Final = "tickpipe:"


def qualified(key: str, qualifier: str) -> str:
    """A qualified feed's own key beside a stock one (``Feed.qualifier``): ``tickpipe:symbols:crypto``;
    unqualified (the stock feed), ``key`` itself."""
    return f"{key}:{qualifier}" if qualifier else key


def topic(family: str, prefix: str = TOPIC_PREFIX) -> str:
    """Kafka topic of a family: ``tickpipe.quotes``."""
    return f"{prefix}{family}"


def channel(family: str, symbol: str) -> str:
    """Redis pub/sub channel of one symbol: ``quotes:AAPL``."""
    return f"{family}:{symbol}"


def latest_hash(family: str) -> str:
    """Redis hash of the last event per symbol: ``latest:quotes``."""
    return f"{LATEST_PREFIX}{family}"


def table(family: str) -> str:
    """PostgreSQL table of a family (the same word, so analysts guess it)."""
    return family


def key_streams(key_id: str, namespace: str = NAMESPACE) -> str:
    """Redis sorted set of one API key's open streams in every API process: ``tickpipe:key-streams:TK...``
    (members ``<instance>:<n>``, scored by their expiry; see :mod:`api.key_limits`)."""
    return f"{namespace}key-streams:{key_id}"


def key_requests(namespace: str = NAMESPACE) -> str:
    """Prefix of the Redis lists of the API keys' recent requests: ``tickpipe:key-requests`` (the ``limits``
    library adds ``:LIMITER/<key id>/...``; see :mod:`api.key_limits`)."""
    return f"{namespace}key-requests"
