"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

Against a running API (the real app under uvicorn on a free port, over the
session's PostgreSQL and Redis): minute bars stored in PostgreSQL as the
consumers store them, quotes, trades and bars published on the Redis channels
and snapshot hashes as the producer publishes them. The page must show the
published prices in its watchlist, draw the stored bars as candles and extend
them with the live bar, and say that the producer and consumers are not
running (none are, here). A second test restarts the API under the open page:
it must say so, reconnect with backoff, subscribe again and reload the chart.
A screenshot is saved under the test's tmp folder, and also to
``$TICKPIPE_SCREENSHOT`` when that is set.

Skipped, with the reason, when Chromium or Playwright is not installed; the
browser is Debian's (``apt-get install chromium``), never one Playwright
downloads.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import orjson
import pytest
import redis.asyncio
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api.main import create_app
from simulator.orders import OrderFlow
from tests.helpers.api import insert_events
from tests.helpers.crypto_live import crypto_book, crypto_live, crypto_quote, unique_pair
from tests.helpers.keys import add_key, key_headers
from tests.helpers.news_live import news_live, story, unique_ticker
from tests.helpers.options_live import option_quote, option_trade, options_live, unique_contract
from tickpipe import db
from tickpipe.codecs import encode_live
from tickpipe.dev.processes import free_port
from tickpipe.events import Bar, Event, Quote, Trade
from tickpipe.feeds import CRYPTO, OPTIONS
from tickpipe.health import Publisher, Reading
from tickpipe.names import SYMBOLS_KEY, channel, latest_hash, qualified
from tickpipe.news_events import NewsStory
from tickpipe.option_events import OptionTrade
from tickpipe.rows import COLUMNS, to_row
from tickpipe.service import Uvicorn
from tickpipe.settings import load_settings
from tickpipe.trading_wire import decode_update

CHROMIUM = Path(os.environ.get("TICKPIPE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TIMEOUT_MS = 20_000
HISTORY_BARS = 90
UP_RGB = (38, 166, 154)  # the chart's candle colours (api/static/chart.js)
DOWN_RGB = (239, 83, 80)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TICKPIPE_CHROMIUM)"
)
async_api = pytest.importorskip("playwright.async_api", reason="Playwright for Python is not installed")


class DashboardServer:
    """The API app under uvicorn in this loop, on one port it keeps across a restart (as a redeploy would)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self._server: Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        server = self._server = Uvicorn(uvicorn.Config(self.app, log_level="warning", access_log=False))
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        await server.wait_started(self._task)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None


@pytest.fixture
async def api(migrated_db: str, redis_url: str, topic_prefix: str) -> AsyncIterator[DashboardServer]:
    """The API over the session's PostgreSQL and Redis; the producer and consumers are not running.

    Its own topic prefix, so its health namespace holds no other test's (or earlier run's) instances:
    the status strip must show exactly what this test set up.
    """
    settings = load_settings(
        database_url=migrated_db,
        redis_url=redis_url,
        kafka_topic_prefix=topic_prefix,
        producer_admin_port=free_port(),
        consumer_admin_port=free_port(),
    )
    app: FastAPI = create_app(settings, registry=CollectorRegistry())  # /status included (api/main.py)
    server = DashboardServer(app)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium, headless, with nothing that reaches out to the network by itself."""
    async with async_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A page at ``url`` and the list its script errors and console errors go to."""
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(url)
    return page, errors


def minute_bars(symbol: str, last_minute: datetime, count: int) -> list[Bar]:
    """``count`` minute bars ending at ``last_minute``: a deterministic zig-zag walk around 100."""
    bars = []
    price = 100.0
    for n in range(count):
        at = last_minute - timedelta(minutes=count - 1 - n)
        step = 0.35 if (n // 7) % 2 == 0 else -0.3
        close = round(price + step + (0.1 if n % 3 == 0 else -0.05), 2)
        high, low = max(price, close) + 0.12, min(price, close) - 0.1
        bars.append(
            Bar(symbol=symbol, timestamp=ns(at), open=price, high=round(high, 2), low=round(low, 2), close=close,
                volume=1_000 + 37 * (n % 11), vwap=round((high + low + close) / 3, 4), trade_count=10 + n % 5)
        )  # fmt: skip
        price = close
    return bars


def ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


async def store_bars(database_url: str, bars: list[Bar]) -> None:
    conn = await asyncpg.connect(db.asyncpg_dsn(database_url))
    try:
        days = {datetime.fromtimestamp(bar.timestamp // 10**9, UTC).date() for bar in bars}
        await db.ensure_partitions(conn, days, ["bars"])
        await conn.copy_records_to_table("bars", records=[to_row(bar) for bar in bars], columns=COLUMNS["bars"])
    finally:
        await conn.close()


def quote(symbol: str, bid: float, ask: float, when: int) -> Quote:
    return Quote(symbol=symbol, timestamp=when, bid_exchange="V", bid_price=bid, bid_size=3, ask_exchange="Q",
                 ask_price=ask, ask_size=2, conditions=("R",), tape="C")  # fmt: skip


async def publish(client: redis.asyncio.Redis, events: list[Event]) -> None:
    """As the producer's live path does: the snapshot hash, then the channel."""
    for event in events:
        payload = encode_live(event)
        await client.hset(latest_hash(event.family), event.symbol, payload)
        await client.publish(channel(event.family, event.symbol), payload)


