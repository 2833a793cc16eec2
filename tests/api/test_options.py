"""The options feed's routes against real PostgreSQL rows and Redis snapshots: the same history code as the
stock and crypto routes (pages, sorts, tokens, CSV, latest), OCC contracts as symbols."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pytest
import redis.asyncio

from tests.helpers.api import ApiServer, all_items, all_pages, api_settings, insert_events, running_api
from tests.helpers.events import day_ns
from tests.helpers.options_live import unique_contract
from tickpipe.codecs import encode_live, event_key, format_rfc3339_ns
from tickpipe.feeds import OPTIONS
from tickpipe.names import latest_hash
from tickpipe.option_events import OptionQuote, OptionTrade

DAY = date(2024, 3, 4)
NEXT = date(2024, 3, 5)


@pytest.fixture
def contract() -> Callable[..., str]:
    """Contracts no other test uses: ``ABCDEF281231C00190000``-like."""
    return unique_contract


def hash_of(family: str) -> str:
    return latest_hash(OPTIONS.word(family))


def trade_json(t: OptionTrade) -> dict[str, Any]:
    return {"t": format_rfc3339_ns(t.timestamp), "x": t.exchange, "p": t.price, "s": t.size, "c": t.condition}


def quote_json(q: OptionQuote) -> dict[str, Any]:
    return {
        "t": format_rfc3339_ns(q.timestamp), "bx": q.bid_exchange, "bp": q.bid_price, "bs": q.bid_size,
        "ax": q.ask_exchange, "ap": q.ask_price, "as": q.ask_size, "c": q.condition,
    }  # fmt: skip


def key_order(event: OptionTrade | OptionQuote) -> tuple[int, int]:
    """The order of a page: time, then the content hash that keys a row (OPRA gives no trade id)."""
    return event.timestamp, event_key(event)  # type: ignore[arg-type]


def some_trades(contract: str) -> list[OptionTrade]:
    """Trades over two days, several in one nanosecond (told apart by their content's hash)."""
    out = [
        OptionTrade(symbol=contract, timestamp=day_ns(DAY, 14, m, s), price=4 + m / 10 + s / 1000, size=1 + s // 20,
                    exchange="CNOPQ"[m % 5], condition="I" if s else "S")
        for m in range(4) for s in (0, 20, 40)
    ]  # fmt: skip
    tie = day_ns(DAY, 15)
    out += [OptionTrade(symbol=contract, timestamp=tie, price=5.05, size=n + 1, exchange="C", condition="I")
            for n in range(4)]  # fmt: skip
    out += [OptionTrade(symbol=contract, timestamp=day_ns(NEXT, 14, m), price=3.9, size=10, exchange="X",
                        condition="a") for m in range(5)]  # fmt: skip
    return out


def some_quotes(contract: str) -> list[OptionQuote]:
    at = day_ns(DAY, 20)
    return [
        OptionQuote(symbol=contract, timestamp=at + (n // 3) * 1000 + n % 2, bid_exchange="C", bid_price=1 + n / 100,
                    bid_size=n + 1, ask_exchange="N", ask_price=1.05 + n / 100, ask_size=2 * n + 1, condition="A")
        for n in range(17)
    ]  # fmt: skip


async def test_trades_every_page_in_order(
    api: ApiServer, http: httpx.AsyncClient, contract: Callable[..., str]
) -> None:
    symbol = contract()
    trades = some_trades(symbol)
    await insert_events(api.app.state.api.settings.database_url, trades)
    expected = [trade_json(t) for t in sorted(trades, key=key_order)]
    assert len(expected) == len(trades) == 21

    whole = await http.get(f"/options/trades/{symbol}")
    assert whole.status_code == 200, whole.text
    assert whole.json() == {"trades": expected, "symbol": symbol, "next_page_token": None}
    assert (await http.get(f"/options/trades/{symbol.lower()}")).json() == whole.json()  # any case

    for sort, want in (("asc", expected), ("desc", expected[::-1])):
        for limit in (1, 4, len(trades) - 1, len(trades)):
            pages = await all_pages(http, f"/options/trades/{symbol}", "trades", limit=limit, sort=sort)
            assert [item for page in pages for item in page] == want, (sort, limit)
            assert len(pages) == -(-len(trades) // limit)

    inside = await all_items(http, f"/options/trades/{symbol}", "trades", start="2024-03-05", end="2024-03-05", limit=2)
    assert inside == [trade_json(t) for t in trades if t.timestamp >= day_ns(NEXT)]
    metrics = (await http.get("/metrics")).text
    assert 'route="/options/trades/{symbol}",status="200"' in metrics


async def test_quotes_every_page_in_order(
    api: ApiServer, http: httpx.AsyncClient, contract: Callable[..., str]
) -> None:
    symbol = contract()
    quotes = some_quotes(symbol)
    await insert_events(api.app.state.api.settings.database_url, quotes)
    expected = [quote_json(q) for q in sorted(quotes, key=key_order)]
    for sort, want in (("asc", expected), ("desc", expected[::-1])):
        for limit in (1, 3, len(quotes)):
            items = await all_items(http, f"/options/quotes/{symbol}", "quotes", limit=limit, sort=sort)
            assert items == want, (sort, limit)
    other = await http.get(f"/options/quotes/{contract()}")
    assert other.json() == {"quotes": [], "symbol": other.json()["symbol"], "next_page_token": None}


async def test_csv_of_a_contract(api: ApiServer, http: httpx.AsyncClient, contract: Callable[..., str]) -> None:
    symbol = contract()
    trades, quotes = some_trades(symbol), some_quotes(symbol)
    await insert_events(api.app.state.api.settings.database_url, [*trades, *quotes])
    ordered = sorted(trades, key=key_order)
    response = await http.get(f"/options/trades/{symbol}", headers={"Accept": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.text)))
    first = ordered[0]
    assert table[0] == {
        "symbol": symbol, "time": format_rfc3339_ns(first.timestamp), "exchange": first.exchange,
        "price": f"{first.price:g}", "size": str(first.size), "condition": first.condition,
    }  # fmt: skip
    assert [(row["time"], float(row["price"]), int(row["size"])) for row in table] == [
        (format_rfc3339_ns(t.timestamp), t.price, t.size) for t in ordered
    ]
    seen: list[tuple[str, str]] = []
    token = None
    while True:  # pages through the Next-Page-Token header, as JSON pages do
        params: dict[str, Any] = {"limit": 5, **({"page_token": token} if token else {})}
        page = await http.get(f"/options/trades/{symbol}", params=params, headers={"Accept": "text/csv"})
        seen += [(row["time"], row["size"]) for row in csv.DictReader(io.StringIO(page.text))]
        token = page.headers.get("next-page-token")
        if token is None:
            break
    assert seen == [(format_rfc3339_ns(t.timestamp), str(t.size)) for t in ordered]
    quote_rows = list(csv.DictReader(io.StringIO((await http.get(
        f"/options/quotes/{symbol}", headers={"Accept": "text/csv"})).text)))  # fmt: skip
    assert len(quote_rows) == len(quotes)
    assert list(quote_rows[0]) == [
        "symbol", "time", "bid_exchange", "bid_price", "bid_size", "ask_exchange", "ask_price", "ask_size", "condition",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/options/trades/AAPL", {}, "symbol"),
        ("/options/quotes/AAPL240621X00190000", {}, "symbol"),  # neither C nor P
        ("/options/trades/AAPL240621C0019000", {}, "symbol"),  # a strike of 7 digits
        ("/options/trades/ABCDEFG240621C00190000", {}, "symbol"),  # a root of 7
        ("/options/quotes/%20AAPL240621C00190000", {}, "symbol"),  # a stray space
        ("/options/trades/latest", {"symbols": "AAPL240621C00190000,BTC/USD"}, "symbols"),
        ("/options/quotes/latest", {"symbols": "AAPL"}, "symbols"),
    ],
)
async def test_a_bad_contract_is_a_422_naming_it(
    http: httpx.AsyncClient, path: str, params: dict[str, str], name: str
) -> None:
    response = await http.get(path, params=params)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    want = "expected an OCC option contract like AAPL240621C00190000"
    assert any(e["loc"][-1] == name and want in e["msg"] for e in errors), errors


async def test_the_document_says_what_a_contract_is(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    for route in ("/options/trades/{symbol}", "/options/quotes/{symbol}"):
        (symbol,) = (p for p in paths[route]["get"]["parameters"] if p["name"] == "symbol")
        assert symbol["schema"]["pattern"].startswith("^[A-Za-z][A-Za-z0-9]{0,5}[0-9]{6}[CPcp][0-9]{8}")
    for route in ("/options/trades/latest", "/options/quotes/latest"):
        (symbols,) = paths[route]["get"]["parameters"][:1]
        assert symbols["name"] == "symbols" and "OCC" in symbols["schema"]["description"]


async def test_latest_from_redis_then_postgres(
    api: ApiServer, http: httpx.AsyncClient, redis_client: redis.asyncio.Redis, contract: Callable[..., str]
) -> None:
    live, stored, unknown = contract(), contract("P"), contract()
    database_url = api.app.state.api.settings.database_url
    stored_trades = [OptionTrade(symbol=stored, timestamp=day_ns(DAY, 14, m), price=1 + m, size=m + 1, exchange="C",
                                 condition="I") for m in range(3)]  # fmt: skip
    old_trade = OptionTrade(symbol=live, timestamp=day_ns(DAY, 1), price=1, size=1, exchange="C", condition="I")
    live_trade = OptionTrade(symbol=live, timestamp=day_ns(NEXT, 15), price=7.5, size=2, exchange="N", condition="S")
    stored_quote = OptionQuote(symbol=stored, timestamp=day_ns(DAY, 3), bid_exchange="C", bid_price=1.5, bid_size=4,
                               ask_exchange="X", ask_price=1.75, ask_size=9, condition="A")  # fmt: skip
    live_quote = OptionQuote(symbol=live, timestamp=day_ns(NEXT, 16), bid_exchange="N", bid_price=7.4, bid_size=1,
                             ask_exchange="N", ask_price=7.6, ask_size=2, condition="A")  # fmt: skip
    await insert_events(database_url, [*stored_trades, old_trade, stored_quote])
    # The snapshots as the producer writes them (encode_live of the events).
    await redis_client.hset(hash_of("trades"), live, encode_live(live_trade))  # type: ignore[arg-type]
    await redis_client.hset(hash_of("quotes"), live, encode_live(live_quote))  # type: ignore[arg-type]
    try:
        symbols = f"{live},{stored.lower()},{unknown}"
        trades = await http.get("/options/trades/latest", params={"symbols": symbols})
        assert trades.status_code == 200, trades.text
        assert trades.json() == {"trades": {live: trade_json(live_trade), stored: trade_json(stored_trades[-1])}}
        quotes = (await http.get("/options/quotes/latest", params={"symbols": symbols})).json()
        assert quotes == {"quotes": {live: quote_json(live_quote), stored: quote_json(stored_quote)}}
        assert list(quotes["quotes"]) == [live, stored]  # in the order asked
    finally:
        await redis_client.hdel(hash_of("trades"), live)
        await redis_client.hdel(hash_of("quotes"), live)


async def test_stock_routes_take_no_contract_and_option_routes_no_ticker(
    http: httpx.AsyncClient, contract: Callable[..., str]
) -> None:
    assert (await http.get("/options/trades/AAPL")).status_code == 422
    # A contract is a valid ticker shape too long for one (at most 16 characters): the stock route refuses it.
    assert (await http.get(f"/trades/{contract()}")).status_code == 422


async def test_symbols_lists_option_contracts_when_the_options_feed_runs(
    api: ApiServer, http: httpx.AsyncClient, migrated_db: str, redis_url: str, contract: Callable[..., str]
) -> None:
    """Stored, live (a snapshot hash) and run-time (the producer's set) contracts under ``options``; the stock
    list stays ``symbols``; without options in ALPACA_FEEDS, no ``options`` key."""
    stored, live, listed = contract(), contract("P"), contract()
    await insert_events(migrated_db, [some_trades(stored)[0]])
    client = redis.asyncio.from_url(redis_url)
    quote = some_quotes(live)[0]
    try:
        await client.hset(hash_of("quotes"), live, encode_live(quote))  # type: ignore[arg-type]
        await client.sadd("tickpipe:symbols:options", listed, "NOT A CONTRACT")
        async with (
            running_api(api_settings(migrated_db, redis_url, alpaca_feeds="stocks,options")) as server,
            httpx.AsyncClient(base_url=server.url) as options_http,
        ):
            body = (await options_http.get("/symbols")).json()
        assert set(body) == {"symbols", "options"}
        assert {stored, live, listed} <= set(body["options"]) and body["options"] == sorted(body["options"])
        assert "NOT A CONTRACT" not in body["options"] and not {stored, live, listed} & set(body["symbols"])
        api.app.state.api.symbols_cache = (0.0, {})
        assert set((await http.get("/symbols")).json()) == {"symbols"}, "expected no options key without the feed"
    finally:
        await client.hdel(hash_of("quotes"), live)
        await client.srem("tickpipe:symbols:options", listed, "NOT A CONTRACT")
        await client.aclose()
