"""One connection's subscriptions, changed the way Alpaca changes them.

A subscribe adds to the current set and an unsubscribe subtracts from it; the
confirmation always lists the whole set. Subscribing to trades brings the
trade corrections and cancel/errors of the same symbols. ``*`` means every
symbol. A request that would exceed the symbol limit changes nothing. The
channels are a feed's (:mod:`tickpipe.feeds`) as :class:`Channels` derives
them: the stock feed's (lulds included) by default, the crypto feed's
(orderbooks included) on its path, the option feed's (trades and quotes) on
its paths, where ``*`` on quotes is refused with 413 as Alpaca refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from tickpipe.feeds import CRYPTO, NEWS, OPTIONS, STOCK
from tickpipe.feeds.spec import Feed


@dataclass(frozen=True)
class Channels:
    """One feed's channels as its stream serves them, derived from the feed's declaration."""

    feed: Feed
    #: Channels that follow another (corrections and cancel errors follow trades), with the one they follow.
    follows: dict[str, str]
    #: Channels a client may subscribe to, and their message type, in Alpaca's order.
    channels: dict[str, str]
    #: Channels that follow another; clients never subscribe to them directly.
    derived: dict[str, str]
    #: A symbol a subscription may name, or ``*``.
    symbol: re.Pattern[str]
    #: Channels on which ``*`` is refused (option quotes: 413).
    starless: tuple[str, ...] = ()
    #: Message type -> the channel whose subscription brings it.
    channel_of: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        channel_of = {kind: ch for ch, kind in self.channels.items()}
        channel_of |= {self.derived[name]: leader for name, leader in self.follows.items()}
        object.__setattr__(self, "channel_of", channel_of)

    @classmethod
    def of(cls, feed: Feed, symbol: str | None = None) -> Channels:
        """The channels of ``feed``'s declaration; ``symbol`` overrides its symbol pattern."""
        codes = {name: kind.code for name, kind in feed.channel_types.items()} | dict(feed.uncarried)
        follows = {name: kind.follows for name, kind in feed.channel_types.items() if kind.follows is not None}
        return cls(
            feed,
            follows,
            {name: codes[name] for name in feed.listed if name not in follows},
            {name: codes[name] for name in follows},
            re.compile(rf"\*|{symbol or feed.symbol_pattern}"),
            feed.starless,
        )


#: The stock stream's channels; its symbols as the simulator has always taken them (a little
#: longer than the declaration's, so a client's long test ticker is served rather than refused).
STOCK_CHANNELS: Final = Channels.of(STOCK, r"[A-Z][A-Z0-9./-]{0,20}")
#: The crypto stream's channels (orderbooks among them); its symbols are pairs, ``BTC/USD``.
CRYPTO_CHANNELS: Final = Channels.of(CRYPTO)

#: The option stream's channels (trades and quotes); its symbols are OCC contracts, ``AAPL240621C00190000``.
OPTION_CHANNELS: Final = Channels.of(OPTIONS)

#: The news stream's one channel, ``news``; its symbols are tickers, as a story names them.
NEWS_CHANNELS: Final = Channels.of(NEWS)

#: Each served feed's channels, by the feed's name.
BY_FEED: Final[dict[str, Channels]] = {
    c.feed.name: c for c in (STOCK_CHANNELS, CRYPTO_CHANNELS, OPTION_CHANNELS, NEWS_CHANNELS)
}

#: The stock stream's channels that follow another, with the one they follow.
FOLLOWS: Final[dict[str, str]] = STOCK_CHANNELS.follows
#: Channels a client of the stock stream may subscribe to, and their message type, in Alpaca's order.
CHANNELS: Final[dict[str, str]] = STOCK_CHANNELS.channels
#: The stock stream's channels that follow trades; clients never subscribe to them directly.
DERIVED: Final[dict[str, str]] = STOCK_CHANNELS.derived

Key = tuple[str, str]


def key_of(event: dict[str, Any]) -> Key:
    """What a sent event is counted by: its type and symbol, or a news story's type and id."""
    return event["T"], event["S"] if "S" in event else str(event["id"])