async def test_dashboard_shows_live_quotes_and_draws_the_chart(
    api: DashboardServer,
    browser: Any,
    migrated_db: str,
    redis_client: redis.asyncio.Redis,
    unique_symbol: Callable[[], str],
    tmp_path: Path,
) -> None:
    charted, other, snapshotted = unique_symbol(), unique_symbol(), unique_symbol()
    last_minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    history = minute_bars(charted, last_minute, HISTORY_BARS)
    await store_bars(migrated_db, history)
    now = time.time_ns()
    # Known before the page opens: it must come first on subscribe (the snapshot).
    await redis_client.hset(latest_hash("quotes"), snapshotted, encode_live(quote(snapshotted, 41.5, 41.56, now)))

    page, errors = await open_page(browser, f"{api.url}/?symbols={charted},{other},{snapshotted}&chart={charted}")
    # Connected, authenticated, subscribed (the server acknowledges after Redis has subscribed),
    # and the history drawn.
    await wait_for(
        page,
        """([charted, symbols]) => {
            const s = window.__tickpipe;
            return s && s.state === "live" && s.barsLoaded !== null && s.subscribed
                && symbols.every((sym) => s.subscribed.quotes.includes(sym))
                && s.subscribed.bars.includes(charted);
        }""",
        arg=[charted, [charted, other, snapshotted]],
    )
    stats = await page.evaluate("window.__tickpipe")
    assert stats["barsLoaded"] == HISTORY_BARS, stats
    assert stats["chartSymbol"] == charted
    assert await cell_text(page, snapshotted, "bid") == "41.50 ×3"

    live_bar_at = last_minute + timedelta(minutes=1)
    last_close = history[-1].close
    live_bar = Bar(
        symbol=charted, timestamp=ns(live_bar_at), open=last_close, high=round(last_close + 0.6, 2),
        low=round(last_close - 0.1, 2), close=round(last_close + 0.5, 2), volume=2_400, vwap=last_close,
        trade_count=30,
    )  # fmt: skip
    await publish(redis_client, [
        quote(charted, 101.25, 101.27, now + 1),
        quote(other, 7.5, 7.52, now + 2),
        Trade(symbol=charted, timestamp=now + 3, trade_id=1, exchange="V", price=101.26, size=100,
              conditions=("@",), tape="C"),
        live_bar,
    ])  # fmt: skip
    await wait_for(
        page,
        """([charted, other, time]) => {
            const text = (sym, cls) =>
                document.querySelector(`#watchlist tr[data-symbol="${sym}"] td.${cls}`)?.textContent;
            return text(charted, "bid") === "101.25 ×3" && text(charted, "ask") === "101.27 ×2"
                && text(charted, "spread") === "0.02" && text(charted, "last") === "101.26 ×100"
                && text(other, "bid") === "7.50 ×3" && window.__tickpipe.lastBarTime === time;
        }""",
        arg=[charted, other, int(live_bar_at.timestamp())],
    )
    assert await page.evaluate("window.__tickpipe.quotes") >= 3

    # The candles are on a canvas: pixels of both candle colours, the live bar's among them.
    found = await page.evaluate(COUNT_CANDLE_PIXELS, [list(UP_RGB), list(DOWN_RGB)])
    assert found["canvases"] >= 1 and found["up"] > 0 and found["down"] > 0, found

    # The status strip answered, and says the producer and consumers are not running.
    await wait_for(page, "window.__tickpipe.status !== null")
    parts = await page.locator("#st-parts .part").all_text_contents()
    assert sorted(parts) == ["consumers", "producer"]
    assert await page.locator("#st-parts .part.down").count() == 2

    # Clicking a row charts that symbol (no bars stored for it: an empty chart and a note).
    await page.click(f'#watchlist tr[data-symbol="{other}"] td.symbol')
    await wait_for(
        page,
        "(sym) => window.__tickpipe.chartSymbol === sym && window.__tickpipe.barsLoaded === 0",
        arg=other,
    )
    assert "no bars stored yet" in await page.locator("#chart-note").text_content()
    await page.click(f'#watchlist tr[data-symbol="{charted}"] td.symbol')
    # Its history again, and the live bar again from the snapshot that comes first on subscribe.
    await wait_for(
        page,
        "([n, time]) => window.__tickpipe.barsLoaded === n && window.__tickpipe.lastBarTime === time",
        arg=[HISTORY_BARS, int(live_bar_at.timestamp())],
    )

    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    if target := os.environ.get("TICKPIPE_SCREENSHOT"):
        shutil.copyfile(shot, target)
    assert errors == []


