"""The upstream seam: the socket the producer reads, its options and states, and where frames go.

A :data:`Connector` opens a :class:`Connection` (``recv``/``send``/``close``):
the real one is a WebSocket asking for msgpack frames, as alpaca-py does; a
test may script its own. A :class:`FrameSink` receives what each frame
decoded to, synchronously: the read loop never awaits a sink.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from websockets.asyncio.client import connect

from producer.transcode import Transcoded
from tickpipe.codecs import Rejected
from tickpipe.feeds import MARKET_DATA, STOCK, Feed


def channel_of(feed: Feed) -> dict[str, str]:
    """A carried channel name -> the upstream channel to subscribe to: its own, or the one it follows
    (corrections and cancels come with trades), as the feed declares it."""
    return {kind.channel: kind.follows or kind.channel for _, kind in feed.event_types()}


def default_channels(feed: Feed) -> tuple[str, ...]:
    """What a connection of the feed subscribes to unless told otherwise: the channel of each required
    family's first type (stocks: quotes, trades, bars, SUBSCRIBED_TYPES' default); a feed with no required
    family (crypto), every channel it carries, in the upstream's order."""
    required = tuple(family.types[0].channel for family in feed.families if family.required)
    return required or tuple(dict.fromkeys(channel_of(feed)[name] for name in feed.channel_types))


#: SUBSCRIBED_TYPES name -> the stock stream's channel to subscribe to.
CHANNEL_OF: Final = channel_of(STOCK)
#: What a stock connection subscribes to unless told otherwise.
DEFAULT_CHANNELS: Final = default_channels(STOCK)


class UpstreamState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    SUBSCRIBING = "subscribing"
    STREAMING = "streaming"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    FAILED = "failed"


class Connection(Protocol):
    async def recv(self) -> bytes | str: ...
    async def send(self, message: bytes | str) -> None: ...
    async def close(self) -> None: ...


Connector = Callable[[str], Awaitable[Connection]]


async def websocket_connector(url: str) -> Connection:
    """A WebSocket asking for msgpack frames, as alpaca-py does (exact nanosecond timestamps)."""
    return await connect(
        url,
        additional_headers={"Content-Type": "application/msgpack"},
        user_agent_header="tickpipe-producer",
        max_size=2**26,
        max_queue=64,
        ping_interval=10,
        ping_timeout=30,
        close_timeout=2,
        proxy=None,
    )


class FrameSink(Protocol):
    """Where the read loop puts what it decoded. Both calls must return at once."""

    def on_events(self, events: list[Transcoded], received_at: int) -> None: ...
    def on_rejected(self, rejected: list[Rejected]) -> None: ...


@dataclass(frozen=True)
class UpstreamOptions:
    url: str
    #: The upstream's handshake (``Feed.dialect``): the market-data streams' or the trading stream's.
    dialect: str = MARKET_DATA
    key: str = ""
    secret: str = ""
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    silence_timeout: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    conn_limit_wait: float = 90.0
    handshake_timeout: float = 10.0


class Reconnect(Exception):
    """This connection is over; dial again (``cause`` names why, for logs and metrics)."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause
