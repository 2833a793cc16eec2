"""The types a feed is declared with: :class:`Feed`, :class:`Family`, :class:`EventType`, :class:`Conflict`.

Plain frozen dataclasses of names and strings: this module imports nothing of
tickpipe, so every part (the simulator included) may derive its lists from a
declaration without pulling in settings, SQLAlchemy or a codec. What a
declaration names elsewhere (a table of :mod:`tickpipe.schema`, a staging
function of the consumers) is resolved where it is used and checked by
``tests/test_feeds.py`` for every declared feed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

#: Prefix of every Kafka topic unless ``KAFKA_TOPIC_PREFIX`` says otherwise.
TOPIC_PREFIX: Final = "tickpipe."
#: The dialect of Alpaca's market-data streams (stocks, crypto, options, news).
MARKET_DATA: Final = "alpaca-v2"
#: The dialect of Alpaca's trading stream (order updates): authenticate, listen, binary JSON frames.
TRADING: Final = "alpaca-trading"


@dataclass(frozen=True, slots=True)
class EventType:
    """One kind of upstream message: its ``T`` code and the channel a client subscribes to."""

    code: str  # Alpaca's ``T``: "q"
    channel: str  # Alpaca's subscription channel: "quotes"
    noun: str  # how messages name one: "quote"
    #: The channel whose subscription brings this one along (corrections come with trades); None: its own.
    follows: str | None = None
    #: Whether its time is the moment it happened (a tick), not the start of a period (a bar).
    tick: bool = False


@dataclass(frozen=True, slots=True)
class Conflict:
    """What a row whose key is already stored does: nothing (a redelivery), or replace the stored values.

    ``unless`` is declared as data, not as SQL, so that the upsert's ``WHERE`` and the
    consumers' folding of a batch's rows of one key (:mod:`consumers.tables`) both derive from it.
    """

    replace: bool = False
    #: With ``replace``: ``(column, stored, new)``, the stored row stays when its ``column`` holds
    #: ``stored`` and the new row's holds ``new`` (bars: ``("updated", "u", "b")``).
    unless: tuple[str, str, str] | None = None
    #: With ``replace``: the column whose greater value replaces the stored row; an equal or smaller one
    #: leaves it (news: ``updated_at``, so a re-sent story replaces an older version of it, and a
    #: redelivery or a late older version changes nothing).
    newer: str | None = None

    def sql(self, table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
        """The ``ON CONFLICT (...)`` action: ``DO NOTHING``, or ``DO UPDATE SET`` every non-key column."""
        if not self.replace:
            return "DO NOTHING"
        values = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns if name not in key)
        if self.unless is not None:
            column, stored, new = self.unless
            values += f" WHERE NOT ({table}.{column} = '{stored}' AND EXCLUDED.{column} = '{new}')"
        if self.newer is not None:
            values += f" WHERE {table}.{self.newer} < EXCLUDED.{self.newer}"
        return f"DO UPDATE SET {values}"


@dataclass(frozen=True, slots=True)
class Family:
    """Event types that share a Kafka topic, a Redis channel family, a snapshot hash and (maybe) a table."""

    name: str  # the topic, channel and table word: "quotes"
    types: tuple[EventType, ...]
    #: Table in :mod:`tickpipe.schema`; None: carried live and in Kafka, not stored.
    table: str | None = None
    #: Every part must carry it (the others are carried when configured).
    required: bool = False
    #: Event field whose value is the Kafka record key (the Redis channel's suffix is always the symbol):
    #: "symbol", or "order_id" for order updates (an order's updates stay in order on one partition).
    key: str = "symbol"
    #: Event field listing the Redis channels' suffixes when they are not ``key``'s value: a news story
    #: (keyed by its id) is published once on the channel of each symbol it names (``symbols``). None:
    #: one channel per event, ``key``'s.
    channels: str | None = None
    #: Whether a new subscriber of its channels first gets the last event per symbol (from ``latest:{name}``).
    snapshot: bool = True
    conflict: Conflict = field(default_factory=Conflict)
    #: Staging table columns (``"name type, ..."``) and the ``module:function`` building a staging row.
    stage_columns: str = ""
    stage_row: str = ""
    #: Columns the history routes pin to one value (``(("timeframe", "1Min"),)``): filtered, never shown.
    pinned: tuple[tuple[str, str], ...] = ()
    #: Columns the history routes never show (internal keys, flags).
    hidden: tuple[str, ...] = ()
    #: Event codes the ``/latest`` route serves (None: all of the family's).
    latest_codes: tuple[str, ...] | None = None
    #: Whether the API serves the table as routes of its own (``/quotes/{symbol}``, ``/quotes/latest``).
    #: False for a table that amends another family's history (corrections and cancels amend trades)
    #: or that analysts read in SQL only (trading statuses).
    served: bool = True
    #: SQL view of the table with the rows of other tables applied (trades: ``trades_corrected``); the
    #: history route reads it unless asked for the rows as they arrived. None: the table itself.
    view: str | None = None
    #: Alpaca's historical REST resource of the family (``/v2/stocks/{history}``), whose items become the
    #: family's first event type: what the producer's gap backfill fetches. None: no REST history.
    history: str | None = None
    #: The event codes that REST history stands for (None: every code of the family). Bars: minute
    #: bars and their updates; daily bars have no stream gap to fill.
    history_codes: tuple[str, ...] | None = None
    #: Whether the gap backfill fetches this history only when asked (quotes: BACKFILL_QUOTES, as
    #: they are many times the trades), rather than whenever the family is subscribed.
    history_on_request: bool = False
    #: Fixed parameters of every request of that history (bars: ``timeframe=1Min``, the stream's bars;
    #: news: ``include_content=true``, as the stream sends a story's content).
    history_params: tuple[tuple[str, str], ...] = ()
    #: The most items one page of that history holds (Alpaca's ``limit`` bound: 10,000; news: 50).
    history_limit: int = 10_000
    #: Whether its messages change a book (a whole one with ``r`` true, then levels): the snapshot hash
    #: holds each symbol's whole current book, not its last message (crypto order books).
    book: bool = False

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.types)

    @property
    def by_symbol(self) -> bool:
        """Whether its events are a symbol's (keyed by ``symbol``): the gap code then tracks and fills them
        symbol by symbol. A news story is not (keyed by its id, naming any symbols): its gaps are windows of
        the feed, and its REST history, asked for no symbols, serves every story, as Alpaca's news API does."""
        return self.key == "symbol"

    def topic(self, prefix: str = TOPIC_PREFIX) -> str:
        """Kafka topic: ``tickpipe.quotes``."""
        return f"{prefix}{self.name}"


