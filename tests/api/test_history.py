"""History routes against real PostgreSQL rows: ranges, sorts, pages, timeframes, CSV, latest, symbols."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio

from tests.helpers.api import ApiServer, all_pages, insert_events, publish
from tests.helpers.consumers import NS
from tests.helpers.events import bar, day_ns, quote, trade
from tickpipe.codecs import encode_live, event_key, format_rfc3339_ns
from tickpipe.events import DailyBar, Quote, Trade
from tickpipe.names import latest_hash

DAY = date(2024, 3, 4)
NEXT = date(2024, 3, 5)


def q_json(q: Quote) -> dict[str, Any]:
    return {
        "t": format_rfc3339_ns(q.timestamp),
        "ax": q.ask_exchange,
        "ap": q.ask_price,
        "as": q.ask_size,
        "bx": q.bid_exchange,
        "bp": q.bid_price,
        "bs": q.bid_size,
        "c": list(q.conditions),
        "z": q.tape,
    }


def t_json(t: Trade) -> dict[str, Any]:
    return {
        "t": format_rfc3339_ns(t.timestamp),
        "x": t.exchange,
        "p": t.price,
        "s": t.size,
        "c": list(t.conditions),
        "i": t.trade_id,
        "z": t.tape,
    }


def same_bar(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Equal, the volume-weighted price to float rounding (PostgreSQL sums in another order)."""
    rest = {k: v for k, v in got.items() if k not in ("t", "vw")}
    return rest == {k: v for k, v in want.items() if k != "vw"} and got["vw"] == pytest.approx(want["vw"])


def quote_order(q: Quote) -> tuple[int, int]:
    return (q.timestamp, event_key(q))


def some_quotes(symbol: str) -> list[Quote]:
    """Quotes over two days, with several sharing one nanosecond and several one microsecond."""
    out = [quote(symbol, day_ns(DAY, 14, m, s), bid=100 + m + s / 100) for m in range(3) for s in (0, 20, 40)]
    tie = day_ns(DAY, 15)
    out += [quote(symbol, tie, bid=200 + n) for n in range(4)]  # same nanosecond
    out += [quote(symbol, tie + 1 + n, bid=300 + n) for n in range(3)]  # same microsecond
    out += [quote(symbol, day_ns(NEXT, 1, m), bid=400 + m) for m in range(5)]
    return out


