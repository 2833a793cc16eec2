"""Forged page tokens on every history route and format: a 4xx before anything is sent, never a 5xx,
never a 200 whose body breaks off.

hypothesis draws tokens three ways: random bytes as URL-safe base64, random
text, and well-formed token arrays with hostile keys (the int64 edges, just
past them, floats, text with NUL, wrong lengths), for the route's own scope
and sort or another. Each goes to a real uvicorn (on a thread, the client is
synchronous) on the session's PostgreSQL, with rows in every table.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.tokens import VERSION
from tests.helpers.api import api_settings, insert_events, serving_in_thread
from tests.helpers.events import bar, day_ns, quote, trade
from tickpipe.events import Event

DAY = date(2024, 3, 6)
SYMBOL = "FORGEDTK"
INT64 = (-(2**63), 2**63 - 1)
EDGES = [INT64[0] - 1, INT64[0], INT64[0] + 1, -1, 0, 1, day_ns(DAY, 14), INT64[1] - 1, INT64[1], INT64[1] + 1, 2**64]
#: Every history route, with the scope its tokens carry.
ROUTES = [
    ("/quotes/" + SYMBOL, {}, "quotes"),
    ("/trades/" + SYMBOL, {}, "trades"),
    *((f"/bars/{SYMBOL}", {"timeframe": tf}, f"bars:{tf}") for tf in ("1Min", "5Min", "15Min", "1Hour", "1Day")),
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


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


hostile_values = st.one_of(
    st.sampled_from(EDGES),
    st.integers(),
    st.text(max_size=20),
    st.sampled_from(["V", "\x00", "\ud7ff", "A\x00", "é", " " * 17]),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)


@st.composite
def forged_tokens(draw: st.DrawFn, scope: str, sort: str) -> str:
    kind = draw(st.sampled_from(["bytes", "text", "array"]))
    if kind == "bytes":
        return b64(draw(st.binary(max_size=400)))
    if kind == "text":
        return draw(st.text(min_size=1, max_size=600))
    version = draw(st.sampled_from([VERSION, VERSION, 0, 2, "1"]))
    token_scope = draw(st.sampled_from([scope, scope, "quotes", "bars:1Day", "x"]))
    token_sort = draw(st.sampled_from([sort, sort, "asc", "desc", ""]))
    key = draw(st.lists(hostile_values, max_size=4))
    return b64(json.dumps([version, token_scope, token_sort, *key]).encode())  # json: ints past 64 bits too


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any], bool]:
    path, params, scope = draw(st.sampled_from(ROUTES))
    sort = draw(st.sampled_from(["asc", "desc"]))
    query: dict[str, Any] = {**params, "sort": sort, "page_token": draw(forged_tokens(scope, sort))}
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
    token = b64(json.dumps([VERSION, f"bars:{timeframe}", sort, at]).encode())
    status, body = get_whole(live, f"/bars/{SYMBOL}", {"timeframe": timeframe, "sort": sort, "page_token": token}, csv)
    if at < 0 or at > INT64[1]:
        assert status == 422 and b"bad key" in body
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
        token = b64(orjson.dumps([VERSION, f"bars:{timeframe}", sort, INT64[1]]))
        params = {"timeframe": timeframe, "sort": sort, "page_token": token}
        status, _ = get_whole(live, f"/bars/{SYMBOL}", params, csv)
        assert status == 200
