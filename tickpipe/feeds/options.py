"""The options feed: Alpaca's option stream ``/v1beta1/{opra|indicative}`` (OCC contracts such as
``AAPL240621C00190000``).

MessagePack only: Alpaca answers a JSON client with error 412 ("option messages are only available
in MsgPack format"). Two channels, trades and quotes (no bars); ``*`` is allowed for trades, never
for quotes (error 413, "star subscription is not allowed for option quotes"). Its wire codes (``t``,
``q``) are the stock feed's with other fields, so its event structs have their own registry
(:mod:`tickpipe.option_events`), and its names are qualified by ``qualifier``: topics
``tickpipe.options.trades``, Redis channels ``options.quotes:AAPL240621C00190000``, hashes
``latest:options.quotes``.

Not in :data:`tickpipe.feeds.FEEDS` yet: its families declare no tables (storage comes next), and
``stream_path`` names the API's stream for later.
"""

from __future__ import annotations

from typing import Final

from tickpipe.feeds.spec import EventType, Family, Feed

QUOTES: Final = Family("quotes", (EventType("q", "quotes", "quote", tick=True),))
TRADES: Final = Family("trades", (EventType("t", "trades", "trade", tick=True),))

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
    encodings=("msgpack",),
    starless=("quotes",),
)
