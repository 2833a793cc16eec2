"""One connection's subscriptions, changed the way Alpaca changes them.

A subscribe adds to the current set and an unsubscribe subtracts from it; the
confirmation always lists the whole set. Subscribing to trades brings the
trade corrections and cancel/errors of the same symbols. ``*`` means every
symbol. A request that would exceed the symbol limit changes nothing. The
channels are the stock feed's (:mod:`tickpipe.feeds`), lulds included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from tickpipe.feeds import STOCK

#: Every channel of the stock stream with its message type, carried by tickpipe or not (lulds).
_CODES: Final = {name: kind.code for name, kind in STOCK.channel_types.items()} | dict(STOCK.uncarried)
#: Channels that follow another (corrections and cancel errors follow trades), with the one they follow.
FOLLOWS: Final[dict[str, str]] = {
    name: kind.follows for name, kind in STOCK.channel_types.items() if kind.follows is not None
}
#: Channels a client of the stock stream may subscribe to, and their message type, in Alpaca's order.
CHANNELS: Final[dict[str, str]] = {name: _CODES[name] for name in STOCK.listed if name not in FOLLOWS}
#: Channels that follow trades; clients never subscribe to them directly.
DERIVED: Final[dict[str, str]] = {name: _CODES[name] for name in FOLLOWS}
_SYMBOL = re.compile(r"\*|[A-Z][A-Z0-9./-]{0,20}")

Key = tuple[str, str]


class SubscriptionError(Exception):
    """A subscription request Alpaca would refuse; ``code`` is the error to send."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class Subscriptions:
    """The current symbols of every channel, in the order they were added."""

    def __init__(self) -> None:
        self._sets: dict[str, dict[str, None]] = {c: {} for c in CHANNELS}
        self.version = 0  # bumped on every change, so cached filters know to rebuild

    def change(self, request: dict[str, Any], symbol_limit: int | None = None) -> None:
        """Apply a ``subscribe`` or ``unsubscribe`` message, or raise SubscriptionError."""
        wanted = parse_request(request)
        if request["action"] == "subscribe":
            merged = {c: dict(self._sets[c]) for c in CHANNELS}
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
        for name, leader in FOLLOWS.items():
            out[name] = list(self._sets[leader])
        return out

    def __bool__(self) -> bool:
        return any(self._sets.values())

    def accepts(self, kind: str, symbol: str) -> bool:
        """Whether a message of this type and symbol goes to this connection."""
        channel = _CHANNEL_OF.get(kind)
        if channel is None:
            return False
        chosen = self._sets[channel]
        return "*" in chosen or symbol in chosen

    def accepted(self, keys: Iterable[Key]) -> set[Key] | None:
        """The (type, symbol) keys among ``keys`` this connection wants; None if all of them."""
        keys = set(keys)
        wanted = {k for k in keys if self.accepts(*k)}
        return None if wanted == keys else wanted


_CHANNEL_OF = {kind: ch for ch, kind in CHANNELS.items()} | {DERIVED[name]: leader for name, leader in FOLLOWS.items()}


def parse_request(request: dict[str, Any]) -> dict[str, list[str]]:
    """The channels and symbols of a (un)subscribe message, validated like Alpaca does.

    Not a list of ticker strings: 400. A channel this feed does not carry
    (news, orderbooks...) with symbols in it: 410. Null or empty lists are
    fine, as Alpaca's own Go client sends them for every channel.
    """
    wanted: dict[str, list[str]] = {}
    for channel, symbols in request.items():
        if channel == "action" or channel in DERIVED:
            continue
        if symbols is None:
            continue
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise SubscriptionError(400, f"expected a list of symbols for {channel!r}, got {symbols!r}")
        bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
        if bad:
            raise SubscriptionError(400, f"expected ticker symbols or '*' in {channel!r}, got {bad!r}")
        if channel not in CHANNELS:
            if symbols:
                raise SubscriptionError(410, f"expected one of {sorted(CHANNELS)}, got {channel!r}")
            continue
        wanted[channel] = symbols
    return wanted