async def test_dashboard_reconnects_when_the_api_restarts(
    api: DashboardServer,
    browser: Any,
    migrated_db: str,
    redis_client: redis.asyncio.Redis,
    unique_symbol: Callable[[], str],
) -> None:
    symbol = unique_symbol()
    last_minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    await store_bars(migrated_db, minute_bars(symbol, last_minute - timedelta(minutes=1), 5))
    page, errors = await open_page(browser, f"{api.url}/?symbols={symbol}&chart={symbol}")
    subscribed = """(sym) => window.__tickpipe.state === "live" && window.__tickpipe.barsLoaded !== null
        && (window.__tickpipe.subscribed?.quotes ?? []).includes(sym)"""
    await wait_for(page, subscribed, arg=symbol)
    assert await page.evaluate("window.__tickpipe.barsLoaded") == 5

    await api.stop()
    await wait_for(page, "() => window.__tickpipe.state === 'waiting'")
    assert await page.locator("#conn").get_attribute("data-state") == "waiting"
    # A bar stored while the page was cut off: the chart reloads its history on reconnecting.
    await store_bars(migrated_db, minute_bars(symbol, last_minute, 6)[-1:])
    await api.start()

    await wait_for(page, f"(sym) => ({subscribed})(sym) && window.__tickpipe.reconnects === 1", arg=symbol)
    await wait_for(page, "() => window.__tickpipe.barsLoaded === 6")
    await publish(redis_client, [quote(symbol, 12.5, 12.52, time.time_ns())])
    await wait_for(page, CELL_SHOWS, arg=[symbol, "bid", "12.50 ×3"])
    assert await page.locator("#conn").text_content() == "live"
    # The browser logs the refused connections while the API was down; nothing else went wrong.
    assert [e for e in errors if "ERR_CONNECTION_REFUSED" not in e and "WebSocket" not in e] == []


async def wait_for(page: Any, condition: str, *, arg: Any = None, timeout: int = TIMEOUT_MS) -> None:
    """Wait until ``condition`` (a JS function of ``arg``) holds in the page; on a timeout, say what the page saw."""
    try:
        await page.wait_for_function(condition, arg=arg, timeout=timeout)
    except async_api.TimeoutError:
        seen = await page.evaluate("JSON.stringify(window.__tickpipe)")
        rows = await page.locator("#watchlist tbody tr").all_inner_texts()
        raise AssertionError(f"not within {timeout} ms: {condition}\npage state: {seen}\nwatchlist: {rows}") from None


async def cell_text(page: Any, symbol: str, column: str) -> str | None:
    text: str | None = await page.locator(f'#watchlist tr[data-symbol="{symbol}"] td.{column}').text_content()
    return text


CELL_SHOWS = """([symbol, column, text]) =>
    document.querySelector(`#watchlist tr[data-symbol="${symbol}"] td.${column}`)?.textContent === text"""

COUNT_CANDLE_PIXELS = """([up, down]) => {
    const near = (data, i, rgb) => Math.abs(data[i] - rgb[0]) < 8 && Math.abs(data[i + 1] - rgb[1]) < 8
        && Math.abs(data[i + 2] - rgb[2]) < 8 && data[i + 3] > 200;
    const found = { canvases: 0, up: 0, down: 0 };
    for (const canvas of document.querySelectorAll("#chart canvas")) {
        if (!canvas.width || !canvas.height) continue;
        found.canvases += 1;
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < data.length; i += 4) {
            if (near(data, i, up)) found.up += 1;
            else if (near(data, i, down)) found.down += 1;
        }
    }
    return found;
}"""


async def offline_page(browser: Any, api_url: str) -> tuple[Any, list[str]]:
    """A page that can reach only the API: every other request is aborted and listed, as if offline."""
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    outside: list[str] = []

    async def only_local(route: Any) -> None:
        if route.request.url.startswith(api_url):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_local)
    return page, outside