@dataclass(frozen=True, slots=True)
class Feed:
    """One upstream stream: where it is, how it shakes hands, its symbols and the families it carries."""

    name: str  # "stock"
    #: Upstream WebSocket path, ``{variant}`` replaced by one of ``variants``: "/v2/{variant}".
    path: str
    variants: tuple[str, ...]
    #: Handshake and framing: "alpaca-v2" is connected -> auth -> subscribe, JSON or msgpack arrays of
    #: messages with ``T`` codes; "alpaca-trading" (the trading API's stream) is authenticate -> listen, one
    #: ``{"stream", "data"}`` object per binary frame, no symbols (:data:`MARKET_DATA`, :data:`TRADING`).
    dialect: str
    #: A symbol as the upstream writes it (a regular expression, anchored when used).
    symbol_pattern: str
    families: tuple[Family, ...]
    #: Every channel of the upstream's subscription message, in its order, carried here or not.
    listed: tuple[str, ...]
    #: Channels the upstream has but tickpipe does not carry, with their ``T`` code ("lulds": "l").
    uncarried: tuple[tuple[str, str], ...] = ()
    #: Path of this feed's stream on the API.
    stream_path: str = "/v2/stream"
    #: The word that qualifies this feed's names ("crypto": topic ``tickpipe.crypto.quotes``, channel
    #: ``crypto.quotes:BTC/USD``, hash ``latest:crypto.quotes``); "" for the stock feed, whose names stay bare.
    qualifier: str = ""
    #: The feed's event structs by ``T`` code, as ``module:attribute`` (its codes may collide with
    #: another feed's: each feed decodes with its own registry, see :func:`tickpipe.codecs.kafka_decoder`).
    events: str = "tickpipe.events:EVENT_TYPES"
    #: A symbol of the feed, for examples in docs, help texts and the contract tests.
    example: str = "AAPL"
    #: The time zone whose midnight starts the feed's days (daily bars, ``timeframe=1Day``): New York's
    #: trading days for stocks, US Central for crypto, as Alpaca counts them (its v1beta3 crypto API's
    #: default ``start`` is the day's start in Central Time; the simulator's crypto market does the same).
    day_zone: str = "America/New_York"
    #: The most characters a symbol of ``symbol_pattern`` has: longer text is refused before it is matched.
    symbol_chars: int = 16
    #: The encodings the upstream speaks; a client of another is refused (the option stream: msgpack only).
    encodings: tuple[str, ...] = ("json", "msgpack")
    #: Channels on which the upstream refuses a ``*`` subscription (option quotes: error 413).
    starless: tuple[str, ...] = ()
    #: Alpaca's historical REST path of the feed's families, ``{history}`` replaced by a family's
    #: ``history`` (``/v2/stocks/{history}``): what the producer's gap backfill fetches. None: the feed
    #: has no REST history and its gaps are not filled.
    history_path: str | None = None
    #: Whether that REST API takes the stream's variant as its ``feed`` parameter (stocks: ``feed=iex``;
    #: only ``iex`` and ``sip`` have a history). False: the path names all it needs (crypto's location ``us``).
    history_feed: bool = False
    #: Alpaca's host of the feed's upstream when it is not the market-data stream host (trade updates: the
    #: paper trading API's, ``paper-api.alpaca.markets``). None: ``stream.data.alpaca.markets``.
    host: str | None = None

    @property
    def subscribes(self) -> bool:
        """Whether its upstream takes a list of symbols (the market-data dialect); the trading stream carries
        every order of the account, unasked."""
        return self.dialect == MARKET_DATA

    def family(self, name: str) -> Family:
        for family in self.families:
            if family.name == name:
                return family
        raise KeyError(f"expected a family of feed {self.name} among {[f.name for f in self.families]}, got {name!r}")

    def event_types(self) -> Iterator[tuple[Family, EventType]]:
        """Every carried event type with its family, in declaration order."""
        for family in self.families:
            for kind in family.types:
                yield family, kind

    @property
    def family_of(self) -> dict[str, str]:
        """Event code -> family name."""
        return {kind.code: family.name for family, kind in self.event_types()}

    def word(self, family: str) -> str:
        """A family's name in topics, channels and hashes: ``quotes``, or ``crypto.quotes`` when qualified;
        a family named as its feed's qualifier is the word alone (the news feed's ``news``)."""
        return f"{self.qualifier}.{family}" if self.qualifier and family != self.qualifier else family

    @property
    def word_of(self) -> dict[str, str]:
        """Event code -> its family's word (:meth:`word`): what the producer's topics and channels use."""
        return {code: self.word(family) for code, family in self.family_of.items()}

    @property
    def words(self) -> tuple[str, ...]:
        """Every family's word, in declaration order."""
        return tuple(self.word(family.name) for family in self.families)

    @property
    def channel_types(self) -> dict[str, EventType]:
        """Carried channel -> its event type, in the order the upstream lists channels."""
        by_channel = {kind.channel: kind for _, kind in self.event_types()}
        return {name: by_channel[name] for name in self.listed if name in by_channel}

    @property
    def tables(self) -> tuple[Family, ...]:
        """Families with a table: what the schema, its partitions and the consumers derive from."""
        return tuple(family for family in self.families if family.table is not None)

    def route(self, family: str) -> str:
        """A family's history route prefix on the API: ``/quotes``, or ``/crypto/quotes`` when qualified
        (``/news`` for a family named as its feed's qualifier)."""
        return f"/{self.qualifier}/{family}" if self.qualifier and family != self.qualifier else f"/{family}"

    @property
    def stored(self) -> tuple[Family, ...]:
        """Families with a table the API serves as its own history and latest routes (``served``)."""
        return tuple(family for family in self.tables if family.served)
