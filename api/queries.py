"""The SQL of every history route, as plain text with asyncpg ``$n`` parameters.

Only names chosen from the tables below (derived from the feed declaration,
:mod:`tickpipe.feeds`, and the schema) are ever spliced into the text
(table, columns, sort direction, bucket expression); every value a client
sends is a bind parameter. Each text is built once per shape (``lru_cache``)
and asyncpg prepares it once per connection.

Why these shapes, on tables whose primary key starts ``(symbol, time, ...)``:

- ``time`` (microseconds, the partition key) bounds the range, so the scan is
  one index range per daily partition, in order, stopping at ``LIMIT``;
  ``time_ns`` bounds it to the nanosecond;
- rows are ordered by ``time, time_ns, <rest of the key>``: the index gives
  ``time``, an incremental sort the nanoseconds within one microsecond, so the
  order is exact and the keyset condition ``(time_ns, ...) > (token)`` matches it;
- aggregated bars are computed from stored minute bars (``date_bin`` on UTC,
  days on the feed's calendar days, as Alpaca's daily bars are: New York's for
  stocks, US Central's for crypto, the feed's declared ``day_zone``);
- a family declared with a ``view`` (trades: ``trades_corrected``, migration
  0002) is read through it unless the rows as they arrived are asked for: the
  view has the table's columns, key and order with corrections applied, and
  ``cancelled``/``cancel_action`` (see :data:`AMEND`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from tickpipe.feeds import TABLES, Family, Feed
from tickpipe.feeds.tables import array_columns, columns, primary_key, table_of

#: Every table the API serves as history and latest routes of its own, by table name, across feeds
#: (``quotes`` ... of the stock feed, ``crypto_quotes`` ... of the crypto feed): what every mapping below keys on.
SERVED: Final[dict[str, tuple[Feed, Family]]] = {
    table: (feed, family) for table, (feed, family) in TABLES.items() if family.served
}

#: Columns every table has that a page never shows as such: the symbol is the path's, ``t`` is made from
#: ``time_ns``, the receive time is ours.
_BOOKKEEPING: Final = ("symbol", "time", "time_ns", "received_at")
_TS = (
    "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.') "
    "|| lpad((time_ns % 1000000000)::text, 9, '0') || 'Z'"
)


def _key(family: Family) -> tuple[str, ...]:
    """The keyset of a page: ``time_ns``, then the rest of the primary key within one symbol and time."""
    pinned = {name for name, _ in family.pinned}
    return ("time_ns", *(c for c in primary_key(family) if c not in ("symbol", "time") and c not in pinned))


def _shown(family: Family) -> list[str]:
    """The table's columns a response shows, in table order."""
    skip = {*_BOOKKEEPING, *family.hidden, *(name for name, _ in family.pinned)}
    return [column for column in columns(family) if column not in skip]


def _csv_columns(family: Family) -> str:
    arrays = array_columns(family)
    shown = (f"to_json({c})::text AS {c}" if c in arrays else c for c in _shown(family))
    return ", ".join(["symbol", f"{_TS} AS time", *shown])


#: The primary key a page is ordered and continued by, per table.
KEY: Final[dict[str, tuple[str, ...]]] = {table: _key(family) for table, (_, family) in SERVED.items()}
#: Columns a page reads, per table: the key first, then what the response shows.
SELECT: Final[dict[str, str]] = {
    table: ", ".join(dict.fromkeys([*KEY[table], *_shown(family)])) for table, (_, family) in SERVED.items()
}
#: Columns of the CSV export, per table (long names, as the tables and analysts use them).
CSV_SELECT: Final[dict[str, str]] = {table: _csv_columns(family) for table, (_, family) in SERVED.items()}
#: The condition every query of a table adds for its pinned columns (bars: minute bars only).
PINNED: Final[dict[str, str]] = {
    table: "".join(f" AND {name} = '{value}'" for name, value in family.pinned) for table, (_, family) in SERVED.items()
}
#: Tables whose rows are bars of a pinned ``timeframe`` (minute bars), aggregated to the coarser ones on
#: request, with the zone of their feed's calendar days (``bars``, ``crypto_bars``).
AGGREGATED: Final[dict[str, str]] = {
    table: feed.day_zone for table, (feed, family) in SERVED.items() if "timeframe" in dict(family.pinned)
}

#: The view each family's history reads with corrections and cancels applied (trades: ``trades_corrected``).
VIEWS: Final[dict[str, str]] = {table: family.view for table, (_, family) in SERVED.items() if family.view is not None}
#: How a history page treats a view's amendments: ``""`` the table as stored (no view), ``"exclude"``
#: the view without cancelled rows, ``"mark"`` the view with them, marked by their ``cancel_action``.
AMEND: Final = ("", "exclude", "mark")

#: Aggregated timeframes: the bucket each minute bar falls in (``{zone}``: the table's, see :data:`AGGREGATED`).
BUCKETS: Final[dict[str, str]] = {
    "5Min": "date_bin('5 minutes', time, timestamptz '2000-01-01 00:00:00+00')",
    "15Min": "date_bin('15 minutes', time, timestamptz '2000-01-01 00:00:00+00')",
    "1Hour": "date_bin('1 hour', time, timestamptz '2000-01-01 00:00:00+00')",
    "1Day": "date_trunc('day', time, '{zone}')",
}
TIMEFRAMES: Final = ("1Min", *BUCKETS)


