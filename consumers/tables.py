"""How each stored family is written: its staging table and the one statement that moves rows into it.

Derived from the feed declaration (:mod:`tickpipe.feeds`): every stored family
gets a :class:`TableSpec` from its table in :mod:`tickpipe.schema` (columns,
primary key), its declared staging columns and staging function, and its
declared conflict rule. The staging table's columns are those of
:mod:`consumers.staging`'s rows; the ``INSERT ... SELECT`` turns nanoseconds
into ``timestamptz`` and the array literal into ``text[]``, so the stored row
is exactly :func:`tickpipe.rows.to_row` of the event (the writer tests hold
the two to that).

Conflicts, as declared: ``DO NOTHING`` (a redelivery is a no-op), or
``DO UPDATE`` with a condition that keeps the stored row (bars: an updated bar
replaces the minute bar, never the other way round). For the ``DO NOTHING``
tables the writer first tries the same INSERT without ``ON CONFLICT`` (see
:meth:`TableSpec.insert_sql`); for the ``DO UPDATE`` ones the batch keeps one
row per key, by the same rule (:meth:`TableSpec.keeps`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from typing import Any, Final

from tickpipe.codecs import kafka_decoder
from tickpipe.feeds import TABLES, Conflict, Family, Feed
from tickpipe.feeds.tables import columns, on_conflict, primary_key

Row = tuple[Any, ...]

#: Which event type codes each table stores.
TYPES: Final[dict[str, frozenset[str]]] = {table: frozenset(family.codes) for table, (_, family) in TABLES.items()}

#: How messages of a table's feed name each stored event type: ``{"q": "quote", ...}`` (codes are per feed).
NOUNS: Final[dict[str, dict[str, str]]] = {
    table: {kind.code: kind.noun for other in feed.tables for kind in other.types}
    for table, (feed, _) in TABLES.items()
}

_NS_TO_TS = "timestamptz 'epoch' + ({0} / 1000) * interval '1 microsecond'"
#: Target columns computed from staging columns; every other target column is copied as it is.
#: (How a staging row carries these values is :mod:`consumers.staging`'s choice, not the feed's.)
_COMPUTED: Final = {
    "time": _NS_TO_TS.format("s.time_ns"),
    "received_at": f"CASE WHEN s.received_ns = 0 THEN NULL ELSE {_NS_TO_TS.format('s.received_ns')} END",
    "conditions": "s.conditions::text[]",
    "original_conditions": "s.original_conditions::text[]",
    "corrected_conditions": "s.corrected_conditions::text[]",
    "bid_prices": "s.bid_prices::float8[]",
    "bid_sizes": "s.bid_sizes::float8[]",
    "ask_prices": "s.ask_prices::float8[]",
    "ask_sizes": "s.ask_sizes::float8[]",
    "created_at": _NS_TO_TS.format("s.created_ns"),
    "updated_at": _NS_TO_TS.format("s.updated_ns"),
    "symbols": "s.symbols::text[]",
}
#: Target ``timestamptz`` columns and the staging column of their nanoseconds (a key's time is folded by it).
_STAGED_NS: Final = {"time": "time_ns", "created_at": "created_ns", "updated_at": "updated_ns"}


def _stage_names(stage_columns: str) -> list[str]:
    return [item.split()[0] for item in stage_columns.split(",")]


def _keeps(conflict: Conflict, stage_columns: str) -> Callable[[Row, Row], bool]:
    """The declared ``Conflict.unless`` (or ``newer``) over staging rows: whether the stored row stays when
    ``new`` arrives."""
    names = _stage_names(stage_columns)
    if conflict.newer is not None:
        column = _STAGED_NS.get(conflict.newer, conflict.newer)
        if column not in names:
            raise ValueError(f"expected the conflict's column {column!r} among the staging columns {names}")
        at = names.index(column)
        return lambda stored, new: stored[at] >= new[at]
    unless = conflict.unless
    if unless is None:
        return lambda stored, new: False
    column, stored_value, new_value = unless
    if column not in names:
        raise ValueError(f"expected the conflict condition's column {column!r} among the staging columns {names}")
    at = names.index(column)
    return lambda stored, new: stored[at] == stored_value and new[at] == new_value


def resolve(ref: str) -> Callable[[Any], Row]:
    """The function a declaration names as ``module:function`` (a family's ``stage_row``)."""
    module, _, name = ref.partition(":")
    try:
        function: Callable[[Any], Row] = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"expected a staging function at {ref!r} (module:function), got {exc}") from exc
    return function