async def test_api_docs_render_without_internet(api: DashboardServer, browser: Any) -> None:
    """/docs (Swagger UI) and /redoc load their scripts from the API itself: with every other
    address blocked, Swagger UI draws the operations and ReDoc the document's title."""
    page, outside = await offline_page(browser, api.url)
    await page.goto(f"{api.url}/docs")
    await page.locator(".opblock").first.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert await page.locator(".opblock").count() > 5
    assert outside == []
    await page.goto(f"{api.url}/redoc")
    await page.get_by_role("heading", name="tickpipe API").first.wait_for(state="visible", timeout=TIMEOUT_MS)
    # ReDoc's bundle links its "API docs by Redocly" footer logo from its CDN; nothing else goes out.
    assert set(outside) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, outside


async def test_status_strip_shows_every_instance_and_the_lost_one(
    browser: Any, migrated_db: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    """The strip draws one badge per instance from the health documents in Redis; an expired one as lost."""
    settings = load_settings(database_url=migrated_db, redis_url=redis_url, kafka_topic_prefix=topic_prefix)
    server = DashboardServer(create_app(settings, registry=CollectorRegistry()))
    figures = {"upstream": "streaming", "drops": 2, "dead_letters": 0, "spool_depth": 0}

    def reading(**kw: Any) -> Callable[[], Any]:
        async def read() -> Reading:
            return Reading(ready=True, **kw)

        return read

    alive = [
        Publisher(redis_url, "producer", reading(count=10, figures=figures), prefix=topic_prefix, instance="h-1"),
        Publisher(redis_url, "consumers", reading(count=5, lag=7), prefix=topic_prefix, instance="h-2"),
    ]
    killed = Publisher(redis_url, "consumers", reading(lag=3), prefix=topic_prefix, instance="h-3", ttl=0.2)
    await server.start()
    try:
        for publisher in alive:
            await publisher.start()
        await killed.publish()  # never refreshed: expires, as a SIGKILLed process's document does
        page, errors = await open_page(browser, server.url)
        await page.wait_for_function(
            "document.querySelectorAll('#st-parts .part').length === 3"
            " && document.querySelector('#st-parts .part.lost') !== null",
            timeout=TIMEOUT_MS,
        )
        badges = await page.locator("#st-parts .part").all_text_contents()
        assert badges == ["producer h-1: streaming", "consumers h-2: ready", "consumers h-3: lost"]
        assert await page.locator("#st-parts .part.up").count() == 2
        assert await page.locator("#st-drops").text_content() == "2"
        assert await page.locator("#st-lag").text_content() == "7"  # the lost instance's lag is not counted
        title = await page.locator("#st-parts .part.lost").get_attribute("title")
        assert title is not None and title.startswith("consumers on ") and ": lost" in title
        await page.locator("#status").screenshot(path=str(tmp_path / "status-strip.png"))
        assert [e for e in errors if "/v2/stream" not in e and "WebSocket" not in e] == []
    finally:
        for publisher in [*alive, killed]:
            await publisher.stop()
        await server.stop()


@asynccontextmanager
async def feed_dashboard(
    database_url: str, redis_url: str, topic_prefix: str, feeds: str
) -> AsyncIterator[DashboardServer]:
    """The API with these feeds configured (ALPACA_FEEDS), served for a browser while the block runs."""
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        kafka_topic_prefix=topic_prefix,
        alpaca_feeds=feeds,
        producer_admin_port=free_port(),
        consumer_admin_port=free_port(),
    )
    server = DashboardServer(create_app(settings, registry=CollectorRegistry()))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def crypto_dashboard(migrated_db: str, redis_url: str, topic_prefix: str) -> AsyncIterator[DashboardServer]:
    """The API with the crypto feed configured too (ALPACA_FEEDS=stocks,crypto)."""
    async with feed_dashboard(migrated_db, redis_url, topic_prefix, "stocks,crypto") as server:
        yield server


CRYPTO_CELL = """([pair, column, text]) =>
    document.querySelector(`#crypto-pairs tr[data-pair="${pair}"] td.${column}`)?.textContent === text"""