class SubscriptionError(Exception):
    """A subscription request Alpaca would refuse; ``code`` is the error to send."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class Subscriptions:
    """The current symbols of every channel, in the order they were added."""

    def __init__(self, channels: Channels = STOCK_CHANNELS) -> None:
        self.channels = channels
        self._sets: dict[str, dict[str, None]] = {c: {} for c in channels.channels}
        self.version = 0  # bumped on every change, so cached filters know to rebuild

    def change(self, request: dict[str, Any], symbol_limit: int | None = None) -> None:
        """Apply a ``subscribe`` or ``unsubscribe`` message, or raise SubscriptionError."""
        wanted = parse_request(request, self.channels)
        if request["action"] == "subscribe":
            merged = {c: dict(self._sets[c]) for c in self.channels.channels}
            for channel, symbols in wanted.items():
                merged[channel].update(dict.fromkeys(symbols))
            if symbol_limit is not None:
                distinct = len({s for syms in merged.values() for s in syms})
                if distinct > symbol_limit:
                    raise SubscriptionError(
                        405, f"expected at most {symbol_limit} symbols, the request makes {distinct}"
                    )
            self._sets = merged
        else:
            for channel, symbols in wanted.items():
                for s in symbols:
                    self._sets[channel].pop(s, None)
        self.version += 1

    def listing(self) -> dict[str, list[str]]:
        """Every channel's symbols, as the ``subscription`` message lists them."""
        out = {c: list(s) for c, s in self._sets.items()}
        for name, leader in self.channels.follows.items():
            out[name] = list(self._sets[leader])
        return out

    def __bool__(self) -> bool:
        return any(self._sets.values())

    def accepts(self, kind: str, symbol: str) -> bool:
        """Whether a message of this type and symbol goes to this connection."""
        channel = self.channels.channel_of.get(kind)
        if channel is None:
            return False
        chosen = self._sets[channel]
        return "*" in chosen or symbol in chosen

    def wants(self, event: dict[str, Any]) -> bool:
        """Whether an event goes to this connection: by its symbol, or (a news story) by any symbol it names;
        a story naming none only with ``*``."""
        if "S" in event:
            return self.accepts(event["T"], event["S"])
        return any(self.accepts(event["T"], symbol) for symbol in event.get("symbols") or ("",))

    def accepted(self, keys: Iterable[Key]) -> set[Key] | None:
        """The (type, symbol) keys among ``keys`` this connection wants; None if all of them."""
        keys = set(keys)
        wanted = {k for k in keys if self.accepts(*k)}
        return None if wanted == keys else wanted

    def symbols(self, channel: str) -> dict[str, None]:
        """The symbols subscribed on ``channel`` now (``*`` among them if every symbol)."""
        return dict(self._sets.get(channel, {}))


def parse_request(request: dict[str, Any], channels: Channels = STOCK_CHANNELS) -> dict[str, list[str]]:
    """The channels and symbols of a (un)subscribe message, validated like Alpaca does.

    Not a list of ticker strings: 400. A channel this feed does not carry
    (news, orderbooks...) with symbols in it: 410. Null or empty lists are
    fine, as Alpaca's own Go client sends them for every channel.
    """
    wanted: dict[str, list[str]] = {}
    for channel, symbols in request.items():
        if channel == "action" or channel in channels.derived:
            continue
        if symbols is None:
            continue
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise SubscriptionError(400, f"expected a list of symbols for {channel!r}, got {symbols!r}")
        bad = [s for s in symbols if not channels.symbol.fullmatch(s)]
        if bad:
            raise SubscriptionError(400, f"expected {channels.feed.name} symbols or '*' in {channel!r}, got {bad!r}")
        if channel not in channels.channels:
            if symbols:
                raise SubscriptionError(410, f"expected one of {sorted(channels.channels)}, got {channel!r}")
            continue
        if channel in channels.starless and "*" in symbols:
            raise SubscriptionError(413, f"expected symbols, not '*', in {channel!r}")
        wanted[channel] = symbols
    return wanted
