"""The feed contract: every declared feed (tickpipe.feeds.FEEDS) is carried end to end.

For each feed and each of its families: the event types have structs and
channels, the topics follow the names, a stored family's table is in
tickpipe.schema with the columns and key the rows use, the consumers stage
and upsert it as declared, the API has its history and latest routes and
streams every channel, and the simulator serves every channel. A new feed or
family that misses one of these fails here, naming what is missing.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from typing import Any

import msgspec
import pytest
from fastapi import FastAPI

from api import queries, shape
from api.main import create_app
from api.stream import protocol
from consumers import cli as consumer_cli
from consumers import service as consumer_service
from consumers import tables as consumer_tables
from simulator import news, rest, subscriptions
from simulator.config import FEEDS as SIMULATED_VARIANTS
from simulator.config import STREAMS as SIMULATED_STREAMS
from simulator.config import TRADING_PATH
from simulator.server import feed_of
from tests.helpers.api import api_settings
from tickpipe import names, rows, schema, settings
from tickpipe.codecs import kafka_decoder, registry, time_fields
from tickpipe.crypto_events import BookLevel
from tickpipe.events import EVENT_TYPES
from tickpipe.feeds import FEEDS, MARKET_DATA, STOCK, TRADING, Conflict, EventType, Family, Feed
from tickpipe.feeds import TABLES as FEED_TABLES
from tickpipe.feeds.tables import columns, on_conflict, primary_key
from tickpipe.trading_wire import STREAM as TRADING_STREAM

#: Feeds of the market-data dialect: symbols, subscriptions, ``T`` codes (the trading stream has none of them).
MARKET_FEEDS = [feed for feed in FEEDS if feed.dialect == MARKET_DATA]
FAMILIES = [(feed, family) for feed in FEEDS for family in feed.families]
TABLES = [(feed, family) for feed in FEEDS for family in feed.tables]
STORED = [(feed, family) for feed in FEEDS for family in feed.stored]
TYPES = [(feed, family, kind) for feed in FEEDS for family in feed.families for kind in family.types]


def ids(value: object) -> str:
    return value.name if isinstance(value, Feed | Family) else value.code if isinstance(value, EventType) else ""


feeds = pytest.mark.parametrize("feed", FEEDS, ids=ids)
families = pytest.mark.parametrize(("feed", "family"), FAMILIES, ids=ids)
tables = pytest.mark.parametrize(("feed", "family"), TABLES, ids=ids)
stored = pytest.mark.parametrize(("feed", "family"), STORED, ids=ids)
types = pytest.mark.parametrize(("feed", "family", "kind"), TYPES, ids=ids)
market_feeds = pytest.mark.parametrize("feed", MARKET_FEEDS, ids=ids)
market_types = pytest.mark.parametrize(
    ("feed", "family", "kind"), [t for t in TYPES if t[0].dialect == MARKET_DATA], ids=ids
)

_SAMPLES: dict[Any, Any] = {
    str: "X", int: 7, float: 1.5, bool: True, tuple[str, ...]: ("@",), tuple[BookLevel, ...]: (BookLevel(1.5, 2.25),),
    # An order update's numbers (Alpaca's strings) and its order object.
    str | None: "1.5", dict[str, Any]: {"id": "X", "symbol": "AAPL", "qty": "10", "side": "buy", "status": "new"},
}  # fmt: skip
#: A time of a sample event: its microseconds whole, as a time column stored to the microsecond keeps it exactly.
_MOMENT = 1_709_562_600_123_456_000


def _sample_value(kind: Any) -> Any:
    if typing.get_origin(kind) is typing.Literal:
        return typing.get_args(kind)[0]
    return _SAMPLES[kind]


def widest(pattern: str) -> int:
    """The most characters a match of ``pattern`` has: what a feed's ``symbol_chars`` must allow."""
    return int(re._parser.parse(pattern).getwidth()[1])


