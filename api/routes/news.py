"""``GET /news``: the stored news stories, searched by symbol and time (the ``news`` table).

A story names any number of symbols, so its history is not a page per symbol as the other feeds'
routes are: ``symbols=AAPL,TSLA`` gives the stories naming any of them (``symbols && $1``, the GIN
index), none given every story; ``start`` and ``end`` bound ``created_at``; pages of ``limit`` stories
(default 50, at most 1,000), newest first unless ``sort=asc``, as Alpaca's news API pages them, each
story once in its latest version. The body is Alpaca's (``{"news": [...], "next_page_token": ...}``,
its items the stream's fields without ``T``), ``content`` only with ``include_content=true``.

The page token is the last story's key, ``created_at`` (ns) and ``id``, in 32 lower-case hex digits:
the next page is "stories after this key" in the order asked, so stories stored meanwhile never
shift a page. Every bad parameter is a 422 naming it.

``GET /v1beta1/news`` is Alpaca's own route over the same query (:func:`search`), so alpaca-py's
``NewsClient(url_override=...)`` reads tickpipe's stories unchanged: Alpaca's bounds (``limit`` 1 to 50,
default 10) and ``exclude_contentless``; ``start`` and ``end`` bound ``created_at`` as here (Alpaca
documents a missing ``start`` as the current day's start; a store of history has no such default and
serves the newest stories, as ``GET /news`` does).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import State
from api.models import Unavailable
from api.params import (
    MAX_NS,
    SYMBOLS_PATTERN,
    EndQuery,
    SortQuery,
    StartQuery,
    datetime_to_ns,
    invalid,
    ns_to_utc,
    parse_symbols,
    parse_time,
)
from tickpipe.codecs import format_rfc3339_ns

router = APIRouter(tags=["news"])

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 1_000
#: Alpaca's bounds of ``/v1beta1/news``' pages.
ALPACA_DEFAULT_LIMIT: Final = 10
ALPACA_MAX_LIMIT: Final = 50
TOKEN_PATTERN: Final = "^[0-7][0-9a-f]{15}[0-7][0-9a-f]{15}$"
_TOKEN = re.compile(TOKEN_PATTERN[1:-1], re.ASCII)
_COLUMNS = "news_id, created_at, updated_at, headline, summary, author, url, {content}, symbols, source"


class NewsItem(BaseModel):
    """One story, as Alpaca's news API and stream show it (its latest version)."""

    id: int = Field(description="Alpaca's story id")
    headline: str
    summary: str
    author: str
    created_at: str = Field(description="when it was first published, RFC 3339 UTC")
    updated_at: str = Field(description="when it was last changed, RFC 3339 UTC")
    url: str | None
    content: str = Field(description="HTML as sent; empty unless include_content=true")
    symbols: list[str] = Field(description="the symbols it is about (may be empty)")
    source: str


class NewsPage(BaseModel):
    news: list[NewsItem]
    next_page_token: str | None = Field(description="pass as page_token for the next page; null on the last")


NewsSymbols = Annotated[
    str | None,
    Query(
        description="Comma-separated tickers, e.g. AAPL,TSLA: the stories naming any of them (none: every story)",
        examples=["AAPL,TSLA"],
        json_schema_extra={"pattern": SYMBOLS_PATTERN},
    ),
]
NewsLimit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Most stories per page (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})")
]
NewsToken = Annotated[
    str | None,
    Query(description="next_page_token of the previous page", json_schema_extra={"pattern": TOKEN_PATTERN}),
]
IncludeContent = Annotated[bool, Query(description="Also return each story's content (HTML), as Alpaca's option")]
AlpacaLimit = Annotated[
    int,
    Query(
        ge=1,
        le=ALPACA_MAX_LIMIT,
        description=f"Most stories per page (default {ALPACA_DEFAULT_LIMIT}, at most {ALPACA_MAX_LIMIT}), as Alpaca's",
    ),
]
ExcludeContentless = Annotated[bool, Query(description="Leave out the stories without content, as Alpaca's option")]