async def test_dashboard_shows_crypto_quotes_and_the_top_of_each_book(
    crypto_dashboard: DashboardServer, browser: Any, redis_url: str, tmp_path: Path
) -> None:
    btc, eth = unique_pair(), unique_pair()
    now = time.time_ns()
    client = redis.asyncio.Redis.from_url(redis_url)
    listed = qualified(SYMBOLS_KEY, CRYPTO.qualifier)
    await client.sadd(listed, eth)  # the crypto producer lists it: it exists before its first event
    async with crypto_live(redis_url) as live:
        try:
            # Known before the page opens: the whole book and the last quote come first on subscribe.
            await live.publish(
                crypto_book(btc, now, [(60_000.0, 0.5), (59_990.0, 1.25)], [(60_010.0, 0.75)], reset=True),
                crypto_quote(btc, now + 1, bid=60_000.0),
            )
            page, errors = await open_page(browser, f"{crypto_dashboard.url}/?crypto={btc},{eth}")
            await wait_for(
                page,
                """(pairs) => {
                    const c = window.__tickpipe?.crypto;
                    return c && c.state === "live" && c.subscribed
                        && pairs.every((p) => c.subscribed.orderbooks.includes(p) && c.subscribed.quotes.includes(p));
                }""",
                arg=[btc, eth],
            )
            assert await page.locator("#crypto").is_visible()
            for column, text in (
                ("bid", "60000.00 ×0.5"),
                ("ask", "60000.25 ×0.75"),
                ("book-bid", "60000.00 ×0.5"),
                ("book-ask", "60010.00 ×0.75"),
                ("depth", "2 / 1"),
            ):
                await wait_for(page, CRYPTO_CELL, arg=[btc, column, text])
            # Live: a new pair's whole book, then updates that move the top of both books.
            await live.publish(
                crypto_book(eth, now + 2, [(3_500.0, 2.0)], [(3_501.0, 3.0), (3_502.0, 4.0)], reset=True),
                crypto_book(btc, now + 3, [(60_005.0, 0.1), (60_000.0, 0.0)], []),
                crypto_book(eth, now + 4, [], [(3_501.0, 0.0)]),
                crypto_quote(eth, now + 5, bid=3_500.0),
            )
            for pair, column, text in (
                (btc, "book-bid", "60005.00 ×0.1"),
                (btc, "depth", "2 / 1"),
                (eth, "book-ask", "3502.00 ×4"),
                (eth, "depth", "1 / 1"),
                (eth, "bid", "3500.00 ×0.5"),
            ):
                await wait_for(page, CRYPTO_CELL, arg=[pair, column, text])
            stats = await page.evaluate("window.__tickpipe.crypto")
            assert (stats["books"], stats["quotes"]) == (4, 2), stats  # each sent once, nothing else
            await page.screenshot(path=str(tmp_path / "crypto.png"))
            assert errors == []
        finally:
            await client.srem(listed, eth)
            for family in ("quotes", "orderbooks"):
                await client.hdel(latest_hash(CRYPTO.word(family)), btc, eth)
            await client.aclose()


async def test_dashboard_hides_crypto_when_the_api_does_not_carry_it(api: DashboardServer, browser: Any) -> None:
    page, errors = await open_page(browser, f"{api.url}/")
    await wait_for(page, "() => window.__tickpipe?.crypto.state === 'refused'")
    assert "crypto feed is not configured" in await page.evaluate("window.__tickpipe.crypto.detail")
    assert not await page.locator("#crypto").is_visible()
    assert errors == []


@pytest.fixture
async def options_dashboard(migrated_db: str, redis_url: str, topic_prefix: str) -> AsyncIterator[DashboardServer]:
    """The API with the options feed configured too (ALPACA_FEEDS=stocks,options)."""
    async with feed_dashboard(migrated_db, redis_url, topic_prefix, "stocks,options") as server:
        yield server


@pytest.fixture
async def news_dashboard(migrated_db: str, redis_url: str, topic_prefix: str) -> AsyncIterator[DashboardServer]:
    """The API with the news feed configured too (ALPACA_FEEDS=stocks,news)."""
    async with feed_dashboard(migrated_db, redis_url, topic_prefix, "stocks,news") as server:
        yield server


OPTION_CELL = """([contract, column, text]) =>
    document.querySelector(`#option-contracts tr[data-contract="${contract}"] td.${column}`)?.textContent === text"""


