"""What a simulator serves and how it misbehaves, in two frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.crypto import DEFAULT_PAIRS
from simulator.symbols import DEFAULT_SYMBOLS
from tickpipe.feeds import CRYPTO, NEWS, OPTIONS, STOCK, TRADE_UPDATES_FEED
from tickpipe.feeds.spec import Feed

#: Feeds served on ``/v2/{feed}``, as on stream.data.alpaca.markets (the stock feed's variants).
FEEDS = STOCK.variants
#: Crypto feeds, named ``crypto/{variant}`` and served on ``/v1beta3/crypto/{variant}``: ``crypto/us``.
CRYPTO_FEEDS = tuple(f"{CRYPTO.name}/{variant}" for variant in CRYPTO.variants)
#: Option feeds, named ``options/{variant}`` and served on ``/v1beta1/{variant}``: ``options/opra``,
#: ``options/indicative`` (msgpack only).
OPTION_FEEDS = tuple(f"{OPTIONS.name}/{variant}" for variant in OPTIONS.variants)
#: The news feed, named ``news/news`` and served on ``/v1beta1/news`` (its REST history on the same path).
NEWS_FEEDS = tuple(f"{NEWS.name}/{variant}" for variant in NEWS.variants)
#: Every feed served, by name: its declaration and its stream path.
STREAMS: dict[str, tuple[Feed, str]] = {variant: (STOCK, STOCK.path.format(variant=variant)) for variant in FEEDS} | {
    f"{feed.name}/{variant}": (feed, feed.path.format(variant=variant))
    for feed in (CRYPTO, OPTIONS, NEWS)
    for variant in feed.variants
}
#: The trading stream's path (the account's order updates, :mod:`simulator.trading`), as the trading API serves it.
TRADING_PATH = TRADE_UPDATES_FEED.path
#: Crypto market events a second when the simulator runs in burst mode (``rate`` None), which replays
#: the stock market only: the crypto market always follows the wall clock.
CRYPTO_BURST_RATE = 1000.0


def is_crypto(feed: str) -> bool:
    """Whether a served feed (``crypto/us``) is a crypto one."""
    return feed in CRYPTO_FEEDS


def is_options(feed: str) -> bool:
    """Whether a served feed (``options/opra``) is an option one."""
    return feed in OPTION_FEEDS


def market_of(feed: str) -> str:
    """The market a served feed shows, by the name of the feed that owns it: every option feed shows
    ``options/opra``'s. Alpaca's ``indicative`` feed is derived from OPRA (the free plan's view of the same
    trades and quotes), so the simulator serves one option market on both paths: one ticker, one
    history, the same events to a client of either. Every other feed has a market of its own."""
    return OPTION_FEEDS[0] if is_options(feed) else feed


def is_news(feed: str) -> bool:
    """Whether a served feed (``news/news``) is the news one."""
    return feed in NEWS_FEEDS


def always_paced(feed: str) -> bool:
    """Whether a served feed's market follows the wall clock even in burst mode (every feed but the stock one's)."""
    return STREAMS[feed][0] is not STOCK if feed in STREAMS else False


def market_kind(feed: str) -> str:
    """The market a feed shows: IEX prints only IEX's own venue, the others every venue."""
    return "iex" if feed == "iex" else "sip"


