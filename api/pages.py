"""One page of history: bounds, the query, the rows in Alpaca's shape, the next token.

The token is folded into the time bounds (``time >= token`` ascending,
``time <= token`` descending), so PostgreSQL starts its index range at the
token instead of filtering its way there; the exact keyset comparison then
only has to drop the rows of that one instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

import asyncpg

from api import queries
from api.params import MAX_NS, MIN_NS, datetime_to_ns, ns_to_utc
from api.shape import MARKED, SHAPES, Item, encode_json
from api.tokens import Key, encode_token

NEW_YORK: Final = ZoneInfo("America/New_York")
#: The zone of each aggregated table's days (``bars``: New York, ``crypto_bars``: US Central).
DAY_ZONES: Final = {table: ZoneInfo(zone) for table, zone in queries.AGGREGATED.items()}
STEP_NS: Final = {"5Min": 300 * 10**9, "15Min": 900 * 10**9, "1Hour": 3600 * 10**9}
#: The origin of those buckets (``date_bin``'s in :data:`api.queries.BUCKETS`): 2000-01-01 UTC.
BUCKET_ORIGIN_NS: Final = 946_684_800 * 10**9
#: Bounds with nothing between them, both within range (what is left after a page at either end of time).
EMPTY: Final = (MAX_NS, MIN_NS)


class Fetcher(Protocol):
    """What a page needs from a pool or a connection."""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A checked history request; nothing in it is raw client text."""

    table: str  # a table of api.queries.SERVED: quotes | trades | bars | crypto_quotes ...
    symbol: str
    start_ns: int = MIN_NS
    end_ns: int = MAX_NS
    limit: int | None = 1000  # None: all rows (CSV only)
    sort: str = "asc"
    timeframe: str = "1Min"
    token: Key | None = None
    #: Corrections and cancels: ``""`` the table as stored, ``exclude``/``mark`` cancelled rows through
    #: the family's view (:data:`api.queries.AMEND`).
    amend: str = ""

    @property
    def scope(self) -> str:
        """What a token of this request is valid for: ``quotes``, ``bars:5Min`` ..."""
        return f"{self.table}:{self.timeframe}" if self.table in queries.AGGREGATED else self.table

    @property
    def aggregated(self) -> bool:
        return self.table in queries.AGGREGATED and self.timeframe != "1Min"

    def bounds(self) -> tuple[int, int]:
        """The inclusive ns range still to read, the token folded in; both ends within ``MIN_NS..MAX_NS``.

        The ends go to PostgreSQL as int8 and timestamptz, so they must stay in
        range whatever the token says (a bucket after the last one, or before
        the first, would not): a range with nothing left is ``EMPTY``.
        """
        lo, hi = self.start_ns, self.end_ns
        if self.token is not None:
            at = int(self.token[0])
            if self.aggregated:  # a bucket is the whole key: continue at the next one, never inside one
                # the token's own bucket, or the one its row falls in
                start = bucket_start(self.timeframe, at, DAY_ZONES[self.table])
                if self.sort == "asc":
                    lo = max(lo, next_bucket(self.timeframe, start, DAY_ZONES[self.table]))
                else:
                    hi = min(hi, start - 1)
            elif self.sort == "asc":
                lo = max(lo, at)
            else:
                hi = min(hi, at)
        lo, hi = max(lo, MIN_NS), min(hi, MAX_NS)
        return (lo, hi) if lo <= hi else EMPTY

    def sql(self, *, csv: bool = False) -> tuple[str, list[Any]]:
        lo, hi = self.bounds()
        args: list[Any] = [self.symbol, ns_to_utc(lo), ns_to_utc(hi), lo, hi, self.limit]
        if self.aggregated:
            return queries.bars_sql(self.timeframe, self.sort, csv, self.table), args
        with_token = self.token is not None
        if with_token:
            assert self.token is not None
            args.extend(self.token)
        return queries.page_sql(self.table, self.sort, with_token, csv, self.amend), args


def bucket_start(timeframe: str, ns: int, zone: ZoneInfo = NEW_YORK) -> int:
    """Start of the bucket ``ns`` falls in, as :data:`api.queries.BUCKETS` cuts them (a start is its own);
    ``zone``: whose calendar days ``1Day`` buckets are."""
    if timeframe in STEP_NS:
        return ns - (ns - BUCKET_ORIGIN_NS) % STEP_NS[timeframe]
    local = ns_to_utc(ns).astimezone(zone)
    return datetime_to_ns(local.replace(hour=0, minute=0, second=0, microsecond=0))


def next_bucket(timeframe: str, bucket_ns: int, zone: ZoneInfo = NEW_YORK) -> int:
    """Start of the bucket after the one starting at ``bucket_ns`` (past ``MAX_NS`` for the last one)."""
    if timeframe in STEP_NS:
        return bucket_ns + STEP_NS[timeframe]
    if bucket_ns >= MAX_NS - 2 * 86_400 * 10**9:  # no day of the zone starts after it within int64
        return MAX_NS + 1
    local = ns_to_utc(bucket_ns).astimezone(zone)
    following = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return datetime_to_ns(following)


@dataclass(slots=True)
class Page:
    items: Sequence[Item]
    next_token: str | None


async def fetch_page(db: Fetcher, request: PageRequest) -> Page:
    """Rows of one page and the token after its last row (None when no row follows)."""
    assert request.limit is not None, "a JSON page always has a limit"
    lo, hi = request.bounds()
    if lo > hi:
        return Page([], None)
    sql, args = request.sql()
    args[5] = request.limit + 1  # one more row says whether a next page exists
    rows = await db.fetch(sql, *args)
    more = len(rows) > request.limit
    if more:
        del rows[request.limit :]
    if request.aggregated:  # the bucket start comes as a timestamptz
        rows = [(datetime_to_ns(row[0]), *row[1:]) for row in rows]
    items = (MARKED if request.amend == "mark" else SHAPES)[request.table](rows)
    return Page(items, _token_after_row(request, rows[-1]) if more else None)


async def token_after(db: Fetcher, request: PageRequest) -> str | None:
    """The token after the ``limit``-th row (None when no row follows), without reading the rows before it.

    For a CSV export's ``Next-Page-Token`` (its ``limit``, or the cap of a
    million rows): PostgreSQL skips to the last row of the page and one more
    (``OFFSET``), only those two come back, none is shaped.
    """
    assert request.limit is not None
    lo, hi = request.bounds()
    if lo > hi:
        return None
    sql, args = request.sql()
    args[5] = 2
    # The offset a bind parameter too: one statement text (prepared once per connection) whatever the limit.
    rows = await db.fetch(f"{sql} OFFSET ${len(args) + 1}", *args, request.limit - 1)
    if len(rows) < 2:
        return None
    last = rows[0]
    if request.aggregated:
        last = (datetime_to_ns(last[0]),)
    return _token_after_row(request, last)


def _token_after_row(request: PageRequest, last: Sequence[Any]) -> str:
    key: Key = (last[0],) if request.aggregated else tuple(last[: len(queries.KEY[request.table])])
    return encode_token(request.table, key)


def page_json(request: PageRequest, page: Page) -> bytes:
    """``{"quotes": [...], "symbol": "AAPL", "next_page_token": ...}``, as Alpaca's REST API answers (the
    family's name, ``quotes``, for the crypto tables too: ``{"quotes": [...], "symbol": "BTC/USD", ...}``)."""
    items = queries.SERVED[request.table][1].name
    return encode_json({items: page.items, "symbol": request.symbol, "next_page_token": page.next_token})
