"""The crypto feed's routes against real PostgreSQL rows and Redis snapshots: the same history code as the
stock routes (pages, sorts, tokens, timeframes, CSV, latest), pairs with a slash in the path."""

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

from producer.live_sink import Books
from tests.api.test_validation import closed_port
from tests.helpers.api import ApiServer, all_items, all_pages, api_settings, insert_events, running_api
from tests.helpers.consumers import NS
from tests.helpers.events import day_ns
from tickpipe.codecs import encode_live, event_key, format_rfc3339_ns
from tickpipe.crypto_events import BookLevel, CryptoBar, CryptoDailyBar, CryptoOrderbook, CryptoQuote, CryptoTrade
from tickpipe.feeds import CRYPTO
from tickpipe.names import latest_hash

DAY = date(2024, 3, 4)
NEXT = date(2024, 3, 5)
MINUTE = 60 * NS


@pytest.fixture
def unique_pair(unique_symbol: Callable[[], str]) -> Callable[[], str]:
    """Pairs no other test uses: ``ABCDEFGH/USD``."""
    return lambda: f"{unique_symbol()}/USD"


def hash_of(family: str) -> str:
    return latest_hash(CRYPTO.word(family))


def trade_json(t: CryptoTrade) -> dict[str, Any]:
    return {"t": format_rfc3339_ns(t.timestamp), "p": t.price, "s": t.size, "tks": t.taker_side, "i": t.trade_id}


def quote_json(q: CryptoQuote) -> dict[str, Any]:
    return {
        "t": format_rfc3339_ns(q.timestamp),
        "bp": q.bid_price,
        "bs": q.bid_size,
        "ap": q.ask_price,
        "as": q.ask_size,
    }