def sample(feed: Feed, code: str) -> Any:
    """An event of the feed's ``code`` with every field set (ints small and positive, as a market sends them)."""
    cls = registry(feed)[code]
    fields = {f.name: f for f in msgspec.structs.fields(cls) if f.name != "schema_version"}
    values = {name: _sample_value(f.type) for name, f in fields.items()}
    values |= {"received_at": 0}
    if "symbol" in fields:
        values |= {"symbol": feed.example, "timestamp": 1_709_562_600_123_456_789}
    else:  # times of its own (a news story's created_at, updated_at), stored to the microsecond
        values |= {f.name: _MOMENT for f in fields.values() if f.encode_name in time_fields(cls)}
        values |= {"symbols": (feed.example,)} if "symbols" in fields else {}
    return cls(**values)


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(api_settings("postgresql://unused", "redis://unused"))


@pytest.fixture(scope="module")
def app_paths(app: FastAPI) -> dict[str, Any]:
    paths: dict[str, Any] = app.openapi()["paths"]
    return paths


# --- the declaration itself -----------------------------------------------------------------------


@feeds
def test_names_are_unique_and_listed(feed: Feed) -> None:
    kinds = [kind for _, kind in feed.event_types()]
    assert len({f.name for f in feed.families}) == len(feed.families), "expected unique family names"
    assert len({k.code for k in kinds}) == len(kinds), "expected unique event codes"
    carried = {k.channel for k in kinds}
    assert len(carried) == len(kinds), "expected one channel per event type"
    uncarried = dict(feed.uncarried)
    assert carried.isdisjoint(uncarried), "a channel is either carried or not"
    assert set(feed.listed) == carried | set(uncarried), "expected every channel in the listing, and only those"
    for kind in kinds:
        if kind.follows is not None:
            assert kind.follows in carried, f"{kind.channel} follows {kind.follows!r}, which the feed does not carry"


@feeds
def test_upstream_path_and_symbols(feed: Feed) -> None:
    assert feed.variants and ("{variant}" in feed.path or len(feed.variants) == 1)
    assert feed.dialect in (MARKET_DATA, TRADING), (
        f"expected a dialect the producer and simulator speak, got {feed.dialect!r}"
    )
    assert re.fullmatch(feed.symbol_pattern, feed.example)
    assert feed in settings.FEED_NAMES.values(), "expected ALPACA_FEEDS to accept the feed"
    assert settings.validator_for(feed)(feed.example.lower()) == feed.example, "expected the feed's symbol check"
    if feed is STOCK:
        assert settings.SYMBOL_RE.pattern == f"^{feed.symbol_pattern}$"
        assert settings.SYMBOL_RE.match("BRK.B")
    else:
        checks = {
            settings.SYMBOL_RE.pattern, settings.PAIR_RE.pattern, settings.CONTRACT_RE.pattern,
            settings.ORDER_SYMBOL_RE.pattern,
        }  # fmt: skip
        assert f"^{feed.symbol_pattern}$" in checks, "expected the settings to check the feed's symbols"


# --- event types, topics, channels ----------------------------------------------------------------


@types
def test_event_type_has_a_struct_in_its_family(feed: Feed, family: Family, kind: EventType) -> None:
    cls = registry(feed).get(kind.code)
    assert cls is not None, f"expected an event struct with tag {kind.code!r} in {feed.events}"
    event = sample(feed, kind.code)
    assert event.family == family.name
    assert feed.family_of[kind.code] == family.name
    assert kind.channel in feed.listed, "expected the channel among the upstream's listed channels"
    assert kafka_decoder(feed)(msgspec.msgpack.encode(event)) == event, "expected the feed's Kafka decoder to read it"
    if feed is STOCK:
        assert EVENT_TYPES[kind.code] is cls and names.FAMILY_OF[kind.code] == family.name
        assert kind.channel in settings.STREAM_TYPES, "expected the channel among SUBSCRIBED_TYPES"


