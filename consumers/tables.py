"""How each table is written: its staging table and the one statement that moves rows into it.

The staging table's columns are those of :mod:`consumers.staging`'s rows; the
``INSERT ... SELECT`` turns nanoseconds into ``timestamptz`` and the array
literal into ``text[]``, so the stored row is exactly
:func:`tickpipe.rows.to_row` of the event (the writer tests hold the two to that).

Conflicts: quotes and trades ``DO NOTHING`` (a redelivery is a no-op); bars
``DO UPDATE``, because an updated bar replaces the minute bar, except that a
minute bar never replaces an updated one (a replay of an old record must not
undo a correction). For the ``DO NOTHING`` tables the writer first tries the
same INSERT without ``ON CONFLICT`` (see :meth:`TableSpec.insert_sql`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from consumers.staging import bar_row, quote_row, trade_row
from tickpipe.events import Event
from tickpipe.rows import COLUMNS, KEYS

#: Which event type codes each table stores.
TYPES: Final[dict[str, frozenset[str]]] = {
    "quotes": frozenset({"q"}),
    "trades": frozenset({"t"}),
    "bars": frozenset({"b", "u", "d"}),
}

_NS_TO_TS = "timestamptz 'epoch' + ({0} / 1000) * interval '1 microsecond'"
#: Target columns computed from staging columns; every other target column is copied as it is.
_COMPUTED = {
    "time": _NS_TO_TS.format("s.time_ns"),
    "received_at": f"CASE WHEN s.received_ns = 0 THEN NULL ELSE {_NS_TO_TS.format('s.received_ns')} END",
    "conditions": "s.conditions::text[]",
}
_BAR_VALUES = ("time_ns", "open", "high", "low", "close", "volume", "vwap", "trade_count", "updated", "received_at")


@dataclass(frozen=True)
class TableSpec:
    """Everything the consumer needs to know to write one table."""

    table: str
    #: Staging columns as "name type, ..." in the order of :attr:`stage_row`'s tuples.
    columns: str
    #: Event -> staging tuple.
    stage_row: Callable[[Any], tuple[Any, ...]]
    #: What ON CONFLICT does: ``DO NOTHING`` or ``DO UPDATE SET ...``.
    on_conflict: str = "DO NOTHING"
    stage: tuple[tuple[str, str], ...] = field(init=False)

    def __post_init__(self) -> None:
        pairs = tuple(tuple(item.split()) for item in self.columns.split(","))
        object.__setattr__(self, "stage", pairs)

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
        columns = COLUMNS[self.table]
        values = ", ".join(_COMPUTED.get(column, f"s.{column}") for column in columns)
        statement = f"INSERT INTO {self.table} ({', '.join(columns)}) SELECT {values} FROM {self.stage_table} s"
        if on_conflict:
            statement += f" ON CONFLICT ({', '.join(KEYS[self.table])}) {self.on_conflict}"
        return statement

    @property
    def optimistic(self) -> bool:
        """Whether a plain INSERT may be tried first: only where a conflict means "already stored"."""
        return self.on_conflict == "DO NOTHING"


SPECS: Final[dict[str, TableSpec]] = {
    "quotes": TableSpec(
        "quotes",
        "symbol text, time_ns bigint, received_ns bigint, event_key bigint, bid_exchange text, bid_price float8, "
        "bid_size bigint, ask_exchange text, ask_price float8, ask_size bigint, conditions text, tape text",
        quote_row,
    ),
    "trades": TableSpec(
        "trades",
        "symbol text, time_ns bigint, received_ns bigint, exchange text, trade_id bigint, price float8, "
        "size bigint, conditions text, tape text",
        trade_row,
    ),
    "bars": TableSpec(
        "bars",
        "symbol text, timeframe text, time_ns bigint, received_ns bigint, open float8, high float8, low float8, "
        "close float8, volume bigint, vwap float8, trade_count bigint, updated text",
        bar_row,
        on_conflict=(
            "DO UPDATE SET "
            + ", ".join(f"{name} = EXCLUDED.{name}" for name in _BAR_VALUES)
            + " WHERE NOT (bars.updated = 'u' AND EXCLUDED.updated = 'b')"
        ),
    ),
}


def spec(table: str) -> TableSpec:
    """The spec of ``table``; a clear error for a table the consumers do not write."""
    try:
        return SPECS[table]
    except KeyError:
        raise ValueError(f"expected a table among {', '.join(SPECS)}, got {table!r}") from None


def stage_row(event: Event) -> tuple[Any, ...]:
    """The staging tuple of any storable event (for tests and tools; the batch loop uses the spec's)."""
    return spec(event.family).stage_row(event)
