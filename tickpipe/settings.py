"""The one settings object, read once from the environment (and ``.env``).

Every variable is documented in ``.env.example``. A bad value stops the process
at start-up with the variable's name and what was expected, instead of failing
later in some task; secrets (Alpaca keys, passwords inside URLs) are never
shown by ``repr`` or in logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, overload
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tickpipe.errors import SettingsError
from tickpipe.feeds import CRYPTO, NEWS, OPTIONS, STOCK, TRADE_UPDATES_FEED, Feed

#: A US equity symbol as Alpaca writes it (BRK.B, BF/B ...), or a synthetic one of the simulator.
SYMBOL_RE = re.compile(f"^{STOCK.symbol_pattern}$")

#: Alpaca's subscription channel names, by the names used in SUBSCRIBED_TYPES.
STREAM_TYPES = tuple(kind.channel for _, kind in STOCK.event_types())

#: The crypto stream's channels, by the names used in CRYPTO_SUBSCRIBED_TYPES, in the order Alpaca lists them.
CRYPTO_STREAM_TYPES = tuple(CRYPTO.channel_types)

ALPACA_STREAM_URLS = {
    "iex": "wss://stream.data.alpaca.markets/v2/iex",
    "sip": "wss://stream.data.alpaca.markets/v2/sip",
    "test": "wss://stream.data.alpaca.markets/v2/test",
}

#: Alpaca's historical market-data API (``/v2/stocks/...``).
ALPACA_DATA_URL = "https://data.alpaca.markets"

#: Alpaca's stream host: an ALPACA_STREAM_URL elsewhere (a proxy, the simulator) serves every feed's path.
ALPACA_STREAM_HOST = "stream.data.alpaca.markets"

#: ALPACA_FEEDS names -> the feed each runs (one producer process per feed): "stocks" (or "stock"), "crypto",
#: "options", "news", "trade_updates" (the account's order updates, from the trading API's stream).
FEED_NAMES: dict[str, Feed] = {
    "stocks": STOCK, "stock": STOCK, "crypto": CRYPTO, "options": OPTIONS, "news": NEWS,
    "trade_updates": TRADE_UPDATES_FEED,
}  # fmt: skip
#: A crypto pair as Alpaca writes it (BTC/USD).
PAIR_RE = re.compile(f"^{CRYPTO.symbol_pattern}$")
#: An OCC option contract as Alpaca writes it (AAPL240621C00190000).
CONTRACT_RE = re.compile(f"^{OPTIONS.symbol_pattern}$")


class FeedSettings(NamedTuple):
    """The settings (field names) of one feed's producer."""

    symbols: str | None  # what it subscribes to (None: no symbols, every order of the account: ``*``)
    stream_url: str  # its stream URL override
    admin_port: str  # its admin port
    variant: str | None  # which of the feed's variants (None: its first)
    #: The channels it subscribes to (None: every channel the feed carries, as options' trades and quotes).
    types: str | None = None


#: Each feed's own settings, by feed name: what the per-feed helpers of :class:`Settings` read.
FEED_SETTINGS: dict[str, FeedSettings] = {
    STOCK.name: FeedSettings(
        "subscribed_symbols", "alpaca_stream_url", "producer_admin_port", "alpaca_feed", "subscribed_types"
    ),
    CRYPTO.name: FeedSettings(
        "crypto_symbols", "alpaca_crypto_stream_url", "crypto_producer_admin_port", None, "crypto_subscribed_types"
    ),
    OPTIONS.name: FeedSettings(
        "option_symbols", "alpaca_options_stream_url", "options_producer_admin_port", "alpaca_options_feed"
    ),
    NEWS.name: FeedSettings("news_symbols", "alpaca_news_stream_url", "news_producer_admin_port", None),
    TRADE_UPDATES_FEED.name: FeedSettings(None, "alpaca_trading_stream_url", "trade_updates_producer_admin_port", None),
}