async def test_dashboard_shows_the_latest_option_quotes_and_trades(
    options_dashboard: DashboardServer, browser: Any, migrated_db: str, redis_url: str, tmp_path: Path
) -> None:
    """A live contract (its snapshots in Redis, as the options producer keeps them) and a stored one (only
    in PostgreSQL, as after a restart of Redis): both shown, then a new trade and quote replace the live one's."""
    live_contract, stored_contract = unique_contract(), unique_contract("P")
    now = time.time_ns()
    stored = OptionTrade(symbol=stored_contract, timestamp=now - 10**9 * 60, price=0.85, size=7, exchange="X",
                         condition="S")  # fmt: skip
    await insert_events(migrated_db, [stored])
    client = redis.asyncio.Redis.from_url(redis_url)
    async with options_live(redis_url) as live:
        try:
            await live.publish(
                option_quote(live_contract, now, bid=4.15), option_trade(live_contract, now + 1_000_000, price=4.2)
            )
            url = f"{options_dashboard.url}/?options={live_contract},{stored_contract}"
            page, errors = await open_page(browser, url)
            await wait_for(page, "() => window.__tickpipe?.options.state === 'polling'")
            assert await page.locator("#options").is_visible()
            assert await page.evaluate("window.__tickpipe.options.contracts") == [live_contract, stored_contract]
            for contract, column, text in (
                (live_contract, "bid", "4.15 ×12"),
                (live_contract, "ask", "4.25 ×30"),
                (live_contract, "last", "4.20"),
                (live_contract, "size", "3 C"),
                (stored_contract, "last", "0.8500"),
                (stored_contract, "size", "7 X"),
                (stored_contract, "bid", "–"),
            ):
                await wait_for(page, OPTION_CELL, arg=[contract, column, text])
            # The next round of polls shows what the live path got since.
            await live.publish(
                option_trade(live_contract, now + 2_000_000, price=4.35, size=11),
                option_quote(live_contract, now + 3_000_000, bid=4.3, size=5),
            )
            for column, text in (("last", "4.35"), ("size", "11 C"), ("bid", "4.30 ×5"), ("ask", "4.40 ×23")):
                await wait_for(page, OPTION_CELL, arg=[live_contract, column, text])
            stats = await page.evaluate("window.__tickpipe.options")
            assert (stats["quotes"], stats["trades"]) == (2, 3), stats  # each change shown once
            await page.screenshot(path=str(tmp_path / "options.png"), full_page=True)

            # Without ?options=, the first contracts /symbols lists.
            await page.goto(f"{options_dashboard.url}/")
            await wait_for(page, "() => window.__tickpipe?.options.state === 'polling'")
            listed = await page.evaluate("fetch('/symbols').then((r) => r.json()).then((b) => b.options)")
            assert live_contract in listed and stored_contract in listed
            assert await page.evaluate("window.__tickpipe.options.contracts") == listed[:8]
            assert errors == []
        finally:
            for family in ("quotes", "trades"):
                await client.hdel(latest_hash(OPTIONS.word(family)), live_contract)
            await client.aclose()


async def test_dashboard_hides_options_when_the_api_does_not_carry_them(api: DashboardServer, browser: Any) -> None:
    page, errors = await open_page(browser, f"{api.url}/?options=SPY240621C00530000")
    await wait_for(page, "() => window.__tickpipe?.options.state === 'absent'")
    assert not await page.locator("#options").is_visible()
    assert await page.evaluate("window.__tickpipe.options.polls") == 0
    assert errors == []


NEWS_ITEM = """([id, text]) =>
    document.querySelector(`#news-list li[data-id="${id}"] .headline`)?.textContent === text"""


async def test_dashboard_shows_stored_then_live_news_an_update_replacing_its_story(
    news_dashboard: DashboardServer, browser: Any, migrated_db: str, redis_url: str, tmp_path: Path
) -> None:
    symbol = unique_ticker()
    # Stored, and newer than any other test's stories, so it is among the latest the page reads first.
    created = int(datetime(2045, 1, 2, tzinfo=UTC).timestamp()) * 1_000_000_000 + random.randint(0, 10**6) * 10**9
    stored = story([symbol], created, headline=f"{symbol} stored story")
    await insert_events(migrated_db, [msgspec.convert(stored, NewsStory)])
    async with news_live(redis_url) as live:
        page, errors = await open_page(browser, f"{news_dashboard.url}/")
        await wait_for(page, "() => window.__tickpipe?.news.state === 'live'")
        await wait_for(page, NEWS_ITEM, arg=[stored["id"], f"{symbol} stored story"])
        assert await page.locator("#news").is_visible()
        fresh = story([symbol, "AAPL"], created + 10**9, headline=f"{symbol} live story")
        update = {**stored, "headline": f"{symbol} stored story, updated", "updated_at": created + 5 * 10**9}
        await live.publish(fresh, update)
        await wait_for(page, NEWS_ITEM, arg=[fresh["id"], f"{symbol} live story"])
        await wait_for(page, NEWS_ITEM, arg=[stored["id"], f"{symbol} stored story, updated"])
        shown = await page.evaluate(f"window.__tickpipeNews.shown.filter((s) => s.symbols.includes('{symbol}'))")
        assert [(s["id"], s["headline"]) for s in shown] == [
            (fresh["id"], fresh["headline"]), (stored["id"], update["headline"])
        ], "newest first, the update in its story's place"  # fmt: skip
        assert (await page.evaluate("window.__tickpipe.news"))["live"] >= 2
        await page.screenshot(path=str(tmp_path / "news.png"))
        assert errors == []