async def test_quotes_range_in_both_sorts(
    api: ApiServer, http: httpx.AsyncClient, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    rows = some_quotes(symbol)
    await insert_events(api.app.state.api.settings.database_url, rows)
    ordered = sorted(rows, key=quote_order)

    everything = await http.get(f"/quotes/{symbol}")
    assert everything.json() == {"quotes": [q_json(q) for q in ordered], "symbol": symbol, "next_page_token": None}

    start, end = day_ns(DAY, 14, 1), day_ns(DAY, 15) + 2  # inclusive, to the nanosecond
    inside = [q for q in ordered if start <= q.timestamp <= end]
    params = {"start": format_rfc3339_ns(start), "end": format_rfc3339_ns(end)}
    asc = (await http.get(f"/quotes/{symbol}", params=params)).json()["quotes"]
    desc = (await http.get(f"/quotes/{symbol}", params={**params, "sort": "desc"})).json()["quotes"]
    assert asc == [q_json(q) for q in inside]
    assert desc == [q_json(q) for q in reversed(inside)]

    by_date = (await http.get(f"/quotes/{symbol.lower()}", params={"start": "2024-03-05", "end": "2024-03-05"})).json()
    assert by_date["quotes"] == [q_json(q) for q in ordered if q.timestamp >= day_ns(NEXT)]
    assert by_date["symbol"] == symbol


async def test_pages_have_no_gap_and_no_repeat(
    api: ApiServer, http: httpx.AsyncClient, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    rows = some_quotes(symbol)
    await insert_events(api.app.state.api.settings.database_url, rows)
    ordered = [q_json(q) for q in sorted(rows, key=quote_order)]
    for sort, expected in (("asc", ordered), ("desc", ordered[::-1])):
        for limit in (1, 3, 4, len(rows) - 1, len(rows)):
            pages = await all_pages(http, f"/quotes/{symbol}", "quotes", limit=limit, sort=sort)
            assert [item for page in pages for item in page] == expected, (sort, limit)
            assert all(len(page) == limit for page in pages[:-1])
            assert len(pages) == -(-len(rows) // limit)


async def test_pages_stay_stable_while_rows_arrive(
    api: ApiServer, http: httpx.AsyncClient, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    rows = [quote(symbol, day_ns(DAY, 14, m)) for m in range(10)]
    database_url = api.app.state.api.settings.database_url
    await insert_events(database_url, rows)
    first = (await http.get(f"/quotes/{symbol}", params={"limit": 4})).json()
    # One row before the page boundary (already read), one after it.
    early, late = quote(symbol, day_ns(DAY, 14, 1, 30)), quote(symbol, day_ns(DAY, 14, 7, 30))
    await insert_events(database_url, [early, late])
    seen = first["quotes"]
    token = first["next_page_token"]
    while token:
        body = (await http.get(f"/quotes/{symbol}", params={"limit": 4, "page_token": token})).json()
        seen += body["quotes"]
        token = body["next_page_token"]
    expected = sorted([*rows, late], key=quote_order)
    assert seen == [q_json(q) for q in expected]


async def test_trades_order_ties_by_exchange_and_id(
    api: ApiServer, http: httpx.AsyncClient, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    at = day_ns(DAY, 16)
    rows = [trade(symbol, at, trade_id=n % 3, exchange="VNQ"[n // 3], price=10 + n) for n in range(9)]
    rows += [trade(symbol, at + 500, trade_id=99), trade(symbol, at - 1, trade_id=7)]
    await insert_events(api.app.state.api.settings.database_url, rows)
    expected = [t_json(t) for t in sorted(rows, key=lambda t: (t.timestamp, t.exchange, t.trade_id))]
    for sort, want in (("asc", expected), ("desc", expected[::-1])):
        pages = await all_pages(http, f"/trades/{symbol}", "trades", limit=2, sort=sort)
        assert [item for page in pages for item in page] == want


async def test_unknown_symbol_is_an_empty_page(http: httpx.AsyncClient, unique_symbol: Callable[[], str]) -> None:
    symbol = unique_symbol()
    for path in ("quotes", "trades", "bars"):
        response = await http.get(f"/{path}/{symbol}", params={"start": "2024-01-01"})
        assert response.status_code == 200
        assert response.json() == {path: [], "symbol": symbol, "next_page_token": None}


async def test_bars_aggregate_minute_bars_per_timeframe(
    api: ApiServer, http: httpx.AsyncClient, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    # Minute bars 13:55 .. 15:04 UTC on DAY, and 04:30 .. 04:31 UTC on NEXT (still DAY in New York, UTC-5).
    minutes = [day_ns(DAY, 13, 55) + n * 60 * NS for n in range(70)] + [day_ns(NEXT, 4, 30), day_ns(NEXT, 4, 31)]
    bars = [bar(symbol, ns, open_=100 + n, close=100.5 + n, volume=10 + n) for n, ns in enumerate(minutes)]
    await insert_events(api.app.state.api.settings.database_url, bars)

    one = (await http.get(f"/bars/{symbol}", params={"limit": 3})).json()["bars"]
    assert one[0] == {
        "t": format_rfc3339_ns(minutes[0]),
        "o": 100.0,
        "h": 101.5,
        "l": 99.0,
        "c": 100.5,
        "v": 10,
        "n": 10,
        "vw": 100.25,
    }

    def expected(group: list[int]) -> dict[str, Any]:
        chosen = [bars[n] for n in group]
        volume = sum(b.volume for b in chosen)
        return {
            "o": chosen[0].open,
            "h": max(b.high for b in chosen),
            "l": min(b.low for b in chosen),
            "c": chosen[-1].close,
            "v": volume,
            "n": 10 * len(chosen),
            "vw": sum(b.vwap * b.volume for b in chosen) / volume,
        }

    five = (await http.get(f"/bars/{symbol}", params={"timeframe": "5Min", "limit": 10000})).json()["bars"]
    assert [b["t"] for b in five[:2]] == [format_rfc3339_ns(day_ns(DAY, 13, 55)), format_rfc3339_ns(day_ns(DAY, 14))]
    assert same_bar(five[1], expected(list(range(5, 10))))

    hours = (await http.get(f"/bars/{symbol}", params={"timeframe": "1Hour"})).json()["bars"]
    assert [b["t"] for b in hours] == [format_rfc3339_ns(day_ns(DAY, h)) for h in (13, 14, 15)] + [
        format_rfc3339_ns(day_ns(NEXT, 4))
    ]
    assert same_bar(hours[1], expected(list(range(5, 65))))

    days = (await http.get(f"/bars/{symbol}", params={"timeframe": "1Day"})).json()["bars"]
    assert len(days) == 1 and days[0]["t"] == format_rfc3339_ns(day_ns(DAY, 5))  # New York midnight
    assert same_bar(days[0], expected(list(range(72))))

    for timeframe in ("5Min", "15Min", "1Hour"):
        full = (await http.get(f"/bars/{symbol}", params={"timeframe": timeframe})).json()["bars"]
        for sort, want in (("asc", full), ("desc", full[::-1])):
            pages = await all_pages(http, f"/bars/{symbol}", "bars", timeframe=timeframe, limit=2, sort=sort)
            assert [item for page in pages for item in page] == want, (timeframe, sort)


async def test_csv_is_streamed_with_the_same_rows(
    api: ApiServer, http: httpx.AsyncClient, unique_symbol: Callable[[], str]
) -> None:
    symbol = unique_symbol()
    rows = [
        quote(symbol, day_ns(DAY, 14) + n * 7_000_001, bid=100 + n / 100, conditions=("R", "@")) for n in range(3000)
    ]
    await insert_events(api.app.state.api.settings.database_url, rows)
    async with http.stream("GET", f"/quotes/{symbol}", headers={"Accept": "text/csv"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "content-length" not in response.headers  # streamed, not built in memory
        chunks = [chunk async for chunk in response.aiter_raw()]
    assert len(chunks) > 1
    table = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert len(table) == len(rows)  # no limit: the whole range
    first = rows[0]
    assert table[0] == {
        "symbol": symbol,
        "time": format_rfc3339_ns(first.timestamp),
        "bid_exchange": "V",
        "bid_price": "100",
        "bid_size": "100",
        "ask_exchange": "N",
        "ask_price": "100.01",
        "ask_size": "101",
        "conditions": '["R","@"]',
        "tape": "C",
    }
    assert [float(row["bid_price"]) for row in table] == [q.bid_price for q in rows]

    # With a limit, pages continue through the Next-Page-Token header, as JSON pages do.
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"limit": 1000, "sort": "desc", **({"page_token": token} if token else {})}
        response = await http.get(f"/quotes/{symbol}", params=params, headers={"Accept": "text/csv"})
        seen += [row["time"] for row in csv.DictReader(io.StringIO(response.text))]
        token = response.headers.get("next-page-token")
        if token is None:
            break
    assert seen == [format_rfc3339_ns(q.timestamp) for q in reversed(rows)]

    bars_csv = await http.get(f"/bars/{symbol}", params={"timeframe": "5Min"}, headers={"Accept": "text/csv"})
    assert bars_csv.text.splitlines() == ["symbol,time,open,high,low,close,volume,vwap,trade_count"]


async def test_latest_prefers_redis_snapshots_then_postgres(
    api: ApiServer, http: httpx.AsyncClient, redis_client: redis.asyncio.Redis, unique_symbol: Callable[[], str]
) -> None:
    live, stored, unknown = unique_symbol(), unique_symbol(), unique_symbol()
    stored_quotes = [quote(stored, day_ns(DAY, 14, m), bid=50 + m) for m in range(3)]
    live_quote = quote(live, day_ns(NEXT, 1), bid=77.5)
    await insert_events(api.app.state.api.settings.database_url, [*stored_quotes, quote(live, day_ns(DAY, 1))])
    await publish(redis_client, live_quote, snapshot=True)
    try:
        body = (await http.get("/quotes/latest", params={"symbols": f"{live},{stored.lower()},{unknown}"})).json()
        assert body == {"quotes": {live: q_json(live_quote), stored: q_json(stored_quotes[-1])}}

        # latest:bars may hold a daily bar; /bars/latest serves minute bars, so it reads PostgreSQL then.
        minute = bar(live, day_ns(DAY, 14), 10, 11)
        daily = DailyBar(symbol=live, timestamp=day_ns(DAY, 5), open=1, high=2, low=0.5, close=1.5, volume=9)
        await insert_events(api.app.state.api.settings.database_url, [minute])
        await redis_client.hset(latest_hash("bars"), live, encode_live(daily))
        bars = (await http.get("/bars/latest", params={"symbols": live})).json()["bars"]
        assert bars[live]["t"] == format_rfc3339_ns(minute.timestamp)

        trades = (await http.get("/trades/latest", params={"symbols": unknown})).json()
        assert trades == {"trades": {}}
    finally:
        await redis_client.hdel(latest_hash("quotes"), live)
        await redis_client.hdel(latest_hash("bars"), live)


async def test_symbols_lists_stored_and_live(
    api: ApiServer, http: httpx.AsyncClient, redis_client: redis.asyncio.Redis, unique_symbol: Callable[[], str]
) -> None:
    stored, live = unique_symbol(), unique_symbol()
    await insert_events(api.app.state.api.settings.database_url, [trade(stored, day_ns(DAY, 15), 1)])
    await redis_client.hset(latest_hash("quotes"), live, encode_live(quote(live, day_ns(DAY, 15))))
    try:
        api.app.state.api.symbols_cache = (0.0, {})
        symbols = (await http.get("/symbols")).json()["symbols"]
        assert stored in symbols and live in symbols
        assert symbols == sorted(symbols)
    finally:
        await redis_client.hdel(latest_hash("quotes"), live)


async def test_request_latency_is_measured_by_route(http: httpx.AsyncClient, unique_symbol: Callable[[], str]) -> None:
    await http.get(f"/quotes/{unique_symbol()}")
    await http.get("/quotes/1")
    metrics = (await http.get("/metrics")).text
    assert 'tickpipe_api_request_seconds_count{method="GET",route="/quotes/{symbol}",status="200"}' in metrics
    assert 'route="/quotes/{symbol}",status="422"' in metrics
    assert orjson.loads((await http.get("/healthz")).content) == {"status": "alive"}
    assert (await http.get("/readyz")).json() == {"ready": True, "postgres": "ok", "redis": "ok"}
