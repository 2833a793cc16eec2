"""The crypto feed's events: one immutable struct per message of Alpaca's crypto stream.

In the style of :mod:`tickpipe.events` (long attribute names, Alpaca's short
names on every wire, ``t`` in integer nanoseconds), but with a registry of
its own, :data:`CRYPTO_EVENT_TYPES`: the crypto stream reuses the stock
stream's codes (``t``, ``q``, ``b`` ...) for messages of other fields. Sizes
and volumes are fractional (0.0012 BTC); a trade names its taker's side.
Field names and types follow Alpaca's crypto stream as alpaca-py parses it
(``alpaca.data.models`` Trade, Quote, Bar, Orderbook).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final, Literal

import msgspec

from tickpipe.events import FeedEvent
from tickpipe.feeds.crypto import CRYPTO

_FAMILY_OF: Final = CRYPTO.family_of


class CryptoEvent(FeedEvent, frozen=True, kw_only=True):
    """Fields every crypto event has: the pair, the event time and our receive time."""

    family_of: ClassVar[Mapping[str, str]] = _FAMILY_OF


class CryptoTrade(CryptoEvent, frozen=True, kw_only=True, tag="t"):
    type_code: ClassVar[str] = "t"

    price: float = msgspec.field(name="p")
    size: float = msgspec.field(name="s")
    trade_id: int = msgspec.field(name="i")
    #: The taker's side: "B" a buyer lifted the ask, "S" a seller hit the bid.
    taker_side: Literal["B", "S"] = msgspec.field(name="tks")


class CryptoQuote(CryptoEvent, frozen=True, kw_only=True, tag="q"):
    type_code: ClassVar[str] = "q"

    bid_price: float = msgspec.field(name="bp")
    bid_size: float = msgspec.field(name="bs")
    ask_price: float = msgspec.field(name="ap")
    ask_size: float = msgspec.field(name="as")


class CryptoBar(CryptoEvent, frozen=True, kw_only=True, tag="b"):
    """A minute bar; :class:`CryptoUpdatedBar` and :class:`CryptoDailyBar` share its fields."""

    type_code: ClassVar[str] = "b"

    open: float = msgspec.field(name="o")
    high: float = msgspec.field(name="h")
    low: float = msgspec.field(name="l")
    close: float = msgspec.field(name="c")
    volume: float = msgspec.field(name="v")
    trade_count: int = msgspec.field(name="n", default=0)
    vwap: float = msgspec.field(name="vw", default=0.0)

    @property
    def timeframe(self) -> str:
        return "1Day" if self.type_code == "d" else "1Min"


class CryptoUpdatedBar(CryptoBar, frozen=True, kw_only=True, tag="u"):
    """A minute bar re-sent after late trades."""

    type_code: ClassVar[str] = "u"


class CryptoDailyBar(CryptoBar, frozen=True, kw_only=True, tag="d"):
    type_code: ClassVar[str] = "d"


class BookLevel(msgspec.Struct, frozen=True):
    """One price level of a book side; size 0 in an update removes the price."""

    price: float = msgspec.field(name="p")
    size: float = msgspec.field(name="s")


class CryptoOrderbook(CryptoEvent, frozen=True, kw_only=True, tag="o"):
    """Levels of a pair's book: the whole book when ``reset``, else the levels that changed."""

    type_code: ClassVar[str] = "o"

    bids: tuple[BookLevel, ...] = msgspec.field(name="b", default=())
    asks: tuple[BookLevel, ...] = msgspec.field(name="a", default=())
    #: True on a full snapshot (the client replaces its book); updates leave it out.
    reset: bool = msgspec.field(name="r", default=False)


AnyCryptoEvent = CryptoTrade | CryptoQuote | CryptoBar | CryptoUpdatedBar | CryptoDailyBar | CryptoOrderbook

#: The crypto feed's structs by ``T`` code (not :data:`tickpipe.events.EVENT_TYPES`: the codes collide).
CRYPTO_EVENT_TYPES: Final[dict[str, type[CryptoEvent]]] = {
    cls.type_code: cls
    for cls in (CryptoTrade, CryptoQuote, CryptoBar, CryptoUpdatedBar, CryptoDailyBar, CryptoOrderbook)
}
