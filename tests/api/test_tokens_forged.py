"""Forged page tokens on every history route and format: a 4xx before anything is sent, never a 5xx,
never a 200 whose body breaks off.

hypothesis draws tokens three ways: random hex (upper case too) of any length, random text, and keys at
the edges (the int64 ends, just past them, text with NUL or beyond ASCII, too long) laid out as tokens
are, for the route's own table or another. Each goes to a real uvicorn (on a thread, the client is
synchronous) on the session's PostgreSQL, with rows in every table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.tokens import encode_token
from tests.helpers.api import api_settings, insert_events, serving_in_thread
from tests.helpers.events import bar, day_ns, quote, trade
from tickpipe.events import Event

DAY = date(2024, 3, 6)
SYMBOL = "FORGEDTK"
INT64 = (-(2**63), 2**63 - 1)
EDGES = [INT64[0] - 1, INT64[0], INT64[0] + 1, -1, 0, 1, day_ns(DAY, 14), INT64[1] - 1, INT64[1], INT64[1] + 1, 2**64]
#: Every history route, with the table its tokens are keys of.
ROUTES = [
    ("/quotes/" + SYMBOL, {}, "quotes"),
    ("/trades/" + SYMBOL, {}, "trades"),
    *((f"/bars/{SYMBOL}", {"timeframe": tf}, "bars") for tf in ("1Min", "5Min", "15Min", "1Hour", "1Day")),
]


@pytest.fixture(scope="module")
def live(migrated_db: str, redis_url: str) -> Iterator[httpx.Client]:
    """The API on a thread, and rows of ``SYMBOL`` in each table (so real pages exist around forged ones)."""
    ns = day_ns(DAY, 14)
    events: list[Event] = [
        *(quote(SYMBOL, ns + n) for n in range(5)),
        *(trade(SYMBOL, ns + n, n) for n in range(5)),
        *(bar(SYMBOL, ns + n * 60 * 10**9, 1, 2) for n in range(5)),
    ]
    asyncio.run(insert_events(migrated_db, events))
    with (
        serving_in_thread(api_settings(migrated_db, redis_url)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def field(value: object) -> str:
    """One key field as a token lays it out, whatever the value: 16 hex digits of an integer (its low
    64 bits if it is wider, so past the range it wraps to a digit the pattern refuses), 2 per character."""
    if isinstance(value, int):
        return f"{value % 2**64:016x}" if -(2**63) <= value < 2**64 else f"{value:x}"
    return str(value).encode("utf-8", "surrogatepass").hex()


hostile_values = st.one_of(
    st.sampled_from(EDGES),
    st.integers(),
    st.text(max_size=20),
    st.sampled_from(["V", "\x00", "\ud7ff", "A\x00", "é", " " * 17]),
)


@st.composite
def forged_tokens(draw: st.DrawFn, table: str) -> str:
    kind = draw(st.sampled_from(["hex", "text", "key"]))
    if kind == "hex":
        return draw(st.text("0123456789abcdefABCDEF", max_size=80))
    if kind == "text":
        return draw(st.text(min_size=1, max_size=600))
    key_table = draw(st.sampled_from([table, table, "quotes", "trades", "bars"]))
    width = {"quotes": 2, "trades": 3, "bars": 1}[key_table] + draw(st.sampled_from([0, 0, -1, 1]))
    return "".join(field(value) for value in draw(st.lists(hostile_values, min_size=width, max_size=width)))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any], bool]:
    path, params, table = draw(st.sampled_from(ROUTES))
    sort = draw(st.sampled_from(["asc", "desc"]))
    query: dict[str, Any] = {**params, "sort": sort, "page_token": draw(forged_tokens(table))}
    limit = draw(st.sampled_from([None, 1, 2, 10_000]))
    if limit is not None:
        query["limit"] = limit
    return path, query, draw(st.booleans())


def get_whole(client: httpx.Client, path: str, params: dict[str, Any], csv: bool) -> tuple[int, bytes]:
    """Status and the complete body; httpx raises if a chunked body breaks off (no final chunk)."""
    headers = {"Accept": "text/csv" if csv else "application/json"}
    with client.stream("GET", path, params=params, headers=headers) as response:
        return response.status_code, response.read()


@given(request=requests())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_forged_tokens_are_4xx_or_a_whole_page(live: httpx.Client, request: tuple[str, dict[str, Any], bool]) -> None:
    path, params, csv = request
    status, body = get_whole(live, path, params, csv)
    assert status < 500, (path, params, csv, body[:300])
    if status == 200 and not csv:
        orjson.loads(body)
    elif status == 200:
        assert body.startswith(b"symbol,"), body[:100]
    else:
        assert status == 422 and b"page_token" in body, (status, body[:300])


def test_a_long_token_is_refused_repeating_only_a_prefix(live: httpx.Client) -> None:
    status, body = get_whole(live, f"/quotes/{SYMBOL}", {"page_token": "!" * 8000}, False)
    assert status == 422 and b"!" * 65 not in body


@pytest.mark.parametrize(("sort", "at"), [("asc", INT64[1]), ("desc", INT64[0]), ("asc", -1), ("desc", 0)])
@pytest.mark.parametrize("timeframe", ["5Min", "1Day", "1Min"])
@pytest.mark.parametrize("csv", [False, True])
def test_the_edges_of_time_in_a_token(live: httpx.Client, sort: str, at: int, timeframe: str, csv: bool) -> None:
    """The known break: a 5Min CSV export continued from a bucket at the end of int64 began 200 and broke off.
    Beyond ``time_ns``'s range: 422; at its ends: a whole, empty page."""
    token = field(at)
    status, body = get_whole(live, f"/bars/{SYMBOL}", {"timeframe": timeframe, "sort": sort, "page_token": token}, csv)
    if at < 0 or at > INT64[1]:
        assert status == 422 and b"page_token" in body
    else:
        assert status == 200, body
        if csv:
            assert body.splitlines() == [b"symbol,time,open,high,low,close,volume,vwap,trade_count"]
        else:
            assert orjson.loads(body)["bars"] == []


