"""The options feed's events: one immutable struct per message of Alpaca's option stream.

In the style of :mod:`tickpipe.events` (long attribute names, Alpaca's short
names on every wire, ``t`` in integer nanoseconds), with a registry of its own,
:data:`OPTION_EVENT_TYPES`: the option stream reuses the stock stream's codes
(``t``, ``q``) for messages of other fields. The symbol is an OCC contract
(``AAPL240621C00190000``); sizes are whole contracts; exchanges are OPRA
venues' one-letter codes; a condition is one code (a string, not a list).
Field names and types follow Alpaca's option stream documentation and
alpaca-py, which parses these messages as its ``Trade`` and ``Quote``
(``alpaca.data.mappings`` TRADE_MAPPING, QUOTE_MAPPING).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final

import msgspec

from tickpipe.events import FeedEvent
from tickpipe.feeds.options import OPTIONS

_FAMILY_OF: Final = OPTIONS.family_of


class OptionEvent(FeedEvent, frozen=True, kw_only=True):
    """Fields every option event has: the contract, the event time and our receive time."""

    family_of: ClassVar[Mapping[str, str]] = _FAMILY_OF


class OptionTrade(OptionEvent, frozen=True, kw_only=True, tag="t"):
    type_code: ClassVar[str] = "t"

    price: float = msgspec.field(name="p")
    #: Contracts traded.
    size: int = msgspec.field(name="s")
    exchange: str = msgspec.field(name="x")
    condition: str = msgspec.field(name="c", default="")


class OptionQuote(OptionEvent, frozen=True, kw_only=True, tag="q"):
    type_code: ClassVar[str] = "q"

    bid_exchange: str = msgspec.field(name="bx")
    bid_price: float = msgspec.field(name="bp")
    bid_size: int = msgspec.field(name="bs")
    ask_exchange: str = msgspec.field(name="ax")
    ask_price: float = msgspec.field(name="ap")
    ask_size: int = msgspec.field(name="as")
    condition: str = msgspec.field(name="c", default="")


AnyOptionEvent = OptionTrade | OptionQuote

#: The options feed's structs by ``T`` code (not :data:`tickpipe.events.EVENT_TYPES`: the codes collide).
OPTION_EVENT_TYPES: Final[dict[str, type[OptionEvent]]] = {cls.type_code: cls for cls in (OptionTrade, OptionQuote)}
