"""Every bad parameter gets a 422 naming it and what is allowed; a failing service gets a 503."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.tokens import encode_token
from tests.helpers.api import api_settings, running_api

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # path, params, parameter named, words of the message
    ("/quotes/AA$PL", {}, "symbol", "expected a ticker symbol"),
    ("/quotes/ABCDEFGHIJKLMNOPQ", {}, "symbol", "at most 16 characters"),
    ("/trades/1ABC", {}, "symbol", "expected a ticker symbol"),
    ("/quotes/AAPL", {"start": "yesterday"}, "start", "RFC 3339"),
    ("/quotes/AAPL", {"start": "2024-02-30"}, "start", "one that exists, 1971 to 2261"),
    ("/quotes/AAPL", {"end": "2024-03-04T25:00:00Z"}, "end", "RFC 3339"),
    ("/quotes/AAPL", {"end": "2024-03-04T10:00:00"}, "end", "RFC 3339"),  # no zone
    ("/quotes/AAPL", {"start": "1960-01-01"}, "start", "1971 to 2261"),
    ("/quotes/AAPL", {"limit": "0"}, "limit", "greater than or equal to 1"),
    ("/quotes/AAPL", {"limit": "10001"}, "limit", "less than or equal to 10000"),
    ("/bars/AAPL", {"limit": "many"}, "limit", "valid integer"),
    ("/quotes/AAPL", {"sort": "newest"}, "sort", "'asc' or 'desc'"),
    ("/bars/AAPL", {"timeframe": "2Min"}, "timeframe", "'1Min', '5Min', '15Min', '1Hour' or '1Day'"),
    ("/quotes/AAPL", {"page_token": "not-a-token!"}, "page_token", "next_page_token of a previous page"),
    ("/quotes/AAPL", {"page_token": "WzFd"}, "page_token", "next_page_token of a previous page"),
    ("/bars/AAPL", {"page_token": encode_token("quotes", (1, 5))}, "page_token", "previous page (bars:"),
    ("/quotes/AAPL", {"page_token": "8" + "0" * 31}, "page_token", "lower-case hex"),  # a time past int64
    ("/quotes/latest", {}, "symbols", "Field required"),
    ("/quotes/latest", {"symbols": " , "}, "symbols", "comma-separated list of symbols"),
    ("/trades/latest", {"symbols": "AAPL,MS FT"}, "symbols", "expected a ticker symbol"),
    ("/bars/latest", {"symbols": ",".join(f"S{n}" for n in range(1001))}, "symbols", "at most 1000 symbols"),
]


@pytest.mark.parametrize(("path", "params", "name", "words"), CASES)
async def test_bad_parameters_are_named(
    http: httpx.AsyncClient, path: str, params: dict[str, Any], name: str, words: str
) -> None:
    response = await http.get(path, params=params)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(error["loc"][-1] == name and words in error["msg"] for error in errors), errors


async def test_a_start_after_the_end_is_an_empty_page(http: httpx.AsyncClient) -> None:
    """Every pair of times the document admits is a range the server takes: an empty one gives an empty page."""
    response = await http.get("/quotes/AAPL", params={"start": "2024-03-05", "end": "2024-03-04"})
    assert response.status_code == 200, response.text
    assert response.json() == {"quotes": [], "symbol": "AAPL", "next_page_token": None}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_services_down_mean_503_and_not_ready(migrated_db: str, redis_url: str) -> None:
    down_pg = f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing"
    down_redis = f"redis://127.0.0.1:{closed_port()}/0"
    async with (
        running_api(api_settings(down_pg, down_redis)) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False
        assert body["postgres"].startswith("unavailable") and body["redis"].startswith("unavailable")
        history = await client.get("/quotes/AAPL")
        assert history.status_code == 503
        assert "PostgreSQL is unavailable" in history.json()["detail"]
        assert (await client.get("/healthz")).status_code == 200
    # Redis down alone: latest still answers from PostgreSQL.
    async with (
        running_api(api_settings(migrated_db, down_redis)) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        latest = await client.get("/quotes/latest", params={"symbols": "ZZZZZZZZ"})
        assert latest.status_code == 200 and latest.json() == {"quotes": {}}
        assert (await client.get("/readyz")).json()["postgres"] == "ok"


async def test_dashboard_route_serves_index_when_present(migrated_db: str, redis_url: str, tmp_path: Path) -> None:
    from api.main import create_app
    from tests.helpers.api import ApiServer

    settings = api_settings(migrated_db, redis_url)
    server = await ApiServer(create_app(settings, static_dir=tmp_path)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/")).status_code == 404
            (tmp_path / "index.html").write_text("<!doctype html><title>tickpipe</title>")
            page = await client.get("/")
            assert page.status_code == 200 and "tickpipe" in page.text
            assert (await client.get("/static/index.html")).status_code == 200
    finally:
        await server.stop()
