"""The normalized event model: one immutable struct per Alpaca message type.

Attributes carry long names for readers of the code; on every wire (Kafka,
Redis, WebSocket) the fields carry Alpaca's short names (``S``, ``bp`` ...), so
anyone who knows Alpaca's stream knows ours. Timestamps are integers of
nanoseconds since the epoch, because ``datetime`` stops at microseconds and
Alpaca sends nanoseconds; prices are the float64 Alpaca sent, never rounded.
Codecs live in :mod:`tickpipe.codecs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final

import msgspec

from tickpipe.names import FAMILY_OF

#: Version of the Kafka value layout; bump on an incompatible change and keep decoding the old one.
SCHEMA_VERSION: Final = 1


class FeedEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="T"):
    """Fields every event of every feed has: the symbol, the event time and our receive time.

    Each feed's events derive from it with their feed's ``family_of`` (its ``T`` codes are its own:
    crypto's ``t`` is another struct than the stock feed's).
    """

    type_code: ClassVar[str]
    #: ``T`` code -> family, as the event's feed declares it (``Feed.family_of``).
    family_of: ClassVar[Mapping[str, str]]

    symbol: str = msgspec.field(name="S")
    #: Event time at the source (a bar's: the start of its period), in nanoseconds since the Unix epoch.
    timestamp: int = msgspec.field(name="t")
    #: When the producer read it from the upstream socket (ns since epoch); 0 if unknown.
    received_at: int = msgspec.field(name="_r", default=0)
    schema_version: int = msgspec.field(name="_v", default=SCHEMA_VERSION)

    @property
    def family(self) -> str:
        """The topic/channel/table family (``quotes``, ``trades``, ``bars`` ...)."""
        return self.family_of[self.type_code]


class BaseEvent(FeedEvent, frozen=True, kw_only=True):
    """The stock feed's events."""

    family_of: ClassVar[Mapping[str, str]] = FAMILY_OF


class Quote(BaseEvent, frozen=True, kw_only=True, tag="q"):
    type_code: ClassVar[str] = "q"

    bid_exchange: str = msgspec.field(name="bx")
    bid_price: float = msgspec.field(name="bp")
    bid_size: int = msgspec.field(name="bs")
    ask_exchange: str = msgspec.field(name="ax")
    ask_price: float = msgspec.field(name="ap")
    ask_size: int = msgspec.field(name="as")
    conditions: tuple[str, ...] = msgspec.field(name="c", default=())
    tape: str = msgspec.field(name="z", default="")


class Trade(BaseEvent, frozen=True, kw_only=True, tag="t"):
    type_code: ClassVar[str] = "t"

    trade_id: int = msgspec.field(name="i")
    exchange: str = msgspec.field(name="x")
    price: float = msgspec.field(name="p")
    size: int = msgspec.field(name="s")
    conditions: tuple[str, ...] = msgspec.field(name="c", default=())
    tape: str = msgspec.field(name="z", default="")


class Bar(BaseEvent, frozen=True, kw_only=True, tag="b"):
    """A minute bar; :class:`UpdatedBar` and :class:`DailyBar` share its fields."""

    type_code: ClassVar[str] = "b"

    open: float = msgspec.field(name="o")
    high: float = msgspec.field(name="h")
    low: float = msgspec.field(name="l")
    close: float = msgspec.field(name="c")
    volume: int = msgspec.field(name="v")
    vwap: float = msgspec.field(name="vw", default=0.0)
    trade_count: int = msgspec.field(name="n", default=0)

    @property
    def timeframe(self) -> str:
        return "1Day" if self.type_code == "d" else "1Min"


class UpdatedBar(Bar, frozen=True, kw_only=True, tag="u"):
    """A minute bar re-sent after late trades; it replaces the stored minute bar."""

    type_code: ClassVar[str] = "u"


class DailyBar(Bar, frozen=True, kw_only=True, tag="d"):
    type_code: ClassVar[str] = "d"


class TradingStatus(BaseEvent, frozen=True, kw_only=True, tag="s"):
    type_code: ClassVar[str] = "s"

    status_code: str = msgspec.field(name="sc")
    status_message: str = msgspec.field(name="sm", default="")
    reason_code: str = msgspec.field(name="rc", default="")
    reason_message: str = msgspec.field(name="rm", default="")
    tape: str = msgspec.field(name="z", default="")


class TradeCorrection(BaseEvent, frozen=True, kw_only=True, tag="c"):
    type_code: ClassVar[str] = "c"

    exchange: str = msgspec.field(name="x")
    original_id: int = msgspec.field(name="oi")
    original_price: float = msgspec.field(name="op")
    original_size: int = msgspec.field(name="os")
    original_conditions: tuple[str, ...] = msgspec.field(name="oc", default=())
    corrected_id: int = msgspec.field(name="ci")
    corrected_price: float = msgspec.field(name="cp")
    corrected_size: int = msgspec.field(name="cs")
    corrected_conditions: tuple[str, ...] = msgspec.field(name="cc", default=())
    tape: str = msgspec.field(name="z", default="")


class TradeCancel(BaseEvent, frozen=True, kw_only=True, tag="x"):
    type_code: ClassVar[str] = "x"

    trade_id: int = msgspec.field(name="i")
    exchange: str = msgspec.field(name="x")
    price: float = msgspec.field(name="p")
    size: int = msgspec.field(name="s")
    action: str = msgspec.field(name="a")
    tape: str = msgspec.field(name="z", default="")


Event = Quote | Trade | Bar | UpdatedBar | DailyBar | TradingStatus | TradeCorrection | TradeCancel

EVENT_TYPES: Final[dict[str, type[BaseEvent]]] = {
    cls.type_code: cls for cls in (Quote, Trade, Bar, UpdatedBar, DailyBar, TradingStatus, TradeCorrection, TradeCancel)
}