@families
def test_topic_channel_and_snapshot_hash(feed: Feed, family: Family) -> None:
    word = feed.word(family.name)
    qualified = feed.qualifier and family.name != feed.qualifier  # a feed's one family named as it: its word alone
    assert word == (f"{feed.qualifier}.{family.name}" if qualified else family.name)
    assert names.topic(word) == f"tickpipe.{word}"
    assert names.channel(word, feed.example) == f"{word}:{feed.example}"
    assert names.latest_hash(word) == f"latest:{word}"
    fields = {f.name for cls in registry(feed).values() for f in msgspec.structs.fields(cls)}
    readable = fields | {name for cls in registry(feed).values() for name in dir(cls) if not name.startswith("_")}
    assert family.key in readable, f"expected the record key {family.key!r} among the event's fields or properties"
    assert family.channels is None or family.channels in fields, "expected the channels' field among the event's"
    if family.channels is not None:
        assert not family.snapshot, "a story on several channels has no one last event per symbol to snapshot"
    if feed.dialect == TRADING:  # order updates: keyed by their order, so one order's updates keep their order
        assert family.key == "order_id"
    if feed is STOCK:
        assert family.name in names.FAMILIES and family.topic() == names.topic(family.name)
        assert (family.name in names.REQUIRED_FAMILIES) == family.required


def test_topics_and_tables_are_unique_across_feeds() -> None:
    words = [feed.word(family.name) for feed in FEEDS for family in feed.families]
    assert len(words) == len(set(words))
    assert len(FEED_TABLES) == sum(len(feed.tables) for feed in FEEDS), "expected every table name once"


# --- tables, rows, consumers ----------------------------------------------------------------------


@tables
def test_table_in_the_schema(feed: Feed, family: Family) -> None:
    assert family.table in schema.metadata.tables, f"expected table {family.table!r} in tickpipe.schema"
    assert family.table in schema.PARTITIONED_TABLES
    assert rows.COLUMNS[family.table] == columns(family)
    assert rows.KEYS[family.table] == primary_key(family)
    table = schema.metadata.tables[family.table]
    partition = table.dialect_options["postgresql"]["partition_by"]
    assert primary_key(family)[0] in ("symbol", family.key), "expected the key to start with the symbol or record key"
    assert partition.startswith("RANGE (") and partition[7:-1] in primary_key(family), "the partition key is in the key"
    for name in (*family.hidden, *(column for column, _ in family.pinned)):
        assert name in columns(family), f"expected column {name!r} in table {family.table}"


@tables
def test_rows_round_trip_every_type(feed: Feed, family: Family) -> None:
    assert family.table is not None
    for code in family.codes:
        event = sample(feed, code)
        row = rows.to_row(event)
        assert len(row) == len(columns(family))
        assert rows.from_row(family.table, dict(zip(columns(family), row, strict=True))) == event


@tables
def test_consumers_stage_and_upsert_as_declared(feed: Feed, family: Family) -> None:
    assert family.table is not None
    spec = consumer_tables.spec(family.table)
    assert consumer_tables.SPECS[family.table] == consumer_tables.TableSpec.of(feed, family), "expected derived specs"
    assert consumer_tables.TYPES[family.table] == frozenset(family.codes)
    assert spec.topic_word == feed.word(family.name)
    assert (spec.table, spec.columns, spec.on_conflict) == (family.table, family.stage_columns, on_conflict(family))
    assert (spec.target, spec.key) == (columns(family), primary_key(family))
    module, _, function = family.stage_row.partition(":")
    assert spec.stage_row is getattr(importlib.import_module(module), function)
    assert spec.optimistic == (not family.conflict.replace)
    assert (spec.keeps is not None) == family.conflict.replace, "a batch folds one key's rows where the upsert updates"
    for kind in family.types:
        assert consumer_tables.NOUNS[family.table][kind.code] == kind.noun
        event = sample(feed, kind.code)
        assert spec.decode(msgspec.msgpack.encode(event)) == event
        assert len(spec.stage_row(event)) == len(spec.stage_columns)
    insert = spec.insert_sql()
    assert insert.startswith(f"INSERT INTO {family.table} ({', '.join(columns(family))}) SELECT ")
    assert insert.endswith(f" ON CONFLICT ({', '.join(primary_key(family))}) {on_conflict(family)}")
    for column in spec.stage_columns:
        assert f"s.{column}" in insert, f"expected staging column {column!r} to reach table {family.table}"