@dataclass(frozen=True)
class TableSpec:
    """Everything the consumer needs to know to write one table."""

    table: str
    #: Staging columns as "name type, ..." in the order of :attr:`stage_row`'s tuples.
    columns: str
    #: Event -> staging tuple.
    stage_row: Callable[[Any], Row]
    #: What ON CONFLICT does: ``DO NOTHING`` or ``DO UPDATE SET ...``.
    on_conflict: str = "DO NOTHING"
    #: The table's columns, in order, and its primary key.
    target: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    #: With ``DO UPDATE``: whether a stored row stays when ``new`` arrives (the declared ``unless``).
    keeps: Callable[[Row, Row], bool] | None = field(default=None, compare=False)
    #: Kafka record value -> event, by the table's feed's own registry (its codes are its own).
    decode: Callable[[bytes], Any] = field(default=kafka_decoder, compare=False)  # type: ignore[assignment]
    #: The Kafka topic's word: the family's as its feed names it (``quotes``, ``crypto.quotes``).
    topic_word: str = ""
    stage: tuple[tuple[str, str], ...] = field(init=False)

    def __post_init__(self) -> None:
        pairs = tuple(tuple(item.split()) for item in self.columns.split(","))
        object.__setattr__(self, "stage", pairs)

    @classmethod
    def of(cls, feed: Feed, family: Family) -> TableSpec:
        """The spec of a stored family of ``feed``, from its declaration and its table."""
        if family.table is None or not family.stage_columns or not family.stage_row:
            raise ValueError(f"expected a stored family with staging columns and function, got {family.name}")
        conflict = family.conflict
        keeps = _keeps(conflict, family.stage_columns) if conflict.replace else None
        return cls(
            family.table, family.stage_columns, resolve(family.stage_row), on_conflict(family),
            target=columns(family), key=primary_key(family), keeps=keeps, decode=kafka_decoder(feed),
            topic_word=feed.word(family.name),
        )  # fmt: skip

    @property
    def stage_table(self) -> str:
        return f"tickpipe_stage_{self.table}"

    @property
    def stage_columns(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.stage)

    def create_stage_sql(self) -> str:
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.stage_table} ({self.columns}) ON COMMIT DELETE ROWS"

    def insert_sql(self, *, on_conflict: bool = True) -> str:
        """The one statement that moves the staged rows into the table.

        ``on_conflict=False`` gives the plain INSERT the writer tries first for ``DO NOTHING``
        tables: it skips the speculative insertion ON CONFLICT does for every row (a third
        less work for PostgreSQL) and fails on a key already stored, which only a redelivery has.
        """
        values = ", ".join(_COMPUTED.get(column, f"s.{column}") for column in self.target)
        statement = f"INSERT INTO {self.table} ({', '.join(self.target)}) SELECT {values} FROM {self.stage_table} s"
        if on_conflict:
            statement += f" ON CONFLICT ({', '.join(self.key)}) {self.on_conflict}"
        return statement

    @property
    def optimistic(self) -> bool:
        """Whether a plain INSERT may be tried first: only where a conflict means "already stored"."""
        return self.on_conflict == "DO NOTHING"

    @cached_property
    def row_key(self) -> Callable[[Row], tuple[Any, ...]]:
        """Staging row -> its primary key as PostgreSQL will see it (``time``: µs of ``time_ns``), to fold a batch.

        Built once per table; the key's other columns are staged as they are stored.
        """
        index = {name: i for i, name in enumerate(self.stage_columns)}
        if "time" in self.key:
            others = itemgetter(*(index[column] for column in self.key if column != "time"))
            at = index["time_ns"]
            return lambda row: (others(row), row[at] // 1000)
        # Another table's key (news: its id and created_at): each time by its staged nanoseconds, in µs.
        parts = [(index[_STAGED_NS[c]], 1000) if c in _STAGED_NS else (index[c], 0) for c in self.key]
        return lambda row: tuple(row[i] // scale if scale else row[i] for i, scale in parts)


#: Every table the consumers write, by table name: every feed's stored families.
SPECS: Final[dict[str, TableSpec]] = {table: TableSpec.of(feed, family) for table, (feed, family) in TABLES.items()}


def tables_of(feeds: tuple[Feed, ...]) -> tuple[str, ...]:
    """The tables of the given feeds (``tickpipe consume all`` writes those of ALPACA_FEEDS)."""
    return tuple(table for table, (feed, _) in TABLES.items() if feed in feeds)


def spec(table: str) -> TableSpec:
    """The spec of ``table``; a clear error for a table the consumers do not write."""
    try:
        return SPECS[table]
    except KeyError:
        raise ValueError(f"expected a table among {', '.join(SPECS)}, got {table!r}") from None
