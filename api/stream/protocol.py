"""Alpaca's market-data stream protocol (stocks v2, crypto v1beta3, options v1beta1), as far as a server speaks it.

Client actions (JSON text, or msgpack binary as alpaca-py sends them)::

    {"action": "auth", "key": "...", "secret": "..."}
    {"action": "subscribe", "trades": ["AAPL"], "quotes": ["*"], "bars": ["MSFT"]}
    {"action": "unsubscribe", "quotes": ["*"]}

Server messages, always in an array: ``{"T": "success", "msg": "connected"}``,
``{"T": "success", "msg": "authenticated"}``, ``{"T": "subscription", ...every
channel's list...}``, ``{"T": "error", "code": 4xx, "msg": ...}`` (Alpaca's
own codes and texts; ``detail`` adds what was expected and what came), and the
events themselves. As on Alpaca, subscribing to trades also subscribes to the
corrections and cancel errors of the same symbols.

Every feed speaks it with its own channels (:class:`FeedChannels`, derived from
its :class:`~tickpipe.feeds.Feed`): the stock feed's at ``/v2/stream``, the
crypto feed's (``orderbooks`` among them, pairs such as ``BTC/USD``) at
``/v1beta3/crypto/us``, the options feed's (OCC contracts) at ``/v1beta1/opra`` and
``/v1beta1/indicative``. A feed's own rules come from its declaration: the options
feed speaks msgpack only (a JSON client gets 412, ``Feed.encodings``) and refuses
``*`` on quotes (413, ``Feed.starless``), as Alpaca's option stream does.
``STREAMS``, ``LISTED`` and ``FOLLOWS`` are the stock feed's, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

import msgpack
import orjson

from tickpipe.feeds import MARKET_DATA, STOCK, Feed
from tickpipe.settings import FEED_NAMES, validator_for


class Code(IntEnum):
    INVALID_SYNTAX = 400
    NOT_AUTHENTICATED = 401
    AUTH_FAILED = 402
    ALREADY_AUTHENTICATED = 403
    AUTH_TIMEOUT = 404
    SYMBOL_LIMIT_EXCEEDED = 405
    CONNECTION_LIMIT_EXCEEDED = 406
    SLOW_CLIENT = 407
    INSUFFICIENT_SUBSCRIPTION = 409
    INVALID_SUBSCRIBE_ACTION = 410
    #: A client of an encoding the feed's upstream does not speak (the option stream: msgpack only).
    WRONG_ENCODING = 412
    #: ``*`` on a channel the feed's upstream refuses it on (option quotes).
    STAR_NOT_ALLOWED = 413
    INTERNAL_ERROR = 500


MESSAGES: Final[dict[Code, str]] = {
    Code.INVALID_SYNTAX: "invalid syntax",
    Code.NOT_AUTHENTICATED: "not authenticated",
    Code.AUTH_FAILED: "auth failed",
    Code.ALREADY_AUTHENTICATED: "already authenticated",
    Code.AUTH_TIMEOUT: "auth timeout",
    Code.SYMBOL_LIMIT_EXCEEDED: "symbol limit exceeded",
    Code.CONNECTION_LIMIT_EXCEEDED: "connection limit exceeded",
    Code.SLOW_CLIENT: "slow client",
    Code.INSUFFICIENT_SUBSCRIPTION: "insufficient subscription",
    Code.INVALID_SUBSCRIBE_ACTION: "invalid subscribe action for this feed",
    # Alpaca's texts: only its option stream has these rules, so its messages name options.
    Code.WRONG_ENCODING: "option messages are only available in MsgPack format",
    Code.STAR_NOT_ALLOWED: "star subscription is not allowed for option quotes",
    Code.INTERNAL_ERROR: "internal error",
}

CONNECTED: Final = {"T": "success", "msg": "connected"}
AUTHENTICATED: Final = {"T": "success", "msg": "authenticated"}


@dataclass(frozen=True, slots=True)
class Stream:
    """One subscribable channel of the protocol and where its events come from."""

    family: str  # Redis channel family, the feed's word: quotes:{SYMBOL}, crypto.quotes:{PAIR}
    code: str  # the event type ("T") it carries
    feed: str = STOCK.name  # whose symbols these are (which directory says a symbol exists)


WILDCARD: Final = "*"
#: Most characters of a client's own input an error message repeats back (before auth as after): enough
#: to recognise the mistake, never a way to make the server echo (and hold, and count) a large frame.
ECHO_CHARS: Final = 64


@dataclass(frozen=True, slots=True)
class FeedChannels:
    """One feed's side of the protocol, derived from its declaration: what a client of its path may ask."""

    feed: Feed
    #: The channels we carry, by their protocol names, in the order the upstream lists them.
    streams: dict[str, Stream]
    #: Channels the upstream lists in a subscription message, in its order (stock lulds: never published here).
    listed: tuple[str, ...]
    #: Channels a subscription brings along, with the channel that brings them (corrections come with trades).
    follows: dict[str, str]
    #: A symbol's check and normalization (tickers: validate_symbol, crypto pairs: validate_pair).
    validate: Callable[[str], str]
    #: A symbol is at most this long; longer text is refused before it is looked at.
    max_symbol_chars: int
    #: Channels on which ``*`` is refused with 413, as the upstream refuses it (option quotes).
    starless: frozenset[str] = frozenset()
    #: The encodings a client may speak ("json", "msgpack"); another is refused with 412 (options: msgpack).
    encodings: tuple[str, ...] = ("json", "msgpack")

    @classmethod
    def of(cls, feed: Feed) -> FeedChannels:
        kinds = feed.channel_types
        return cls(
            feed=feed,
            streams={
                name: Stream(feed.word(feed.family_of[kind.code]), kind.code, feed.name) for name, kind in kinds.items()
            },
            listed=feed.listed,
            follows={name: kind.follows for name, kind in kinds.items() if kind.follows is not None},
            validate=validator_for(feed),
            max_symbol_chars=feed.symbol_chars,
            starless=frozenset(feed.starless),
            encodings=feed.encodings,
        )

    @property
    def paths(self) -> tuple[str, ...]:
        """Where the API serves the feed: ``stream_path``, and the upstream's other variants' paths when it is
        one of them (``/v1beta1/opra`` and ``/v1beta1/indicative``: alpaca-py's ``OptionDataStream`` picks one
        by its ``feed``); the stock feed's ``/v2/stream`` is no upstream path, so it is the only one."""
        upstream = tuple(self.feed.path.format(variant=variant) for variant in self.feed.variants)
        if self.feed.stream_path not in upstream:
            return (self.feed.stream_path,)
        return tuple(dict.fromkeys((self.feed.stream_path, *upstream)))