async def test_dashboard_hides_news_when_the_api_does_not_carry_it(api: DashboardServer, browser: Any) -> None:
    page, errors = await open_page(browser, f"{api.url}/")
    await wait_for(page, "() => window.__tickpipe?.news.state === 'refused'")
    assert not await page.locator("#news").is_visible()
    assert errors == []


# --- the order updates panel: only for a key allowed to see them, only when the API carries them ----------


@pytest.fixture
async def order_keys(keyed_db: str) -> dict[str, tuple[str, str]]:
    """In this module's own database (keys turn auth on there): a key allowed to see order updates, one not."""
    return {
        "orders": await add_key(keyed_db, "dashboard orders", trade_updates=True),
        "market": await add_key(keyed_db, "dashboard market only"),
    }


@pytest.fixture
async def orders_dashboard(
    keyed_db: str, redis_url: str, topic_prefix: str, order_keys: dict[str, tuple[str, str]]
) -> AsyncIterator[DashboardServer]:
    """The API over the keyed database with the order updates feed configured (ALPACA_FEEDS=stocks,trade_updates)."""
    async with feed_dashboard(keyed_db, redis_url, topic_prefix, "stocks,trade_updates") as server:
        yield server


@pytest.fixture
async def no_orders_dashboard(
    keyed_db: str, redis_url: str, topic_prefix: str, order_keys: dict[str, tuple[str, str]]
) -> AsyncIterator[DashboardServer]:
    """The same without the order updates feed (ALPACA_FEEDS=stocks)."""
    async with feed_dashboard(keyed_db, redis_url, topic_prefix, "stocks") as server:
        yield server


def order_updates(symbol: str, n: int) -> list[dict[str, Any]]:
    """``n`` updates of the simulator's orders in ``symbol``, stamped in 2045 (newer than any other test's),
    with fractions of a second that Go's RFC 3339 writes shorter than the route's nine digits."""
    base = int(datetime(2045, 1, 2, tzinfo=UTC).timestamp()) * 10**9 + random.randint(0, 10**6) * 10**9
    clock = itertools.count(base + 1_230_000, 1_000_230_000)
    flow = OrderFlow((symbol,), random.randint(0, 10**6), lambda: next(clock))
    return [flow.next() for _ in range(n)]


async def store_order_updates(database_url: str, updates: list[dict[str, Any]]) -> None:
    await insert_events(database_url, [decode_update(data, 0) for data in updates])


async def forget_order_updates(database_url: str, symbol: str) -> None:
    conn = await asyncpg.connect(db.asyncpg_dsn(database_url))
    try:
        await conn.execute("DELETE FROM trade_updates WHERE symbol = $1", symbol)
    finally:
        await conn.close()


async def publish_order_updates(client: redis.asyncio.Redis, updates: list[dict[str, Any]]) -> None:
    """As the order updates producer does: Alpaca's ``data`` on ``trade_updates:{SYMBOL}``."""
    for data in updates:
        await client.publish(f"trade_updates:{data['order']['symbol']}", orjson.dumps(data))


def order_row(data: dict[str, Any]) -> list[str]:
    """The cells the panel shows for an update: time, symbol, event, side, filled/qty, fill price, status."""
    order = data["order"]
    seconds, _, rest = data["timestamp"].partition(".")
    millis = (rest.rstrip("Z") + "000")[:3] if rest else "000"
    return [
        f"{seconds[11:19]}.{millis}", order["symbol"], data["event"], order["side"],
        f"{int(Decimal(order['filled_qty']))}/{int(Decimal(order['qty']))}",
        f"{Decimal(data['price']):.2f}" if "price" in data else "–", order["status"],
    ]  # fmt: skip


SHOWN_ORDERS = """([symbol, n]) =>
    (window.__tickpipeOrders?.shown ?? []).filter((u) => u.order.symbol === symbol).length === n"""


async def shown_rows(page: Any, symbol: str) -> list[list[str]]:
    rows: list[list[str]] = await page.evaluate(
        """(symbol) => [...document.querySelectorAll("#order-updates tbody tr")]
            .map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent))
            .filter((cells) => cells[1] === symbol)""",
        symbol,
    )
    return rows