@feeds
def test_consumers_write_every_stored_family_and_nothing_else(feed: Feed) -> None:
    stored_names = [family.table for family in feed.tables if family.table is not None]
    assert [table for table in consumer_tables.SPECS if table in stored_names] == stored_names
    assert list(consumer_tables.tables_of((feed,))) == stored_names
    assert consumer_service.tables_for("all", (feed,)) == stored_names
    assert set(consumer_tables.NOUNS[stored_names[0]]) == {code for family in feed.tables for code in family.codes}
    parser = consumer_cli.build_parser()
    assert [parser.parse_args([name]).table for name in (*stored_names, "all")] == [*stored_names, "all"]
    for family in feed.families:
        if family.table is None:
            with pytest.raises(SystemExit):
                parser.parse_args([family.name])


def test_consumers_write_every_feeds_tables() -> None:
    assert list(consumer_tables.SPECS) == list(FEED_TABLES)
    assert consumer_service.tables_for("all") == list(FEED_TABLES)


def test_an_upsert_condition_on_a_column_not_staged_is_named() -> None:
    bars = FEEDS[0].family("bars")
    family = dataclasses.replace(bars, conflict=Conflict(replace=True, unless=("revised", "y", "n")))
    with pytest.raises(ValueError, match=r"expected the conflict condition's column 'revised' among the staging"):
        consumer_tables.TableSpec.of(FEEDS[0], family)


# --- API ------------------------------------------------------------------------------------------


@stored
def test_history_and_latest_routes(feed: Feed, family: Family, app_paths: dict[str, Any]) -> None:
    assert family.table is not None
    for path in (f"{feed.route(family.name)}/{{symbol}}", f"{feed.route(family.name)}/latest"):
        assert "get" in app_paths.get(path, {}), f"expected GET {path} in the API"
    assert family.table in queries.SELECT and family.table in queries.CSV_SELECT
    assert queries.KEY[family.table][0] == "time_ns"
    assert family.table in shape.SHAPES


@feeds
def test_tables_not_served_have_no_routes_of_their_own(feed: Feed, app_paths: dict[str, Any]) -> None:
    """Statuses, corrections and cancels are stored; corrections and cancels reach the API through trades."""
    unserved = [family for family in feed.tables if not family.served]
    if feed is STOCK:
        assert {family.name for family in unserved} >= {"statuses", "corrections", "cancels"}
    for family in unserved:
        route = feed.route(family.name)
        assert f"{route}/{{symbol}}" not in app_paths, f"expected no history pages of {family.table}"
    for family in feed.stored:
        if family.view is not None and family.table is not None:
            assert queries.VIEWS[family.table] == family.view, f"expected the history queries to read {family.view}"
            assert family.table in shape.MARKED, "expected a shape for pages that mark cancelled rows"


@market_types
def test_websocket_streams_every_channel(feed: Feed, family: Family, kind: EventType, app: FastAPI) -> None:
    assert feed.stream_path in {getattr(route, "path", None) for route in app.routes}
    channels = protocol.FEED_CHANNELS[feed.name]
    assert channels.streams[kind.channel] == protocol.Stream(feed.word(family.name), kind.code, feed.name)
    action = protocol.decode_action(f'{{"action": "subscribe", "{kind.channel}": ["{feed.example}"]}}', channels)
    assert action.streams == {kind.channel: [feed.example]}


@market_feeds
def test_websocket_keeps_the_upstreams_rules(feed: Feed, app: FastAPI) -> None:
    """The API's stream refuses what the upstream refuses (an encoding it does not speak: 412; ``*`` on a
    starless channel: 413), serves every path it does, and takes the feed's longest symbols."""
    channels = protocol.FEED_CHANNELS[feed.name]
    assert channels.encodings == feed.encodings and channels.starless == frozenset(feed.starless)
    routes = {getattr(route, "path", None) for route in app.routes}
    assert set(channels.paths) <= routes and channels.paths[0] == feed.stream_path
    assert channels.max_symbol_chars == feed.symbol_chars >= widest(feed.symbol_pattern) >= len(feed.example)
    for name in channels.streams:
        message = f'{{"action": "subscribe", "{name}": ["*"]}}'
        if name in feed.starless:
            with pytest.raises(protocol.ProtocolError) as refused:
                protocol.decode_action(message, channels)
            assert refused.value.code == protocol.Code.STAR_NOT_ALLOWED
        else:
            assert protocol.decode_action(message, channels).streams == {name: ["*"]}