def some_trades(pair: str) -> list[CryptoTrade]:
    """Trades over two days, several in one nanosecond (told apart by id), fractional sizes."""
    out = [
        CryptoTrade(symbol=pair, timestamp=day_ns(DAY, 14, m, s), price=65_000 + m + s / 100, size=0.0125 * (s + 1),
                    trade_id=1000 + 3 * m + s // 20, taker_side="S" if s == 20 else "B")
        for m in range(4) for s in (0, 20, 40)
    ]  # fmt: skip
    tie = day_ns(DAY, 15)
    out += [
        CryptoTrade(symbol=pair, timestamp=tie, price=65_100, size=0.5, trade_id=5 - n, taker_side="S")
        for n in range(4)
    ]
    out += [CryptoTrade(symbol=pair, timestamp=day_ns(NEXT, 2, m), price=64_900, size=1.25, trade_id=2000 + m,
                        taker_side="B") for m in range(5)]  # fmt: skip
    return out


async def test_trades_every_page_in_order_for_a_pair_with_a_slash(
    api: ApiServer, http: httpx.AsyncClient, unique_pair: Callable[[], str]
) -> None:
    pair = unique_pair()
    trades = some_trades(pair)
    await insert_events(api.app.state.api.settings.database_url, trades)
    expected = [trade_json(t) for t in sorted(trades, key=lambda t: (t.timestamp, t.trade_id))]

    whole = await http.get(f"/crypto/trades/{pair}")
    assert whole.status_code == 200, whole.text
    assert whole.json() == {"trades": expected, "symbol": pair, "next_page_token": None}
    encoded = await http.get(f"/crypto/trades/{pair.lower().replace('/', '%2F')}")  # BTC%2FUSD, any case
    assert encoded.json() == whole.json()

    for sort, want in (("asc", expected), ("desc", expected[::-1])):
        for limit in (1, 4, len(trades) - 1, len(trades)):
            pages = await all_pages(http, f"/crypto/trades/{pair}", "trades", limit=limit, sort=sort)
            assert [item for page in pages for item in page] == want, (sort, limit)
            assert len(pages) == -(-len(trades) // limit)

    inside = await all_items(http, f"/crypto/trades/{pair}", "trades", start="2024-03-05", end="2024-03-05", limit=2)
    assert inside == [trade_json(t) for t in trades if t.timestamp >= day_ns(NEXT)]
    metrics = (await http.get("/metrics")).text
    assert 'route="/crypto/trades/{symbol}",status="200"' in metrics  # the template, as the document writes it


async def test_quotes_pages_order_ties_by_event_key(
    api: ApiServer, http: httpx.AsyncClient, unique_pair: Callable[[], str]
) -> None:
    pair = unique_pair()
    at = day_ns(DAY, 20)
    quotes = [
        CryptoQuote(symbol=pair, timestamp=at + (n // 3) * 1000 + n % 2, bid_price=65_000 + n, bid_size=0.1 * n,
                    ask_price=65_001 + n, ask_size=0.25 + n)
        for n in range(17)
    ]  # fmt: skip
    await insert_events(api.app.state.api.settings.database_url, quotes)
    expected = [quote_json(q) for q in sorted(quotes, key=lambda q: (q.timestamp, event_key(q)))]  # type: ignore[arg-type]
    for sort, want in (("asc", expected), ("desc", expected[::-1])):
        assert await all_items(http, f"/crypto/quotes/{pair}", "quotes", limit=3, sort=sort) == want


async def test_bars_aggregate_on_us_central_days(
    api: ApiServer, http: httpx.AsyncClient, unique_pair: Callable[[], str]
) -> None:
    pair = unique_pair()
    # Minute bars 05:50 .. 06:09 UTC on DAY: midnight in Chicago (CST, UTC-6) is 06:00 UTC.
    minutes = [day_ns(DAY, 5, 50) + n * MINUTE for n in range(20)]
    bars = [
        CryptoBar(symbol=pair, timestamp=ns, open=100 + n, high=101 + n, low=99 + n, close=100.5 + n,
                  volume=0.5 + n / 8, vwap=100.25 + n, trade_count=3)
        for n, ns in enumerate(minutes)
    ]  # fmt: skip
    daily = CryptoDailyBar(symbol=pair, timestamp=day_ns(DAY, 6), open=1, high=2, low=0.5, close=1.5, volume=9)
    await insert_events(api.app.state.api.settings.database_url, [*bars, daily])

    minute_bars = await all_items(http, f"/crypto/bars/{pair}", "bars", limit=7)
    assert len(minute_bars) == 20  # the stored daily bar is no minute bar
    assert minute_bars[1] == {
        "t": format_rfc3339_ns(minutes[1]), "o": 101.0, "h": 102.0, "l": 100.0, "c": 101.5, "v": 0.625, "n": 3,
        "vw": 101.25,
    }  # fmt: skip

    def expected(chosen: list[CryptoBar], t: int) -> dict[str, Any]:
        volume = sum(b.volume for b in chosen)
        return {
            "t": format_rfc3339_ns(t), "o": chosen[0].open, "h": max(b.high for b in chosen),
            "l": min(b.low for b in chosen), "c": chosen[-1].close, "v": pytest.approx(volume),
            "n": 3 * len(chosen), "vw": pytest.approx(sum(b.vwap * b.volume for b in chosen) / volume),
        }  # fmt: skip

    days = (await http.get(f"/crypto/bars/{pair}", params={"timeframe": "1Day"})).json()["bars"]
    assert days == [expected(bars[:10], day_ns(DAY - (NEXT - DAY), 6)), expected(bars[10:], day_ns(DAY, 6))]
    assert isinstance(days[0]["v"], float)
    for timeframe in ("5Min", "1Hour", "1Day"):
        full = (await http.get(f"/crypto/bars/{pair}", params={"timeframe": timeframe})).json()["bars"]
        for sort, want in (("asc", full), ("desc", full[::-1])):
            paged = await all_items(http, f"/crypto/bars/{pair}", "bars", timeframe=timeframe, limit=1, sort=sort)
            assert paged == want, (timeframe, sort)


async def test_csv_of_a_pair(api: ApiServer, http: httpx.AsyncClient, unique_pair: Callable[[], str]) -> None:
    pair = unique_pair()
    trades = some_trades(pair)
    await insert_events(api.app.state.api.settings.database_url, trades)
    ordered = sorted(trades, key=lambda t: (t.timestamp, t.trade_id))
    response = await http.get(f"/crypto/trades/{pair}", headers={"Accept": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "/" not in response.headers["content-disposition"].split("filename=")[1]
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert table[0] == {
        "symbol": pair, "time": format_rfc3339_ns(ordered[0].timestamp), "trade_id": str(ordered[0].trade_id),
        "price": "65000", "size": "0.0125", "taker_side": "B",
    }  # fmt: skip
    assert [(row["time"], int(row["trade_id"]), float(row["size"])) for row in table] == [
        (format_rfc3339_ns(t.timestamp), t.trade_id, t.size) for t in ordered
    ]
    seen: list[str] = []
    token = None
    while True:  # pages through the Next-Page-Token header, as JSON pages do
        params: dict[str, Any] = {"limit": 5, **({"page_token": token} if token else {})}
        page = await http.get(f"/crypto/trades/{pair}", params=params, headers={"Accept": "text/csv"})
        seen += [row["trade_id"] for row in csv.DictReader(io.StringIO(page.text))]
        token = page.headers.get("next-page-token")
        if token is None:
            break
    assert seen == [str(t.trade_id) for t in ordered]
    bars = await http.get(f"/crypto/bars/{pair}", params={"timeframe": "1Day"}, headers={"Accept": "text/csv"})
    assert bars.text.splitlines() == ["symbol,time,open,high,low,close,volume,vwap,trade_count"]


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/crypto/trades/BTCUSD", {}, "symbol"),
        ("/crypto/quotes/BTC/USD/EUR", {}, "symbol"),
        ("/crypto/bars/BTC-USD", {}, "symbol"),
        ("/crypto/quotes/BTC%2F", {}, "symbol"),
        ("/crypto/quotes/BTC/USD%0A", {}, "symbol"),  # a newline: refused by the check, not unrouted (404)
        ("/crypto/trades/%0A", {}, "symbol"),
        ("/crypto/quotes/latest", {"symbols": "BTC/USD,ETH"}, "symbols"),
        ("/crypto/orderbooks/latest", {"symbols": "BTC/USD/X"}, "symbols"),
    ],
)
async def test_a_bad_pair_is_a_422_naming_it(
    http: httpx.AsyncClient, path: str, params: dict[str, str], name: str
) -> None:
    response = await http.get(path, params=params)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][-1] == name and "expected a crypto pair like BTC/USD" in e["msg"] for e in errors), errors


async def test_stock_routes_take_no_pair_and_crypto_no_ticker(http: httpx.AsyncClient) -> None:
    assert (await http.get("/crypto/trades/AAPL")).status_code == 422
    assert (await http.get("/trades/BTC/USD")).status_code == 404  # a stock symbol is one path segment


async def test_latest_from_redis_then_postgres(
    api: ApiServer, http: httpx.AsyncClient, redis_client: redis.asyncio.Redis, unique_pair: Callable[[], str]
) -> None:
    live, stored, unknown = unique_pair(), unique_pair(), unique_pair()
    database_url = api.app.state.api.settings.database_url
    stored_trades = [CryptoTrade(symbol=stored, timestamp=day_ns(DAY, 14, m), price=10 + m, size=0.5, trade_id=m,
                                 taker_side="S") for m in range(3)]  # fmt: skip
    live_trade = CryptoTrade(symbol=live, timestamp=day_ns(NEXT, 1), price=77.5, size=0.001, trade_id=9, taker_side="B")
    old_trade = CryptoTrade(symbol=live, timestamp=day_ns(DAY, 1), price=1, size=1, trade_id=1, taker_side="B")
    stored_quote = CryptoQuote(symbol=stored, timestamp=day_ns(DAY, 3), bid_price=1.5, bid_size=2.5, ask_price=1.75,
                               ask_size=0.125)  # fmt: skip
    await insert_events(database_url, [*stored_trades, old_trade, stored_quote])
    minute = CryptoBar(symbol=live, timestamp=day_ns(DAY, 14), open=1, high=2, low=0.5, close=1.5, volume=0.75)
    daily = CryptoDailyBar(symbol=live, timestamp=day_ns(DAY, 6), open=1, high=3, low=0.5, close=2, volume=9.5)
    await insert_events(database_url, [minute])
    await redis_client.hset(hash_of("trades"), live, encode_live(live_trade))  # type: ignore[arg-type]
    await redis_client.hset(hash_of("bars"), live, encode_live(daily))  # type: ignore[arg-type]
    try:
        body = (
            await http.get("/crypto/trades/latest", params={"symbols": f"{live},{stored.lower()},{unknown}"})
        ).json()
        assert body == {"trades": {live: trade_json(live_trade), stored: trade_json(stored_trades[-1])}}
        quotes = (await http.get("/crypto/quotes/latest", params={"symbols": f"{stored},{live}"})).json()
        assert quotes == {"quotes": {stored: quote_json(stored_quote)}}
        # The hash holds a daily bar; the route serves minute bars, so it reads PostgreSQL then.
        bars = (await http.get("/crypto/bars/latest", params={"symbols": live})).json()["bars"]
        assert bars == {
            live: {"t": format_rfc3339_ns(minute.timestamp), "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 0.75,
                   "n": 0, "vw": 0.0}
        }  # fmt: skip
    finally:
        await redis_client.hdel(hash_of("trades"), live)
        await redis_client.hdel(hash_of("bars"), live)


async def test_orderbooks_latest_is_the_whole_book_of_the_snapshot(
    http: httpx.AsyncClient, redis_client: redis.asyncio.Redis, unique_pair: Callable[[], str]
) -> None:
    pair, other, unknown = unique_pair(), unique_pair(), unique_pair()
    books = Books()  # the producer's own: the hash holds what it writes
    snapshot = CryptoOrderbook(
        symbol=pair, timestamp=day_ns(DAY, 14), reset=True,
        bids=(BookLevel(99.5, 1.0), BookLevel(100.0, 0.5)), asks=(BookLevel(100.5, 0.25), BookLevel(101.0, 2.0)),
    )  # fmt: skip
    update = CryptoOrderbook(
        symbol=pair, timestamp=day_ns(DAY, 14) + 123, bids=(BookLevel(99.5, 0.0), BookLevel(99.75, 3.0)),
        asks=(BookLevel(100.25, 0.125),),
    )  # fmt: skip
    for message in (snapshot, update, CryptoOrderbook(symbol=other, timestamp=day_ns(DAY, 15), reset=True)):
        books.apply(encode_live(message))  # type: ignore[arg-type]
    whole, empty = books.full(pair), books.full(other)
    assert whole is not None and empty is not None
    await redis_client.hset(hash_of("orderbooks"), mapping={pair: whole, other: empty})
    try:
        response = await http.get("/crypto/orderbooks/latest", params={"symbols": f"{pair},{unknown},{other}"})
        assert response.status_code == 200, response.text
        assert response.json() == {
            "orderbooks": {
                pair: {
                    "t": format_rfc3339_ns(update.timestamp),
                    "b": [{"p": 100.0, "s": 0.5}, {"p": 99.75, "s": 3.0}],
                    "a": [{"p": 100.25, "s": 0.125}, {"p": 100.5, "s": 0.25}, {"p": 101.0, "s": 2.0}],
                },
                other: {"t": format_rfc3339_ns(day_ns(DAY, 15)), "b": [], "a": []},
            }
        }
        assert list(response.json()["orderbooks"]) == [pair, other]  # in the order asked
    finally:
        await redis_client.hdel(hash_of("orderbooks"), pair, other)


async def test_orderbooks_latest_without_redis_is_a_503_saying_so(clean_db: str) -> None:
    async with (
        running_api(api_settings(clean_db, f"redis://127.0.0.1:{closed_port()}/0")) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        response = await client.get("/crypto/orderbooks/latest", params={"symbols": "BTC/USD"})
        assert response.status_code == 503
        assert "Redis is unavailable" in response.json()["detail"]
        # The other latest routes still answer from PostgreSQL.
        trades = await client.get("/crypto/trades/latest", params={"symbols": "BTC/USD"})
        assert trades.status_code == 200 and orjson.loads(trades.content) == {"trades": {}}