@dataclass(frozen=True)
class Faults:
    """Misbehaviours to inject, each off by default; counts are data messages per connection."""

    close_after: int | None = None
    """Close each connection (code 1001) once it has been sent this many data messages."""
    refuse_connections: int = 0
    """Answer this many auth attempts with 406 connection limit exceeded (-1: every one)."""
    never_authenticate: bool = False
    """Ignore auth messages, so the client hears nothing until the 404 auth timeout."""
    malformed_after: int | None = None
    """Send one frame that is not a valid message after this many data messages."""
    silent_after: int | None = None
    """Send no more data after this many data messages (0: none at all), connection kept open."""
    read_delay: float = 0.0
    """Seconds to wait before handling each client message: a server slow to read its client."""

    def __post_init__(self) -> None:
        for name in ("close_after", "malformed_after", "silent_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"expected {name} >= 0 or None, got {value}")
        if self.refuse_connections < -1:
            raise ValueError(f"expected refuse_connections >= -1, got {self.refuse_connections}")
        if self.read_delay < 0:
            raise ValueError(f"expected read_delay >= 0 seconds, got {self.read_delay}")


@dataclass(frozen=True)
class SimulatorConfig:
    """Settings of one simulator; the defaults serve an open, fast, well-behaved feed."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 binds a free port; read it back from ``Simulator.port``."""
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    crypto_symbols: tuple[str, ...] = DEFAULT_PAIRS
    """The pairs of the crypto market (``BTC/USD`` ...)."""
    option_symbols: tuple[str, ...] | None = None
    """The contracts of the option market (OCC symbols); None: the default chain from the start date
    (:func:`simulator.options.chain`, 2,560 contracts), read back from ``Simulator.option_symbols``."""
    rate: float | None = None
    """Quotes and trades per second (bars and statuses come on top); None is burst mode.

    The crypto market counts book changes and trades (its quotes and bars come on top); in burst
    mode it runs paced at CRYPTO_BURST_RATE."""
    seed: int = 0
    news_rate: float = 2.0
    """Stories (new ones and updates) a second on the news feed, always paced, in burst mode too."""
    key: str | None = None
    secret: str | None = None
    """Credentials to require; with key None any auth message is accepted."""
    feed: str = "iex"
    """The feed ``Simulator.url`` points at; all of STREAMS are served (FEEDS, CRYPTO_FEEDS, OPTION_FEEDS)."""
    entitled_feeds: tuple[str, ...] = tuple(STREAMS)
    """Feeds the credentials may use; authenticating on another answers 409."""
    batch_size: int = 1000
    """Most data messages per frame (Alpaca batches data, never control messages)."""
    max_events: int | None = None
    """Market events to produce in all before going quiet (``--count``); None: endless.

    A finite paced market moves only while a connection is subscribed (so a test's reader
    gets every event); an endless one runs from start-up whether or not anyone listens."""
    auth_timeout: float = 10.0
    connection_limit: int | None = None
    """Authenticated connections allowed per feed at once (Alpaca's is usually 1)."""
    symbol_limit: int | None = None
    send_buffer: int = 100_000
    """Paced mode: data messages queued for a client before it is dropped as slow (407)."""
    window_minutes: int = 1
    """Burst mode: minutes of market generated once and replayed."""
    start_ns: int | None = None
    """Market clock at start (ns since epoch); None: now."""
    compression: bool = False
    """Offer permessage-deflate as Alpaca does; off by default because it costs throughput."""
    record: bool = False
    """Keep every frame sent, so tests can decode exactly what each connection got."""
    history_seconds: int = 3600
    """Paced mode (and the crypto feed, always paced): market time the REST API answers for (at least;
    see :mod:`simulator.history`)."""
    history_max_events: int = 8_000_000
    """Paced mode (and the crypto feed): most quotes and trades kept per feed for the REST API, whatever the rate."""
    rest_rate_limit: int = 200
    """REST requests allowed per key and minute (Alpaca's basic plan: 200); more answer 429."""
    order_rate: float = 5.0
    """Order updates a second on the trading stream (``/stream``) while a connection listens."""
    order_updates: int | None = None
    """Order updates the trading stream sends in all before going quiet; None: endless."""
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if not self.symbols or not self.crypto_symbols or self.option_symbols == ():
            raise ValueError("expected at least one symbol, one pair and one contract, got none")
        if self.news_rate <= 0:
            raise ValueError(f"expected a positive news_rate, got {self.news_rate}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"expected a positive rate or None for burst, got {self.rate}")
        if self.batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {self.batch_size}")
        if self.max_events is not None and self.max_events < 0:
            raise ValueError(f"expected max_events >= 0 or None, got {self.max_events}")
        if self.feed not in STREAMS:
            raise ValueError(f"expected feed in {tuple(STREAMS)}, got {self.feed!r}")
        if (self.key is None) != (self.secret is None):
            raise ValueError("expected both key and secret, or neither")
        if self.history_seconds < 1 or self.history_max_events < 1:
            raise ValueError(
                f"expected history_seconds and history_max_events >= 1, got {self.history_seconds},"
                f" {self.history_max_events}"
            )
        if self.rest_rate_limit < 1:
            raise ValueError(f"expected rest_rate_limit >= 1, got {self.rest_rate_limit}")
        if self.order_rate <= 0 or (self.order_updates is not None and self.order_updates < 0):
            raise ValueError(
                f"expected order_rate > 0 and order_updates >= 0 or None, got {self.order_rate}, {self.order_updates}"
            )
        if self.window_minutes < 1:
            raise ValueError(f"expected window_minutes >= 1, got {self.window_minutes}")