async def test_dashboard_shows_stored_then_live_order_updates_to_a_permitted_key(
    orders_dashboard: DashboardServer,
    order_keys: dict[str, tuple[str, str]],
    browser: Any,
    keyed_db: str,
    redis_client: redis.asyncio.Redis,
    tmp_path: Path,
) -> None:
    symbol = unique_ticker()
    sent = order_updates(symbol, 9)
    stored, live = sent[:5], sent[5:]
    await store_order_updates(keyed_db, stored)
    try:
        key, secret = order_keys["orders"]
        page, errors = await open_page(browser, f"{orders_dashboard.url}/?key={key}&secret={secret}")
        await wait_for(page, "() => window.__tickpipe?.orders.state === 'live'")
        await wait_for(page, SHOWN_ORDERS, arg=[symbol, len(stored)])
        assert await page.locator("#orders").is_visible()
        await wait_for(page, "(n) => document.querySelectorAll('#order-updates tbody tr').length >= n", arg=5)
        assert await shown_rows(page, symbol) == [order_row(d) for d in reversed(stored)], "newest first"

        # Live: the newest stored one again (as the stream may repeat what the route gave), then new ones.
        await publish_order_updates(redis_client, [stored[-1], *live])
        await wait_for(page, SHOWN_ORDERS, arg=[symbol, len(sent)])
        await wait_for(
            page,
            "([symbol, n]) => [...document.querySelectorAll('#order-updates tbody tr td.symbol')]"
            ".filter((td) => td.textContent === symbol).length === n",
            arg=[symbol, len(sent)],
        )
        assert await shown_rows(page, symbol) == [order_row(d) for d in reversed(sent)], "newest first, each once"
        stats = await page.evaluate("window.__tickpipe.orders")
        assert stats["live"] == len(live) and stats["stored"] >= len(stored), stats
        assert await page.locator("#orders-conn").text_content() == "live"
        await page.locator("#orders").screenshot(path=str(tmp_path / "orders.png"))
        assert [e for e in errors if "401" not in e] == []  # the page's other requests carry no key
    finally:
        await forget_order_updates(keyed_db, symbol)


async def test_dashboard_hides_order_updates_from_a_key_without_the_scope(
    orders_dashboard: DashboardServer,
    order_keys: dict[str, tuple[str, str]],
    browser: Any,
    keyed_db: str,
) -> None:
    symbol = unique_ticker()
    await store_order_updates(keyed_db, order_updates(symbol, 3))
    try:
        key, secret = order_keys["market"]
        page, errors = await open_page(browser, f"{orders_dashboard.url}/?key={key}&secret={secret}")
        await wait_for(page, "() => window.__tickpipe?.orders.state === 'refused'")
        assert "may not see order updates" in await page.evaluate("window.__tickpipe.orders.detail")
        assert not await page.locator("#orders").is_visible()
        assert await page.locator("#order-updates tbody tr").count() == 0
        stats = await page.evaluate("window.__tickpipe.orders")
        assert (stats["stored"], stats["live"]) == (0, 0), stats
        # The route refuses this key as the stream did.
        status = await page.evaluate(
            "(headers) => fetch('/trade_updates?limit=20&sort=desc', { headers }).then((r) => r.status)",
            key_headers(key, secret),
        )
        assert status == 403
        assert [e for e in errors if "401" not in e and "403" not in e] == []
    finally:
        await forget_order_updates(keyed_db, symbol)


async def test_dashboard_hides_order_updates_when_the_api_does_not_carry_them(
    no_orders_dashboard: DashboardServer,
    order_keys: dict[str, tuple[str, str]],
    browser: Any,
    keyed_db: str,
) -> None:
    symbol = unique_ticker()
    await store_order_updates(keyed_db, order_updates(symbol, 3))  # stored, yet not shown
    try:
        key, secret = order_keys["orders"]
        page, errors = await open_page(browser, f"{no_orders_dashboard.url}/?key={key}&secret={secret}")
        await wait_for(page, "() => window.__tickpipe?.orders.state === 'absent'")
        assert "not configured" in await page.evaluate("window.__tickpipe.orders.detail")
        assert not await page.locator("#orders").is_visible()
        assert await page.locator("#order-updates tbody tr").count() == 0
        assert (await page.evaluate("window.__tickpipe.orders"))["reads"] == 0
        assert [e for e in errors if "401" not in e] == []
    finally:
        await forget_order_updates(keyed_db, symbol)