#: Every market-data feed the API can serve, by ``Feed.name`` (those ALPACA_FEEDS may name); the trading
#: stream's dialect (order updates) is :mod:`api.stream.trading`'s.
FEED_CHANNELS: Final[dict[str, FeedChannels]] = {
    feed.name: FeedChannels.of(feed) for feed in dict.fromkeys(FEED_NAMES.values()) if feed.dialect == MARKET_DATA
}
STOCK_CHANNELS: Final = FEED_CHANNELS[STOCK.name]
#: The stock feed's channels, by their protocol names, in the order Alpaca lists them.
STREAMS: Final = STOCK_CHANNELS.streams
#: The stock channels Alpaca lists in a subscription message, in its order (lulds: never published here).
LISTED: Final = STOCK_CHANNELS.listed
#: Stock channels a subscription brings along, with the channel that brings them (corrections come with trades).
FOLLOWS: Final = STOCK_CHANNELS.follows
#: A ticker is at most this long (``validate_symbol``); longer text is refused before it is looked at.
MAX_SYMBOL_CHARS: Final = STOCK_CHANNELS.max_symbol_chars


def echo(value: object) -> str:
    """``repr(value)``, cut to ``ECHO_CHARS`` characters with a note of how much was left out."""
    return cut(repr(value))


def cut(text: str, most: int = ECHO_CHARS) -> str:
    """``text`` if short, else its first ``most`` characters and how many more there were."""
    if len(text) <= most:
        return text
    return f"{text[:most]}... ({len(text) - most} more characters)"


class ProtocolError(Exception):
    """A client message we answer with an error message (the connection may stay open)."""

    def __init__(self, code: Code, detail: str = "") -> None:
        super().__init__(f"{int(code)} {MESSAGES[code]}: {detail}")
        self.code = code
        self.detail = detail


def error(code: Code, detail: str = "") -> dict[str, Any]:
    message: dict[str, Any] = {"T": "error", "code": int(code), "msg": MESSAGES[code]}
    if detail:
        message["detail"] = detail
    return message


@dataclass(slots=True)
class Action:
    kind: str  # auth | subscribe | unsubscribe
    key: str = ""
    secret: str = ""
    streams: dict[str, list[str]] = field(default_factory=dict)


