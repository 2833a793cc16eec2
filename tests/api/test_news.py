"""``GET /news``: stored stories searched by symbol and time, against real PostgreSQL rows.

Stories are written as the consumers write them (:func:`tests.helpers.api.insert_events`); their
tickers are made up per test and their days random, so the shared database's other rows never match.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from tests.helpers.api import ApiServer, all_items, all_pages, insert_events
from tests.helpers.news_live import unique_ticker
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.news_events import NewsStory

NS = 1_000_000_000


def some_stories(a: str, b: str, day_start: int) -> list[NewsStory]:
    """Stories over two days: about a, b, both, or neither; two at the same second (told apart by id)."""
    base = random.randint(10**9, 2 * 10**9)
    out = []
    for n in range(24):
        named = ((a,), (b,), (b, a), ())[n % 4]
        created = day_start + (n // 2) * 2 * 3600 * NS  # pairs share a second: the id orders them
        out.append(
            NewsStory(
                news_id=base + n, headline=f"story {n}", summary=f"summary {n}", author="Benzinga Newsdesk",
                created_at=created, updated_at=created + n * NS, url=None if n % 5 == 0 else f"https://x/{n}",
                content=f"<p>{n}</p>", symbols=named, source="benzinga", received_at=created + 5,
            )
        )  # fmt: skip
    return out


def as_json(story: NewsStory, content: bool = False) -> dict[str, Any]:
    return {
        "id": story.news_id, "headline": story.headline, "summary": story.summary, "author": story.author,
        "created_at": format_rfc3339_ns(story.created_at), "updated_at": format_rfc3339_ns(story.updated_at),
        "url": story.url, "content": story.content if content else "", "symbols": list(story.symbols),
        "source": story.source,
    }  # fmt: skip


def a_day() -> tuple[int, str]:
    """Midnight (ns) of a random day of 2031-2039 no other test writes news on, and the next day's date."""
    day = datetime(random.randint(2031, 2039), random.randint(1, 12), random.randint(1, 28), tzinfo=UTC)
    return int(day.timestamp()) * NS, datetime.fromtimestamp(day.timestamp() + 86_400, UTC).date().isoformat()


async def test_stories_by_symbol_and_time_every_page_once_newest_first(api: ApiServer, http: httpx.AsyncClient) -> None:
    a, b = unique_ticker(), unique_ticker()
    start, next_day = a_day()
    stories = some_stories(a, b, start)
    await insert_events(api.app.state.api.settings.database_url, stories)
    by_key = sorted(stories, key=lambda s: (s.created_at, s.news_id))
    about_a = [as_json(s) for s in by_key if a in s.symbols]
    assert len(about_a) == 12

    whole = await http.get("/news", params={"symbols": a.lower()})
    assert whole.status_code == 200, whole.text
    assert whole.json() == {"news": about_a[::-1], "next_page_token": None}, "newest first, as Alpaca's"
    for sort, want in (("desc", about_a[::-1]), ("asc", about_a)):
        for limit in (1, 5, 11, 12):
            pages = await all_pages(http, "/news", "news", symbols=a, limit=limit, sort=sort)
            assert [item for page in pages for item in page] == want, (sort, limit)
            assert len(pages) == -(-12 // limit)

    either = await all_items(http, "/news", "news", symbols=f"{a},{b}", sort="asc", limit=7)
    assert either == [as_json(s) for s in by_key if s.symbols], "any of the symbols, each story once"
    window = {"start": format_rfc3339_ns(start), "end": format_rfc3339_ns(start + 2 * 86_400 * NS - 1)}
    every = await all_items(http, "/news", "news", sort="asc", limit=10, **window)
    assert every == [as_json(s) for s in by_key], "no symbols: every story of the window, those naming none too"
    second_day = await all_items(http, "/news", "news", symbols=b, start=next_day, end=next_day, sort="asc")
    assert second_day == [as_json(s) for s in by_key if b in s.symbols and s.created_at >= start + 86_400 * NS]
    with_content = (await http.get("/news", params={"symbols": a, "include_content": "true", "limit": 1})).json()
    newest_about_a = [s for s in by_key if a in s.symbols][-1]
    assert with_content["news"] == [as_json(newest_about_a, content=True)], "content only when asked for"


async def test_alpaca_py_news_client_reads_tickpipes_news_route_shape(api: ApiServer, http: httpx.AsyncClient) -> None:
    """The body is Alpaca's: alpaca-py's NewsSet model parses a page as it parses Alpaca's own."""
    from alpaca.data.models.news import NewsSet

    a = unique_ticker()
    start, _ = a_day()
    stories = [s for s in some_stories(a, unique_ticker(), start) if a in s.symbols]
    await insert_events(api.app.state.api.settings.database_url, stories)
    page = (await http.get("/news", params={"symbols": a, "include_content": "true"})).json()
    parsed = NewsSet(page)
    assert [n.id for n in parsed.data["news"]] == [s.news_id for s in sorted(stories, key=lambda s: -s.created_at)]
    assert all(a in n.symbols and n.content for n in parsed.data["news"])


@pytest.mark.parametrize(
    ("params", "name", "says"),
    [
        ({"symbols": "AAPL,,MSFT"}, "symbols", "comma-separated list of symbols"),
        ({"symbols": "AAPL$"}, "symbols", "expected a ticker symbol"),
        ({"start": "yesterday"}, "start", "expected an RFC 3339 time"),
        ({"end": "2024-02-30"}, "end", "expected an RFC 3339 time"),
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
        ({"limit": "1001"}, "limit", "less than or equal to 1000"),
        ({"sort": "newest"}, "sort", "'asc' or 'desc'"),
        ({"page_token": "zz"}, "page_token", "expected the next_page_token of a previous page"),
        ({"include_content": "maybe"}, "include_content", "valid boolean"),
    ],
)
async def test_a_bad_parameter_is_a_422_naming_it(
    http: httpx.AsyncClient, params: dict[str, str], name: str, says: str
) -> None:
    response = await http.get("/news", params=params)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][-1] == name and says in e["msg"] for e in errors), errors