@pytest.mark.parametrize("csv", [False, True])
def test_the_last_bucket_of_time_continues_to_nothing(live: httpx.Client, csv: bool) -> None:
    """In range but at the very end: the next bucket would be past int64, so nothing follows (not a 5xx)."""
    for timeframe, sort in (("5Min", "asc"), ("1Day", "asc"), ("1Hour", "desc")):
        token = encode_token("bars", (INT64[1],))
        params = {"timeframe": timeframe, "sort": sort, "page_token": token}
        status, _ = get_whole(live, f"/bars/{SYMBOL}", params, csv)
        assert status == 200


@pytest.mark.parametrize(("sort", "ids"), [("asc", [3, 4]), ("desc", [1, 0])])
def test_a_token_continues_from_its_row_in_the_order_asked(live: httpx.Client, sort: str, ids: list[int]) -> None:
    """A token names a row, not a sort: either way the next page starts after that row."""
    token = encode_token("trades", (day_ns(DAY, 14) + 2, "V", 2))
    status, body = get_whole(live, f"/trades/{SYMBOL}", {"sort": sort, "page_token": token}, False)
    assert status == 200, body
    assert [item["i"] for item in orjson.loads(body)["trades"]] == ids


def test_a_minute_token_on_coarser_bars_skips_the_bucket_it_falls_in(live: httpx.Client) -> None:
    """A 1Min token (14:02) on 5Min bars, newest first: the next page starts before 14:00's bucket, never
    with a part of it (14:00 and 14:01 alone would be a wrong bar)."""
    token = encode_token("bars", (day_ns(DAY, 14, 2),))
    for sort in ("asc", "desc"):
        params = {"timeframe": "5Min", "sort": sort, "page_token": token}
        status, body = get_whole(live, f"/bars/{SYMBOL}", params, False)
        assert status == 200 and orjson.loads(body)["bars"] == [], body
    status, body = get_whole(live, f"/bars/{SYMBOL}", {"timeframe": "5Min"}, False)
    assert [bar["v"] for bar in orjson.loads(body)["bars"]] == [5000], "the whole bucket, without a token"