def decode_token(token: str) -> tuple[int, int]:
    """``(created_at ns, id)`` of a page token; a 422 naming ``page_token`` for anything else."""
    if not _TOKEN.fullmatch(token):
        shown = token if len(token) <= 64 else f"{token[:64]}..."
        invalid("query", "page_token", f"expected the next_page_token of a previous page ({TOKEN_PATTERN})", shown)
    return int(token[:16], 16), int(token[16:], 16)


def encode_token(created_ns: int, story_id: int) -> str:
    return f"{created_ns:016x}{story_id:016x}"


def _item(row: Any) -> dict[str, Any]:
    return {
        "id": row[0], "headline": row[3], "summary": row[4], "author": row[5],
        "created_at": format_rfc3339_ns(datetime_to_ns(row[1])),
        "updated_at": format_rfc3339_ns(datetime_to_ns(row[2])),
        "url": row[6], "content": row[7], "symbols": list(row[8]), "source": row[9],
    }  # fmt: skip


async def search(
    state: State,
    symbols: str | None,
    start: str | None,
    end: str | None,
    limit: int,
    sort: str,
    page_token: str | None,
    include_content: bool,
    exclude_contentless: bool = False,
) -> Response:
    """One page of the stored stories, Alpaca's body: what both news routes answer, their parameters checked
    here (each bad one a 422 naming it) but for the bounds each route's signature declares."""
    named = parse_symbols(symbols, "symbols") if symbols is not None else None
    lo = parse_time(start, "start", end=False) if start is not None else 0
    hi = parse_time(end, "end", end=True) if end is not None else MAX_NS
    after = decode_token(page_token) if page_token is not None else None
    if lo > hi:
        return Response(orjson.dumps({"news": [], "next_page_token": None}), media_type="application/json")
    desc = sort == "desc"
    where = ["created_at BETWEEN $1 AND $2", "($3::text[] IS NULL OR symbols && $3::text[])"]
    args: list[Any] = [ns_to_utc(lo), ns_to_utc(hi), named]
    if exclude_contentless:
        where.append("content <> ''")
    if after is not None:
        where.append(f"(created_at, news_id) {'<' if desc else '>'} ($4, $5)")
        args += [ns_to_utc(after[0]), after[1]]
    order = "DESC" if desc else "ASC"
    content = "content" if include_content else "''"
    args.append(limit + 1)  # one more row says whether a next page exists
    sql = (
        f"SELECT {_COLUMNS.format(content=content)} FROM news WHERE {' AND '.join(where)} "
        f"ORDER BY created_at {order}, news_id {order} LIMIT ${len(args)}"
    )
    rows = await state.pool.fetch(sql, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    token = encode_token(datetime_to_ns(rows[-1][1]), rows[-1][0]) if more else None
    body = {"news": [_item(row) for row in rows], "next_page_token": token}
    return Response(orjson.dumps(body), media_type="application/json")


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Unavailable, "description": "PostgreSQL does not answer or every connection is busy"}
}


@router.get(
    "/news",
    response_model=NewsPage,
    summary="News stories by symbol and time",
    description=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0] if __doc__ else "",
    responses=_UNAVAILABLE,
)
async def news(
    state: State,
    symbols: NewsSymbols = None,
    start: StartQuery = None,
    end: EndQuery = None,
    limit: NewsLimit = DEFAULT_LIMIT,
    sort: SortQuery = "desc",
    page_token: NewsToken = None,
    include_content: IncludeContent = False,
) -> Response:
    return await search(state, symbols, start, end, limit, sort, page_token, include_content)


@router.get(
    "/v1beta1/news",
    response_model=NewsPage,
    summary="News stories, Alpaca's route (alpaca-py's NewsClient)",
    description=__doc__.rsplit("\n\n", 1)[1] if __doc__ else "",
    responses=_UNAVAILABLE,
)
async def alpaca_news(
    state: State,
    symbols: NewsSymbols = None,
    start: StartQuery = None,
    end: EndQuery = None,
    limit: AlpacaLimit = ALPACA_DEFAULT_LIMIT,
    sort: SortQuery = "desc",
    page_token: NewsToken = None,
    include_content: IncludeContent = False,
    exclude_contentless: ExcludeContentless = False,
) -> Response:
    return await search(state, symbols, start, end, limit, sort, page_token, include_content, exclude_contentless)