def decode_action(raw: str | bytes, channels: FeedChannels = STOCK_CHANNELS) -> Action:
    """One client message to an action on ``channels``' feed; ProtocolError(400/410) naming what is wrong."""
    try:
        data = orjson.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        detail = f"expected a JSON or msgpack object: {cut(str(exc), 2 * ECHO_CHARS)}"
        raise ProtocolError(Code.INVALID_SYNTAX, detail) from None
    if not isinstance(data, dict):
        raise ProtocolError(Code.INVALID_SYNTAX, f"expected an object with an action, got {type(data).__name__}")
    kind = data.get("action")
    if kind == "auth":
        key, secret = data.get("key"), data.get("secret")
        if not isinstance(key, str) or not isinstance(secret, str):
            raise ProtocolError(Code.INVALID_SYNTAX, "expected auth with string fields key and secret")
        return Action("auth", key=key, secret=secret)
    if kind not in ("subscribe", "unsubscribe"):
        raise ProtocolError(Code.INVALID_SYNTAX, f"expected action auth, subscribe or unsubscribe, got {echo(kind)}")
    streams: dict[str, list[str]] = {}
    carried, most, validate = channels.streams, channels.max_symbol_chars, channels.validate
    for name, symbols in data.items():
        if name == "action":
            continue
        if name not in carried:
            code = Code.INVALID_SUBSCRIBE_ACTION if name in channels.listed else Code.INVALID_SYNTAX
            raise ProtocolError(code, f"expected channels among {', '.join(carried)}, got {echo(name)}")
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise ProtocolError(Code.INVALID_SYNTAX, f"expected a list of symbols for {name!r}, got {echo(symbols)}")
        too_long = next((s for s in symbols if len(s) > most), None)
        if too_long is not None:
            detail = f"{name}: expected symbols of at most {most} characters, got {echo(too_long)}"
            raise ProtocolError(Code.INVALID_SYNTAX, detail)
        try:
            streams[name] = [s if s == WILDCARD else validate(s) for s in symbols]
        except ValueError as exc:  # the symbol is short here, so is the message that names it
            raise ProtocolError(Code.INVALID_SYNTAX, f"{name}: {exc}") from None
        if WILDCARD in symbols and name in channels.starless and kind == "subscribe":
            detail = f"{name}: expected {channels.feed.name} symbols, not '*' (the upstream refuses it on {name})"
            raise ProtocolError(Code.STAR_NOT_ALLOWED, detail)
    return Action(kind, streams=streams)


class Subscriptions:
    """What one connection is subscribed to, per channel of its feed; the diffs the hub must apply."""

    def __init__(self, channels: FeedChannels = STOCK_CHANNELS) -> None:
        self.channels = channels
        self.by_stream: dict[str, set[str]] = {name: set() for name in channels.streams}

    def symbol_count(self) -> int:
        """Distinct symbols over all channels (the wildcard counts as one)."""
        return len(set().union(*self.by_stream.values()))

    def _expand(self, streams: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {name: list(symbols) for name, symbols in streams.items()}
        for name, leader in self.channels.follows.items():
            if leader in streams:
                out[name] = list(dict.fromkeys([*out.get(name, []), *streams[leader]]))
        return out

    def count_after_add(self, streams: dict[str, list[str]]) -> int:
        everything = set().union(*self.by_stream.values())
        for symbols in streams.values():
            everything.update(symbols)
        return len(everything)

    def add(self, streams: dict[str, list[str]]) -> list[tuple[str, str]]:
        """Record a subscribe; the (channel, symbol) pairs that are new."""
        new = []
        for name, symbols in self._expand(streams).items():
            have = self.by_stream[name]
            for symbol in symbols:
                if symbol not in have:
                    have.add(symbol)
                    new.append((name, symbol))
        return new

    def remove(self, streams: dict[str, list[str]]) -> list[tuple[str, str]]:
        """Record an unsubscribe; the (channel, symbol) pairs that were there."""
        gone = []
        for name, symbols in self._expand(streams).items():
            have = self.by_stream[name]
            for symbol in symbols:
                if symbol in have:
                    have.discard(symbol)
                    gone.append((name, symbol))
        return gone

    def discard(self, pairs: list[tuple[str, str]]) -> None:
        """Forget pairs ``add`` just recorded (a subscribe refused after all)."""
        for name, symbol in pairs:
            self.by_stream[name].discard(symbol)

    def all_pairs(self) -> list[tuple[str, str]]:
        return [(name, symbol) for name, symbols in self.by_stream.items() for symbol in symbols]

    def message(self) -> dict[str, Any]:
        """The subscription message: every listed channel with its sorted symbols."""
        out: dict[str, Any] = {"T": "subscription"}
        for name in self.channels.listed:
            out[name] = sorted(self.by_stream.get(name, ()))
        return out