@overload
def redact_url(url: str) -> str: ...
@overload
def redact_url(url: None) -> None: ...
def redact_url(url: str | None) -> str | None:
    """Hide the password of a URL, so a URL may be logged (Kafka's host:port lists pass unchanged)."""
    if not url or "@" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def validate_symbol(symbol: str) -> str:
    """Normalize one symbol (upper case) and refuse anything that is not a ticker."""
    norm = symbol.strip().upper()
    if not SYMBOL_RE.match(norm):
        raise ValueError(
            f"expected a ticker symbol (letters, digits, '.', '/', '-', at most 16 characters), got {symbol!r}"
        )
    return norm


def validate_pair(symbol: str) -> str:
    """Normalize one crypto pair (upper case) and refuse anything that is not one (BTC/USD)."""
    norm = symbol.strip().upper()
    if not PAIR_RE.match(norm):
        raise ValueError(f"expected a crypto pair like BTC/USD, got {symbol!r}")
    return norm


def validate_contract(symbol: str) -> str:
    """Normalize one option contract (upper case) and refuse anything that is not an OCC symbol."""
    norm = symbol.strip().upper()
    if not CONTRACT_RE.match(norm):
        raise ValueError(
            f"expected an OCC option contract like {OPTIONS.example} (root, YYMMDD, C or P, strike x 1000 in"
            f" 8 digits), got {symbol!r}"
        )
    return norm


#: An order's symbol (a ticker, a crypto pair, an OCC contract), as the trading API writes it.
ORDER_SYMBOL_RE = re.compile(f"^{TRADE_UPDATES_FEED.symbol_pattern}$")


def validate_order_symbol(symbol: str) -> str:
    """Normalize the symbol of an order (upper case), as the order updates' history route is asked for it."""
    norm = symbol.strip().upper()
    if not ORDER_SYMBOL_RE.match(norm):
        raise ValueError(f"expected an order's symbol like AAPL, BTC/USD or {OPTIONS.example}, got {symbol!r}")
    return norm


#: Each feed's symbol check and normalization, by feed name: a ticker, a crypto pair, an OCC contract, an
#: order's symbol (any of them).
VALIDATORS: dict[str, Callable[[str], str]] = {
    STOCK.name: validate_symbol, CRYPTO.name: validate_pair, OPTIONS.name: validate_contract,
    NEWS.name: validate_symbol,
    TRADE_UPDATES_FEED.name: validate_order_symbol,
}  # fmt: skip


def validator_for(feed: Feed) -> Callable[[str], str]:
    """A feed's symbol check: :func:`validate_symbol`, :func:`validate_pair` or :func:`validate_contract`."""
    return VALIDATORS[feed.name]


