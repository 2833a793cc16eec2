"""The simulator server: Alpaca's stream v2 on ``/v2/iex``, ``/v2/sip`` and ``/v2/test``, its crypto
stream on ``/v1beta3/crypto/us`` (:mod:`simulator.crypto`), its option stream on ``/v1beta1/opra`` and
``/v1beta1/indicative`` (:mod:`simulator.options`, msgpack only), and Alpaca's historical REST API
(``/v2/stocks/...``, ``/v1beta3/crypto/us/...``, ``/v1beta1/options/trades``, :mod:`simulator.rest`) and the
trading API's stream of order updates (``/stream``, :mod:`simulator.trading`) on the same port.

Usage, in a test or a tool::

    async with Simulator(SimulatorConfig(rate=1000, record=True)) as sim:
        stream = StockDataStream("key", "secret", url_override=sim.url)
        ...
        await sim.wait_for(lambda: sim.sent_total >= 100)

Every feed has one market. In paced mode a ticker moves it with the wall
clock from start-up on (the configured feed's at once, another feed's from
its first subscription or REST request), records each new event for the REST
API and hands it to every subscribed connection (a connection that cannot
keep up is dropped with 407, as Alpaca does). In burst mode each connection
draws from the feed's market as fast as its socket takes frames, and the
REST API rebuilds what was drawn from the replayed window
(:mod:`simulator.burst_history`); a burst market moves only while read.
The crypto and option markets are always paced (at ``CRYPTO_BURST_RATE`` in burst mode),
and a connection's first orderbook message of a pair is the pair's whole book. ``/v1beta1/opra`` and
``/v1beta1/indicative`` show one option market (:func:`simulator.config.market_of`): a client of either
gets the same events, and the REST history of option trades (``/v1beta1/options/trades``) is that
market's; option quotes are not kept, as Alpaca has no history of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import replace
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.protocol import State as WsState

from simulator import rest
from simulator.bars import NS
from simulator.burst import BurstFeed
from simulator.burst_history import BurstHistory
from simulator.config import (
    STREAMS,
    TRADING_PATH,
    SimulatorConfig,
    always_paced,
    is_crypto,
    is_news,
    is_options,
    market_kind,
    market_of,
)
from simulator.crypto import CryptoMarket
from simulator.history import CRYPTO_LAYOUTS, OPTION_LAYOUTS, STOCK_LAYOUTS, History
from simulator.market import Event
from simulator.news import NewsMarket
from simulator.options import OptionMarket, chain
from simulator.paced import AnyMarket, make_market, run_ticker
from simulator.session import Session
from simulator.subscriptions import Key
from simulator.trading import TradingDesk, TradingSession
from simulator.wire import Encoding

_SLOW_GRACE = 5.0  # seconds a slow client has to take its 407 before the socket is cut


_FEED_OF_PATH = {path: feed for feed, (_, path) in STREAMS.items()}


def _path(path: str) -> str:
    return "/" + path.split("?", 1)[0].strip("/")


def feed_of(path: str) -> str | None:
    """``/v2/sip?x=1`` -> ``sip``, ``/v1beta3/crypto/us`` -> ``crypto/us``; None for a path not served."""
    return _FEED_OF_PATH.get(_path(path))


class Simulator:
    """An Alpaca-compatible market data stream with a simulated market behind it."""

    def __init__(self, config: SimulatorConfig | None = None, **overrides: Any) -> None:
        config = config or SimulatorConfig()
        self.config = replace(config, **overrides) if overrides else config
        self.sessions: list[Session] = []
        self.produced = 0
        self.reading = asyncio.Event()
        self.reading.set()
        self.port = self.config.port
        self._server: Server | None = None
        self.start_ns = 0
        self.lag_ns = 0  # market time = wall time + lag
        self.histories: dict[str, History] = {}
        self._limits = rest.RateLimit(self.config.rest_rate_limit)
        self._burst: dict[str, BurstFeed] = {}
        self._tickers: dict[str, asyncio.Task[None]] = {}
        self.markets: dict[str, AnyMarket] = {}  # paced: each running feed's market
        self._option_symbols: list[str] | None = None
        self._watchdogs: set[asyncio.Task[None]] = set()
        self._refusals_left = self.config.faults.refuse_connections
        self._progress: asyncio.Future[None] | None = None
        #: The trading stream's account: its order flow and listening connections (``/stream``).
        self.desk = TradingDesk(self.config, self.notify)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Bind (port 0 picks a free one) and serve; burst windows are built here, off the loop."""
        config = self.config
        self.start_ns = config.start_ns if config.start_ns is not None else time.time_ns()
        self.lag_ns = self.start_ns - time.time_ns()
        if not self.paced(config.feed):
            await asyncio.to_thread(self._prepare_burst, config.feed)
        self._server = await serve(
            self._handle,
            config.host,
            config.port,
            process_request=self._route,
            compression="deflate" if config.compression else None,
            max_size=2**24,
            write_limit=2**20,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if config.rate is not None:  # the market runs from now on, listened to or not
            self._start_ticker(config.feed)

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop serving."""
        await self.desk.stop()
        tasks = [*self._tickers.values(), *self._watchdogs]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tickers.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v2/{feed}`` for the configured feed."""
        return self.url_for(self.config.feed)

    @property
    def trading_url(self) -> str:
        """``ws://127.0.0.1:PORT/stream``: the trading stream (alpaca-py's ``TradingStream(url_override=...)``)."""
        return self.rest_url.replace("http", "ws", 1) + TRADING_PATH

    def url_for(self, feed: str) -> str:
        """The stream URL of a served feed (``sip``, ``crypto/us``); ``/v2/{feed}`` for any other name."""
        host = "127.0.0.1" if self.config.host in ("", "0.0.0.0") else self.config.host
        path = STREAMS[feed][1] if feed in STREAMS else f"/v2/{feed}"
        return f"ws://{host}:{self.port}{path}"

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:PORT``: the base URL of the historical REST API (alpaca-py's ``url_override``)."""
        host = "127.0.0.1" if self.config.host in ("", "0.0.0.0") else self.config.host
        return f"http://{host}:{self.port}"

    def paced(self, feed: str) -> bool:
        """Whether the feed's market follows the wall clock (else connections draw a burst replay)."""
        return self.config.rate is not None or always_paced(feed)

    def book_snapshots(self, feed: str, symbols: Collection[str] | None = None) -> list[Event]:
        """The whole books (``r``: true) of a crypto feed's pairs, of every pair if ``symbols`` is None."""
        market = self.markets.get(market_of(feed))
        if not isinstance(market, CryptoMarket):
            return []
        return [market.snapshot(s) for s in market.symbols if symbols is None or s in symbols]

    @property
    def option_symbols(self) -> list[str]:
        """The option market's contracts: SimulatorConfig.option_symbols, else the default chain of the
        simulator's start date (the same on every option feed)."""
        if self._option_symbols is None:
            configured = self.config.option_symbols
            start = self.start_ns or self.market_now_ns()
            self._option_symbols = list(configured or chain(start_ns=start, seed=self.config.seed))
        return self._option_symbols

    def market_now_ns(self) -> int:
        """The market clock now (ns): the wall clock shifted to ``start_ns`` at start-up."""
        return time.time_ns() + self.lag_ns

    def history(self, feed: str) -> History | BurstHistory | None:
        """The feed's REST history: paced, what its market's ticker recorded (the market started if it was
        not running; both option feeds have the one market's); burst, what its replay has sent so far
        (None before any connection drew)."""
        if not self.paced(feed):
            burst = self._burst.get(feed)
            return BurstHistory(burst) if burst is not None else None
        self._start_ticker(feed)
        return self.histories.get(market_of(feed))

    # -- what was sent ---------------------------------------------------------------

    @property
    def sent_total(self) -> int:
        """Data messages sent on every connection so far."""
        return sum(s.sent_total for s in self.sessions)

    @property
    def sent(self) -> Counter[str]:
        """Data messages sent on every connection, by type."""
        return sum((s.sent for s in self.sessions), Counter())

    @property
    def sent_by_symbol(self) -> Counter[Key]:
        """Data messages sent on every connection, by (type, symbol)."""
        return sum((s.sent_by_symbol for s in self.sessions), Counter())

    @property
    def exhausted(self) -> bool:
        """Whether the market has produced all of ``max_events``."""
        return self.config.max_events is not None and self.produced >= self.config.max_events

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` holds, re-checked whenever a session makes progress."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"expected the condition within {timeout} s, still false")
            if self._progress is None or self._progress.done():
                self._progress = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._progress), min(remaining, 0.5))
            except TimeoutError:
                pass

    def notify(self) -> None:
        """Wake ``wait_for`` callers (sessions call this after each frame and state change)."""
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)

    def pause_reading(self) -> None:
        """Stop handling client messages (they wait, unread) until :meth:`resume_reading`."""
        self.reading.clear()

    def resume_reading(self) -> None:
        self.reading.set()

    # -- used by sessions ------------------------------------------------------------

    def admit(self, session: Session) -> bool:
        """Whether one more authenticated connection fits (else the session answers 406)."""
        if self._refusals_left != 0:
            self._refusals_left -= self._refusals_left > 0
            return False
        limit = self.config.connection_limit
        if limit is None:
            return True
        live = sum(1 for s in self.sessions if s is not session and s.feed == session.feed and s.authenticated)
        return live < limit

    def subscribed(self, session: Session) -> None:
        """A session's subscriptions changed: start its feed's ticker in paced mode."""
        if self.paced(session.feed):
            self._start_ticker(session.feed)
        market = self.markets.get(market_of(session.feed))
        if isinstance(market, OptionMarket):  # any contract a client names is listed, as on Alpaca
            named = {s for c in session.subscriptions.channels.channels for s in session.subscriptions.symbols(c)}
            market.add(sorted(named - {"*"}))
        self.notify()

    def _start_ticker(self, feed: str) -> None:
        """Start the market the feed shows (keyed by :func:`market_of`), its history and its ticker."""
        feed = market_of(feed)
        if feed in self._tickers:
            return
        config = self.config
        contracts = self.option_symbols if is_options(feed) else None
        market = self.markets[feed] = make_market(config, feed, self.market_now_ns(), contracts)
        if is_news(feed):  # the news wire keeps its stories (its REST history)
            self._tickers[feed] = asyncio.create_task(run_ticker(self, feed, None, market))
            return
        layouts = CRYPTO_LAYOUTS if is_crypto(feed) else OPTION_LAYOUTS if is_options(feed) else STOCK_LAYOUTS
        history = self.histories[feed] = History(
            config.history_seconds * NS, config.history_max_events, self.market_now_ns(), layouts=layouts
        )
        self._tickers[feed] = asyncio.create_task(run_ticker(self, feed, history, market))

    def allowance(self, n: int) -> int:
        """How many of ``n`` more events the market may still produce under ``max_events``."""
        if self.config.max_events is None:
            return n
        return min(n, self.config.max_events - self.produced)

    def burst_feed(self, feed: str) -> BurstFeed:
        burst = self._burst.get(feed)
        if burst is None:
            burst = self._burst[feed] = self._prepare_burst(feed)
        return burst

    def _prepare_burst(self, feed: str) -> BurstFeed:
        config = self.config
        burst = BurstFeed(config.symbols, config.seed, market_kind(feed), config.window_minutes, self.start_ns)
        burst.replay_for("msgpack")
        self._burst[feed] = burst
        return burst

    def watch_slow(self, ws: ServerConnection) -> None:
        """Cut a slow client's socket if it has not taken its 407 and close frame in time."""

        async def cut() -> None:
            await asyncio.sleep(_SLOW_GRACE)
            if ws.protocol.state is not WsState.CLOSED:
                ws.transport.abort()

        task = asyncio.create_task(cut())
        self._watchdogs.add(task)
        task.add_done_callback(self._watchdogs.discard)

    # -- serving ---------------------------------------------------------------------

    def news_stories(self, feed: str) -> dict[int, Event]:
        """The news wire's stories so far, latest version per id (the wire started if it was not running)."""
        self._start_ticker(feed)
        market = self.markets.get(feed)
        return dict(market.stories) if isinstance(market, NewsMarket) else {}

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        """REST requests are answered here; a stream path goes on to the WebSocket handshake (the news
        history shares its stream's path, ``/v1beta1/news``: a request without an upgrade is a REST one)."""
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if rest.is_rest(request.path) or (rest.is_news(request.path) and not upgrade):
            return rest.handle(self, self._limits, request)
        if _path(request.path) == TRADING_PATH:
            return None
        if feed_of(request.path) is None:
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                f"expected /v2/iex, /v2/sip, /v2/test, /v1beta3/crypto/us, /v1beta1/opra, /v1beta1/indicative or"
                f" /v1beta1/news, the trading stream's {TRADING_PATH}, or the REST API's /v2/stocks/...,"
                f" /v1beta3/crypto/us/..., /v1beta1/options/... or /v1beta1/news,"
                f" got {request.path}\n",
            )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        if _path(ws.request.path) == TRADING_PATH:
            trading = TradingSession(self.desk, ws)
            self.desk.sessions.append(trading)
            await trading.run()
            return
        feed = feed_of(ws.request.path) or self.config.feed
        content_type = ws.request.headers.get("Content-Type", "")
        encoding: Encoding = "msgpack" if "application/msgpack" in content_type else "json"
        session = Session(self, ws, len(self.sessions) + 1, feed, encoding)
        self.sessions.append(session)
        self.notify()
        await session.run()