# --- simulator ------------------------------------------------------------------------------------


@pytest.mark.parametrize("feed", [f for f in FEEDS if f.dialect == TRADING], ids=ids)
def test_the_trading_dialect_is_served_on_its_path(feed: Feed, app: FastAPI) -> None:
    """The trading stream: the API serves it at Alpaca's own path, the simulator too, on the one stream it has."""
    assert feed.stream_path == feed.path == TRADING_PATH
    assert feed.stream_path in {getattr(route, "path", None) for route in app.routes}
    assert feed.name not in protocol.FEED_CHANNELS, "expected no market-data protocol on the trading path"
    assert [kind.channel for _, kind in feed.event_types()] == [TRADING_STREAM] == list(feed.listed)


@market_feeds
def test_simulator_serves_every_variant(feed: Feed) -> None:
    served = {name: declared for name, (declared, _) in SIMULATED_STREAMS.items()}
    for variant in feed.variants:
        name = variant if feed is STOCK else f"{feed.name}/{variant}"
        assert served.get(name) is feed, f"expected the simulator to serve {feed.name} {variant}"
        assert feed_of(feed.path.format(variant=variant)) == name
    if feed is STOCK:
        assert feed.variants == SIMULATED_VARIANTS


@market_types
def test_simulator_serves_every_channel(feed: Feed, family: Family, kind: EventType) -> None:
    channels = subscriptions.BY_FEED[feed.name]
    subs = subscriptions.Subscriptions(channels)
    asked = kind.follows or kind.channel
    subs.change({"action": "subscribe", asked: [feed.example]})
    assert subs.accepts(kind.code, feed.example), f"expected the simulator to send {kind.channel} after subscribing"
    assert subs.listing()[kind.channel] == [feed.example]
    table = channels.derived if kind.follows else channels.channels
    assert table[kind.channel] == kind.code


@market_feeds
def test_simulator_serves_uncarried_channels(feed: Feed) -> None:
    for channel, code in feed.uncarried:
        assert subscriptions.BY_FEED[feed.name].channels[channel] == code


HISTORIES = [(feed, family) for feed in FEEDS for family in feed.families if family.history]


@pytest.mark.parametrize(("feed", "family"), HISTORIES, ids=ids)
def test_simulator_serves_every_declared_rest_history(feed: Feed, family: Family) -> None:
    """A family's REST history (what the gap backfill fetches) is a route of the simulator's REST API,
    taking the parameters the history client sends (``feed`` only where the feed declares it)."""
    resource = family.history
    assert feed.history_path and resource, f"expected {feed.name} to declare its history_path"
    path = feed.history_path.format(history=resource)
    sent = {"start", "end", "limit", "sort", "page_token"} | ({"feed"} if feed.history_feed else set())
    sent |= {name for name, _ in family.history_params}
    if not family.by_symbol:  # the news history: its own route, every story when asked for no symbols
        assert path in rest.NEWS_PATHS, f"expected the simulator to serve {path}"
        assert sent | {"symbols"} <= news.PARAMS and "feed" not in news.PARAMS
        assert family.history_limit == news.MAX_LIMIT, "expected pages as large as the REST history allows"
        return
    api = rest.api_of(path)
    assert api is not None, f"expected the simulator to serve {path}"
    assert path == f"{api.prefix}/{resource}" and resource in api.params
    assert sent <= api.params[resource], f"expected {path} to take {sorted(sent)}"
    assert feed.history_feed == ("feed" in api.params[resource])
    assert api.symbol.fullmatch(feed.example)