async def test_a_start_after_the_end_is_an_empty_page(http: httpx.AsyncClient) -> None:
    response = await http.get("/news", params={"start": "2024-03-05", "end": "2024-03-04"})
    assert response.json() == {"news": [], "next_page_token": None}


# --- GET /v1beta1/news: Alpaca's route, for alpaca-py's NewsClient ------------------------------------------


def news_client(api: ApiServer) -> Any:
    """alpaca-py's own NewsClient, pointed at the API (synchronous: call it in a thread)."""
    from alpaca.data.historical.news import NewsClient

    return NewsClient("any-key", "any-secret", url_override=api.url)


async def test_alpaca_py_news_client_reads_every_stored_story_of_a_window_page_by_page(
    api: ApiServer, http: httpx.AsyncClient
) -> None:
    """The real NewsClient unchanged: it asks 50 a page and follows next_page_token; it gets every story of the
    window naming the symbol, each once, newest first, field for field, content included when asked."""
    from alpaca.data.requests import NewsRequest

    a, b = unique_ticker(), unique_ticker()
    start, _ = a_day()
    stories = [s for day in range(6) for s in some_stories(a, b, start + day * 86_400 * NS)]  # 144, 72 about a
    await insert_events(api.app.state.api.settings.database_url, stories)
    client = news_client(api)
    window = {
        "start": datetime.fromtimestamp(start / NS, UTC),
        "end": datetime.fromtimestamp(start / NS + 6 * 86_400, UTC),
    }
    got = await asyncio.to_thread(client.get_news, NewsRequest(symbols=a, include_content=True, **window))
    about_a = sorted((s for s in stories if a in s.symbols), key=lambda s: (s.created_at, s.news_id), reverse=True)
    news = got.data["news"]
    assert [n.id for n in news] == [s.news_id for s in about_a] and len(news) == 72, "every page once, newest first"
    for item, story in zip(news, about_a, strict=True):
        assert (item.headline, item.summary, item.author, item.url, item.content, item.source) == (
            story.headline, story.summary, story.author, story.url, story.content, story.source
        )  # fmt: skip
        assert item.symbols == list(story.symbols) and int(item.created_at.timestamp()) * NS == story.created_at
        assert int(item.updated_at.timestamp()) * NS == story.updated_at
    either = await asyncio.to_thread(client.get_news, NewsRequest(symbols=f"{a},{b}", sort="asc", **window))
    named = sorted((s for s in stories if s.symbols), key=lambda s: (s.created_at, s.news_id))
    assert [n.id for n in either.data["news"]] == [s.news_id for s in named]
    assert all(n.content == "" for n in either.data["news"]), "content only when asked for, as Alpaca's"

    first = (await http.get("/v1beta1/news", params={"symbols": a})).json()
    assert first["news"] == [as_json(s) for s in about_a[:10]], "Alpaca's default page: the newest 10"
    pages = await all_pages(http, "/v1beta1/news", "news", symbols=a, limit=50, sort="asc")
    assert [len(p) for p in pages] == [50, 22] and [i["id"] for p in pages for i in p] == [
        s.news_id for s in about_a[::-1]
    ]


async def test_alpaca_news_route_leaves_out_contentless_stories_when_asked(
    api: ApiServer, http: httpx.AsyncClient
) -> None:
    a = unique_ticker()
    start, _ = a_day()
    stories = [msgspec.structs.replace(s, content="" if n % 3 else s.content) for n, s in
               enumerate(s for s in some_stories(a, unique_ticker(), start) if a in s.symbols)]  # fmt: skip
    await insert_events(api.app.state.api.settings.database_url, stories)
    body = (await http.get("/v1beta1/news", params={"symbols": a, "exclude_contentless": "true", "sort": "asc",
                                                    "include_content": "true"})).json()  # fmt: skip
    with_content = sorted((s for s in stories if s.content), key=lambda s: (s.created_at, s.news_id))
    assert body == {"news": [as_json(s, content=True) for s in with_content], "next_page_token": None}
    assert len(with_content) == 4 and len(stories) == 12


@pytest.mark.parametrize(
    ("params", "name", "says"),
    [
        ({"limit": "51"}, "limit", "less than or equal to 50"),
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
        ({"sort": "newest"}, "sort", "'asc' or 'desc'"),
        ({"symbols": "AAPL,,MSFT"}, "symbols", "comma-separated list of symbols"),
        ({"start": "yesterday"}, "start", "expected an RFC 3339 time"),
        ({"page_token": "zz"}, "page_token", "expected the next_page_token of a previous page"),
        ({"exclude_contentless": "maybe"}, "exclude_contentless", "valid boolean"),
        ({"include_content": "maybe"}, "include_content", "valid boolean"),
    ],
)
async def test_a_bad_parameter_of_the_alpaca_news_route_is_a_422_naming_it(
    http: httpx.AsyncClient, params: dict[str, str], name: str, says: str
) -> None:
    response = await http.get("/v1beta1/news", params=params)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][-1] == name and says in e["msg"] for e in errors), errors