def _volume_sum(table: str) -> str:
    """The sum of a bucket's volumes, as the column's type: whole shares (bigint), or fractional coins."""
    volume = table_of(SERVED[table][1]).columns["volume"].type
    return "sum(volume)::bigint" if volume.python_type is int else "sum(volume)"


@lru_cache(maxsize=64)
def page_sql(table: str, sort: str, with_token: bool, csv: bool = False, amend: str = "") -> str:
    """One page of a table for one symbol (``amend``: through its view, see :data:`AMEND`).

    Parameters: ``$1`` symbol, ``$2``/``$3`` time (µs) bounds, ``$4``/``$5``
    ns bounds, ``$6`` limit (NULL: all), then the token's key values. With
    ``amend="mark"`` each row ends in ``cancel_action`` (NULL unless cancelled).
    """
    if table not in SELECT or sort not in ("asc", "desc"):
        raise ValueError(f"expected a table among {list(SELECT)} and sort asc|desc, got {table!r}, {sort!r}")
    if amend not in AMEND or (amend and table not in VIEWS):
        raise ValueError(f"expected amend among {AMEND} (not empty only for {list(VIEWS)}), got {amend!r}")
    source = VIEWS[table] if amend else table
    key = KEY[table]
    direction = "" if sort == "asc" else " DESC"
    where = "symbol = $1 AND time >= $2 AND time <= $3 AND time_ns >= $4 AND time_ns <= $5"
    where += PINNED[table]
    if amend == "exclude":
        where += " AND NOT cancelled"
    if with_token:
        marks = ", ".join(f"${7 + n}" for n in range(len(key)))
        where += f" AND ({', '.join(key)}) {'>' if sort == 'asc' else '<'} ({marks})"
    order = ", ".join(f"{source}.{column}{direction}" for column in ("time", *key))
    columns = CSV_SELECT[table] if csv else SELECT[table]
    if amend == "mark":
        columns += ", cancel_action"
    return f"SELECT {columns} FROM {source} WHERE {where} ORDER BY {order} LIMIT $6"


@lru_cache(maxsize=64)
def bars_sql(timeframe: str, sort: str, csv: bool = False, table: str = "bars") -> str:
    """Bars of a coarser timeframe, aggregated from the minute bars of ``table`` (one of :data:`AGGREGATED`).

    Parameters as :func:`page_sql` without a token: paging narrows the bounds
    instead, since a bucket start is the whole key.
    """
    if timeframe not in BUCKETS or sort not in ("asc", "desc") or table not in AGGREGATED:
        raise ValueError(
            f"expected a timeframe among {list(BUCKETS)}, sort asc|desc and a table among {list(AGGREGATED)}, "
            f"got {timeframe!r}, {sort!r}, {table!r}"
        )
    bucket = BUCKETS[timeframe].replace("{zone}", AGGREGATED[table])
    inner = (
        f"SELECT {bucket} AS bucket, (array_agg(open ORDER BY time))[1] AS open, max(high) AS high, "
        f"min(low) AS low, (array_agg(close ORDER BY time DESC))[1] AS close, {_volume_sum(table)} AS volume, "
        "coalesce(sum(vwap * volume) / nullif(sum(volume), 0), avg(vwap)) AS vwap, "
        "sum(trade_count)::bigint AS trade_count "
        f"FROM {table} WHERE symbol = $1 AND time >= $2 AND time <= $3 AND time_ns >= $4 AND time_ns <= $5"
        f"{PINNED[table]} GROUP BY 1"
    )
    if csv:
        columns = (
            "$1::text AS symbol, to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') "
            "|| '.000000000Z' AS time, open, high, low, close, volume, vwap, trade_count"
        )
    else:
        columns = "bucket, open, high, low, close, volume, vwap, trade_count"
    direction = "" if sort == "asc" else " DESC"
    return f"SELECT {columns} FROM ({inner}) b ORDER BY bucket{direction} LIMIT $6"


@lru_cache(maxsize=16)
def latest_sql(table: str) -> str:
    """The newest row of each symbol in ``$1`` (a text array), one index probe per symbol."""
    if table not in SELECT:
        raise ValueError(f"expected a table among {list(SELECT)}, got {table!r}")
    extra = PINNED[table]
    return (
        f"SELECT s.symbol, x.* FROM unnest($1::text[]) AS s(symbol) CROSS JOIN LATERAL "
        f"(SELECT {SELECT[table]} FROM {table} t WHERE t.symbol = s.symbol{extra} "
        "ORDER BY time DESC, time_ns DESC LIMIT 1) x"
    )


def symbols_sql(table: str) -> str:
    """Distinct symbols of a table by skip scan: one index probe per symbol, not a full scan."""
    if table not in SELECT:
        raise ValueError(f"expected a table among {list(SELECT)}, got {table!r}")
    return (
        f"WITH RECURSIVE s AS ((SELECT symbol FROM {table} ORDER BY symbol LIMIT 1) UNION ALL "
        f"SELECT (SELECT t.symbol FROM {table} t WHERE t.symbol > s.symbol ORDER BY t.symbol LIMIT 1) "
        "FROM s WHERE s.symbol IS NOT NULL) SELECT symbol FROM s WHERE symbol IS NOT NULL"
    )
