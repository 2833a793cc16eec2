"""A family's table as :mod:`tickpipe.schema` defines it: its columns, key and conflict action.

Separate from :mod:`tickpipe.feeds.spec` so that deriving a channel list
never imports SQLAlchemy; whoever needs columns (rows, the API's queries,
the consumers' table specs) imports this.
"""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import ARRAY

from tickpipe import schema
from tickpipe.feeds.spec import Family


def table_of(family: Family) -> Table:
    """The SQLAlchemy table of a stored family; ValueError for one without a table."""
    if family.table is None:
        raise ValueError(f"expected a family with a table, {family.name} is not stored")
    return schema.metadata.tables[family.table]


def columns(family: Family) -> tuple[str, ...]:
    """The table's columns in their order (what COPY and ``to_row`` use)."""
    return tuple(column.name for column in table_of(family).columns)


def primary_key(family: Family) -> tuple[str, ...]:
    """The table's primary key, in its order (what ON CONFLICT names)."""
    return tuple(column.name for column in table_of(family).primary_key.columns)


def array_columns(family: Family) -> frozenset[str]:
    """Columns holding arrays (``conditions``)."""
    return frozenset(column.name for column in table_of(family).columns if isinstance(column.type, ARRAY))


def on_conflict(family: Family) -> str:
    """The ``ON CONFLICT (key)`` action of the family's upsert."""
    return family.conflict.sql(table_of(family).name, columns(family), primary_key(family))