class Settings(BaseSettings):
    """Configuration of every tickpipe service."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    # --- upstream ---------------------------------------------------------
    alpaca_api_key: SecretStr | None = None
    alpaca_api_secret: SecretStr | None = None
    alpaca_feed: Literal["iex", "sip", "test"] = "iex"
    alpaca_stream_url: str | None = None
    subscribed_symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    subscribed_types: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["quotes", "trades", "bars"])
    upstream_silence_timeout_s: float = Field(default=30.0, gt=0)
    upstream_reconnect_max_s: float = Field(default=30.0, gt=0)
    #: After a 406 (connection limit), how long Alpaca may take to drop the account's old connection.
    upstream_conn_limit_wait_s: float = Field(default=90.0, gt=0)
    #: The feeds ``tickpipe up`` runs, one producer process each (``stocks``, ``crypto``).
    alpaca_feeds: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["stocks"])
    #: Crypto pairs the crypto producer subscribes to (every carried channel), or ``*``.
    crypto_symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    #: Crypto channels the crypto producer subscribes to (default every one it carries).
    crypto_subscribed_types: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(CRYPTO_STREAM_TYPES))
    #: Overrides the crypto stream URL; unset: Alpaca's, or ALPACA_STREAM_URL's host, or the simulator's.
    alpaca_crypto_stream_url: str | None = None
    #: Option contracts (OCC symbols) the options producer subscribes to, trades and quotes; never ``*``
    #: (Alpaca refuses it for option quotes). Empty: none until added at run time (POST /symbols).
    option_symbols: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Which option feed: ``indicative`` (free) or ``opra`` (needs Alpaca's OPRA subscription).
    alpaca_options_feed: Literal["opra", "indicative"] = "indicative"
    #: Overrides the options stream URL; unset: Alpaca's, or ALPACA_STREAM_URL's host, or the simulator's.
    alpaca_options_stream_url: str | None = None
    #: Overrides the trading stream URL (order updates); unset: Alpaca's paper trading stream
    #: (wss://paper-api.alpaca.markets/stream) with keys, or ALPACA_STREAM_URL's host, or the simulator's.
    #: A live account: wss://api.alpaca.markets/stream.
    alpaca_trading_stream_url: str | None = None
    #: Symbols whose news the news producer subscribes to, or ``*`` (every story, those naming no symbol too).
    news_symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    #: Overrides the news stream URL; unset: Alpaca's, or ALPACA_STREAM_URL's host, or the simulator's.
    alpaca_news_stream_url: str | None = None

    # --- services ---------------------------------------------------------
    kafka_bootstrap_servers: str | None = None
    kafka_topic_prefix: str = "tickpipe."
    kafka_partitions: int = Field(default=6, ge=1)
    kafka_enable_idempotence: bool = True
    #: Which broker ``tickpipe up`` embeds when KAFKA_BOOTSTRAP_SERVERS is unset: Apache Kafka (needs Java 17+
    #: and its jars, see ``tickpipe.dev.kafka_jars``), Tansu (no Java; in memory), or ``auto`` (Apache when possible).
    kafka_embedded: Literal["auto", "apache", "tansu"] = "auto"
    kafka_compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "lz4"
    kafka_linger_ms: int = Field(default=5, ge=0)
    kafka_max_batch_bytes: int = Field(default=1_048_576, ge=16_384)
    #: How long a Kafka request (and a produced batch) may take before it counts as failed.
    kafka_request_timeout_ms: int = Field(default=10_000, ge=100)
    redis_url: str | None = None
    database_url: str | None = None
    data_dir: Path = Path(".tickpipe")
    #: Start-up waits this long for each configured PostgreSQL, Redis and Kafka, then exits with one line.
    service_wait_s: float = Field(default=30.0, ge=0)

    # --- producer ---------------------------------------------------------
    live_queue_size: int = Field(default=50_000, ge=1)
    durable_queue_size: int = Field(default=200_000, ge=1)
    spool_dir: Path | None = None
    spool_segment_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)
    #: The spool's cap on disk; past it, as on a full disk, events wait in memory (SPOOL_HOLD_EVENTS).
    spool_max_bytes: int = Field(default=8 * 1024**3, ge=4096)
    #: Events held in memory while the spool takes nothing (disk full, SPOOL_MAX_BYTES); beyond, dropped and counted.
    spool_hold_events: int = Field(default=200_000, ge=0)
    #: A Kafka round unanswered this long sends newer events to the spool rather than keep them in memory.
    kafka_spill_after_s: float = Field(default=2.0, gt=0)
    #: SIGTERM to exit: flush Redis and Kafka, spool the rest, within this bound.
    producer_shutdown_timeout_s: float = Field(default=15.0, gt=0)
    producer_admin_host: str = "127.0.0.1"
    producer_admin_port: int = Field(default=8081, ge=0, le=65535)
    #: The crypto producer's admin port (``tickpipe producer --feed crypto``).
    crypto_producer_admin_port: int = Field(default=8083, ge=0, le=65535)
    #: The options producer's admin port (``tickpipe producer --feed options``).
    options_producer_admin_port: int = Field(default=8084, ge=0, le=65535)
    #: The order updates producer's admin port (``tickpipe producer --feed trade_updates``).
    trade_updates_producer_admin_port: int = Field(default=8086, ge=0, le=65535)
    #: The news producer's admin port (``tickpipe producer --feed news``).
    news_producer_admin_port: int = Field(default=8085, ge=0, le=65535)

    # --- backfill (gaps in the stream, and ``tickpipe backfill``) ---------------
    #: Base URL of the historical REST API; unset: Alpaca's with keys, else the simulator's (see ``data_url``).
    alpaca_data_url: str | None = None
    #: Fill the stream's gaps (reconnect, silence, restart) from the REST API into Kafka.
    backfill_enabled: bool = True
    #: Also fill quotes (heavy: a busy symbol has many times more quotes than trades).
    backfill_quotes: bool = False
    #: REST requests per minute the backfill may spend (Alpaca's basic plan allows 200 for everything).
    backfill_requests_per_minute: int = Field(default=120, ge=1)
    #: The longest window one gap fills (older events are left to ``tickpipe backfill``).
    backfill_max_window_s: float = Field(default=6 * 3600.0, gt=0)
    #: Seconds added before and after each gap: late-reported trades and clock skew (overlap is deduplicated by keys).
    backfill_margin_s: float = Field(default=5.0, ge=0)

    # --- consumers --------------------------------------------------------
    batch_size: int = Field(default=5_000, ge=1)
    batch_max_wait_ms: int = Field(default=200, ge=1)
    consumer_admin_host: str = "127.0.0.1"
    consumer_admin_port: int = Field(default=8082, ge=0, le=65535)
    #: A consumer silent this long leaves its group and its partitions move (Kafka's session.timeout.ms).
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    #: How often a consumer tells its group it is alive; well below the session timeout.
    consumer_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    #: Longest pause between retries of a batch PostgreSQL did not take (backoff doubles up to this).
    consumer_retry_max_s: float = Field(default=5.0, gt=0)
    retention_days: int = Field(default=30, ge=1)
    partitions_ahead_days: int = Field(default=7, ge=1)

    # --- api --------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    tickpipe_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    ws_client_queue_size: int = Field(default=10_000, ge=1)
    ws_max_symbols: int = Field(default=1_000, ge=1)
    ws_auth_timeout_s: float = Field(default=10.0, gt=0)
    ws_flush_interval_ms: float = Field(default=20.0, ge=0, le=1000)
    #: Writes a second an API process aims at before busy clients wait up to WS_FLUSH_INTERVAL_MS (0: always wait).
    ws_flush_writes_per_s: float = Field(default=20_000.0, ge=0)
    api_db_pool_size: int = Field(default=10, ge=1, le=1000)
    # Bounds that keep one client (or a few) from taking an API process's memory, connections or channels.
    ws_client_queue_bytes: int = Field(default=8 * 1024 * 1024, ge=65_536)
    ws_max_frame_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    ws_max_redis_channels: int = Field(default=20_000, ge=1)
    api_db_pool_timeout_s: float = Field(default=5.0, gt=0)
    api_csv_exports_max: int = Field(default=4, ge=1)
    api_csv_max_rows: int = Field(default=1_000_000, ge=1)
    # API keys (``tickpipe keys``): auto = required when any key exists or when bound beyond loopback.
    tickpipe_api_auth: Literal["auto", "on", "off"] = "auto"
    #: A key's limits unless ``tickpipe keys add`` gave it its own (its symbols: WS_MAX_SYMBOLS).
    api_key_max_connections: int = Field(default=10, ge=1)
    api_key_requests_per_minute: int = Field(default=600, ge=1)
    #: How often an API process reloads the keys (a revoked key is refused at most this much later).
    api_keys_refresh_s: float = Field(default=5.0, gt=0)

    # --- simulator ----------------------------------------------------------
    simulator_host: str = "127.0.0.1"
    simulator_port: int = Field(default=8765, ge=0, le=65535)
    simulator_rate: float = Field(default=200.0, gt=0)

    # --- operations: health documents in Redis, the admin surface --------------
    #: Every process writes its health document to Redis this often; one unrefreshed for HEALTH_TTL_S is gone,
    #: and its instance is shown as lost until HEALTH_FORGET_S of silence (see tickpipe.health).
    health_interval_s: float = Field(default=1.0, gt=0)
    health_ttl_s: float = Field(default=5.0, gt=0)
    health_forget_s: float = Field(default=3600.0, gt=0)
    #: Bearer token for the admin routes that change state (the producer's POST /symbols); unset, they
    #: answer only on an admin surface bound to the loopback.
    tickpipe_admin_token: SecretStr | None = None

    # --- logging ------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("subscribed_symbols", "news_symbols", mode="before")
    @classmethod
    def _symbols(cls, value: Any) -> Any:
        items = _split_list(value)
        if items == ["*"]:
            return items
        if not items:
            raise ValueError("expected a comma-separated list of symbols, or '*' for all")
        return [validate_symbol(item) for item in items]

    @field_validator("alpaca_feeds", mode="before")
    @classmethod
    def _feeds(cls, value: Any) -> Any:
        items = [item.lower() for item in _split_list(value)]
        unknown = [item for item in items if item not in FEED_NAMES]
        if unknown or not items:
            raise ValueError(
                "expected a comma-separated list of feeds among stocks (or stock), crypto, options, news, trade_updates"
            )
        # "stock" is "stocks"; each feed once, in the order given
        return list(dict.fromkeys("stocks" if item == "stock" else item for item in items))

    @field_validator("crypto_symbols", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        items = _split_list(value)
        if items == ["*"]:
            return items
        if not items:
            raise ValueError("expected a comma-separated list of crypto pairs like BTC/USD, or '*' for all")
        return [validate_pair(item) for item in items]  # as SUBSCRIBED_SYMBOLS: each checked once, by name

    @field_validator("option_symbols", mode="before")
    @classmethod
    def _contracts(cls, value: Any) -> Any:
        items = _split_list(value)
        if "*" in items:
            raise ValueError(
                f"expected OCC option contracts like {OPTIONS.example}, not '*' (Alpaca refuses it for quotes)"
            )
        return [validate_contract(item) for item in items]  # each checked once, by name

    @field_validator("subscribed_types", mode="before")
    @classmethod
    def _types(cls, value: Any) -> Any:
        items = _split_list(value)
        unknown = [item for item in items if item not in STREAM_TYPES]
        if unknown or not items:
            raise ValueError(f"expected a comma-separated subset of {', '.join(STREAM_TYPES)}; got {value!r}")
        if "quotes" not in items:
            items = ["quotes", *items]
        return items

    @field_validator("crypto_subscribed_types", mode="before")
    @classmethod
    def _crypto_types(cls, value: Any) -> Any:
        items = _split_list(value)
        expected = f"a comma-separated subset of {', '.join(CRYPTO_STREAM_TYPES)}"
        unknown = [item for item in items if item not in CRYPTO_STREAM_TYPES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a crypto channel; expected {expected}")
        if not items:
            raise ValueError(f"expected {expected}")
        return list(dict.fromkeys(items))

    @field_validator("tickpipe_api_keys", mode="before")
    @classmethod
    def _api_keys(cls, value: Any) -> Any:
        items = _split_list(value)
        for item in items:
            text = item.get_secret_value() if isinstance(item, SecretStr) else str(item)
            if text.count(":") != 1 or text.startswith(":") or text.endswith(":"):
                raise ValueError("expected a comma-separated list of KEY:SECRET pairs")
        return items

    @field_validator("kafka_topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{0,100}", value):
            raise ValueError("expected letters, digits, '.', '_' or '-' (a Kafka topic name prefix)")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
            raise ValueError("expected a URL starting with postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a URL starting with redis:// or rediss://")
        return value

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> Settings:
        if self.consumer_heartbeat_interval_ms >= self.consumer_session_timeout_ms:
            raise ValueError(
                "CONSUMER_HEARTBEAT_INTERVAL_MS must be below CONSUMER_SESSION_TIMEOUT_MS "
                f"(got {self.consumer_heartbeat_interval_ms} and {self.consumer_session_timeout_ms})"
            )
        return self

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> Settings:
        if (self.alpaca_api_key is None) != (self.alpaca_api_secret is None):
            raise ValueError("ALPACA_API_KEY and ALPACA_API_SECRET must be set together (or neither)")
        return self

    # --- derived ------------------------------------------------------------
    @property
    def uses_alpaca(self) -> bool:
        """True when Alpaca keys are set; otherwise the built-in simulator is the source."""
        return self.alpaca_api_key is not None

    @property
    def upstream_url(self) -> str:
        if self.alpaca_stream_url:
            return self.alpaca_stream_url
        if self.uses_alpaca:
            return ALPACA_STREAM_URLS[self.alpaca_feed]
        return f"ws://{self.simulator_host}:{self.simulator_port}/v2/{self.alpaca_feed}"

    @property
    def feeds(self) -> tuple[Feed, ...]:
        """ALPACA_FEEDS as declared feeds, in its order."""
        return tuple(FEED_NAMES[name] for name in self.alpaca_feeds)

    def upstream_url_for(self, feed: Feed) -> str:
        """The stream URL of a feed: the stock one is :attr:`upstream_url`; another feed's is its own
        override (ALPACA_CRYPTO_STREAM_URL, ALPACA_OPTIONS_STREAM_URL), else its path (of its variant:
        ALPACA_OPTIONS_FEED) on ALPACA_STREAM_URL's host when that is not Alpaca's (a proxy, the
        simulator), else Alpaca's with keys, else the simulator's."""
        if feed is STOCK:
            return self.upstream_url
        own = FEED_SETTINGS[feed.name]
        override: str | None = getattr(self, own.stream_url)
        if override:
            return override
        path = feed.path.format(variant=getattr(self, own.variant) if own.variant else feed.variants[0])
        stream = self.alpaca_stream_url
        if stream and urlsplit(stream).hostname != ALPACA_STREAM_HOST:
            parts = urlsplit(stream)
            return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        if self.uses_alpaca:
            return f"wss://{feed.host or ALPACA_STREAM_HOST}{path}"
        return f"ws://{self.simulator_host}:{self.simulator_port}{path}"

    def symbols_for(self, feed: Feed) -> list[str]:
        """What a feed's producer subscribes to: SUBSCRIBED_SYMBOLS, CRYPTO_SYMBOLS, OPTION_SYMBOLS; ``*`` for
        a feed without symbols (order updates: every order of the account)."""
        name = FEED_SETTINGS[feed.name].symbols
        if name is None:
            return ["*"]
        symbols: list[str] = getattr(self, name)
        return symbols

    def subscribed_types_for(self, feed: Feed) -> list[str]:
        """The channels a feed's producer subscribes to: SUBSCRIBED_TYPES for stocks, CRYPTO_SUBSCRIBED_TYPES
        for crypto, every channel the feed carries for one without such a setting (options)."""
        name = FEED_SETTINGS[feed.name].types
        if name is None:
            return list(feed.channel_types)
        types: list[str] = getattr(self, name)
        return types

    def spool_path_for(self, feed: Feed) -> Path:
        """A feed's own spool: the stock one is :attr:`spool_path` (unchanged), another's beneath it (``crypto``)."""
        return self.spool_path if feed is STOCK else self.spool_path / feed.name

    def admin_port_for(self, feed: Feed) -> int:
        """A feed's producer admin port: PRODUCER_ADMIN_PORT, CRYPTO_PRODUCER_ADMIN_PORT, OPTIONS_..."""
        port: int = getattr(self, FEED_SETTINGS[feed.name].admin_port)
        return port

    @property
    def data_url(self) -> str:
        """The historical REST API: ALPACA_DATA_URL; else Alpaca's with keys (unless the stream URL points
        elsewhere); else the simulator that serves the stream (same host and port)."""
        if self.alpaca_data_url:
            return self.alpaca_data_url.rstrip("/")
        stream = self.alpaca_stream_url
        if stream and urlsplit(stream).hostname != "stream.data.alpaca.markets":
            parts = urlsplit(stream)
            scheme = "https" if parts.scheme == "wss" else "http"
            return f"{scheme}://{parts.netloc.rpartition('@')[2]}"
        if self.uses_alpaca:
            return ALPACA_DATA_URL
        return f"http://{self.simulator_host}:{self.simulator_port}"

    @property
    def all_symbols(self) -> bool:
        return self.subscribed_symbols == ["*"]

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"

    @property
    def api_key_pairs(self) -> dict[str, str]:
        """TICKPIPE_API_KEYS as {key: secret}; empty means any key is accepted."""
        pairs = (item.get_secret_value().split(":", 1) for item in self.tickpipe_api_keys)
        return {key: secret for key, secret in pairs}

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in ("database_url", "redis_url") and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value


def _describe(error: Any) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]).upper() if loc else "settings"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    given = error.get("input")
    secret = name in ("ALPACA_API_KEY", "ALPACA_API_SECRET", "TICKPIPE_API_KEYS", "TICKPIPE_ADMIN_TOKEN")
    shown = "" if secret else f" (got {given!r})"
    if isinstance(given, dict):
        shown = ""
    return f"{name}: {message}{shown}"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; raise SettingsError naming every bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise SettingsError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use and never again."""
    return load_settings()
