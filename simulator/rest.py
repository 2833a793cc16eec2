"""Alpaca's historical market-data REST APIs (v2 stocks, v1beta3 crypto, v1beta1 options) for the simulator's
own markets.

Served on the simulator's port next to the streams, so ``http://HOST:PORT`` is
the base URL a client (alpaca-py's ``StockHistoricalDataClient(url_override=...)``,
``CryptoHistoricalDataClient`` or ``OptionHistoricalDataClient``) is given; the producer
fills the gaps in its stream from it as it would from Alpaca. Routes, each
answered from the feed's history (kept as the paced market made it,
:mod:`simulator.history`; rebuilt from the replay in burst mode,
:mod:`simulator.burst_history`):

    GET /v2/stocks/{symbol}/trades|quotes|bars   {"trades": [...], "symbol": "AAPL", "next_page_token": ...}
    GET /v2/stocks/trades|quotes|bars?symbols=   {"trades": {"AAPL": [...]}, "next_page_token": ...}
    GET /v1beta3/crypto/us/trades|quotes|bars?symbols=BTC/USD,ETH/USD
                                                 {"trades": {"BTC/USD": [...]}, "next_page_token": ...}
    GET /v1beta3/crypto/us/latest/trades|quotes|bars|orderbooks?symbols=
                                                 {"trades": {"BTC/USD": {...}}}
    GET /v1beta1/options/trades?symbols=AAPL240621C00190000,...
                                                 {"trades": {"AAPL240621C00190000": [...]}, "next_page_token": ...}

Parameters as Alpaca's: ``start``/``end`` (RFC 3339 or a date, both inclusive;
default the day so far: New York's for stocks, US Central's for crypto, whose
daily bars start there), ``limit`` (1 to 10,000, default 1,000), ``sort``
(asc, desc), ``page_token``, ``timeframe`` (bars); for stocks also ``feed``
(iex, sip; default sip when the key may read it), and ``asof``, ``currency``,
``adjustment``, accepted and without effect. The crypto routes take pairs
(``BTC/USD``) and no feed (the location, ``us``, is in the path); their items
carry the crypto stream's fields (trades ``t,p,s,i,tks``, quotes
``t,bp,bs,ap,as``, bars ``t,o,h,l,c,v,n,vw``; books ``t,b,a``). The option route takes OCC contracts,
at most 100 a request as on Alpaca (more: 400), and no feed (``/v1beta1/opra`` and ``/v1beta1/indicative``
show one market here); its items are the option stream's trades (``t,x,p,s,c``, one condition code).
Alpaca has no history of option quotes, so there is no such route. Errors are
Alpaca's ``{"message": ...}``: 400 for a value that cannot be read or an
unknown parameter, 422 for one out of range, 401 without both key headers
(crypto: with only one of them; the crypto API, like Alpaca's, needs no key),
403 for wrong keys or a feed the key is not entitled to, 429 past the
per-minute request limit (keyless crypto requests share one budget). Every
answer past authentication carries the ``X-RateLimit-*`` headers.

Trades are the prints as the stream sent them: its corrections and cancels
(and trading statuses) are stream messages with no REST route here, so a
reader that missed them on the stream does not get them from the history.
Windows older than the history's retention answer with what is left of them.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from simulator import crypto, news
from simulator.bars import NS, day_start
from simulator.config import CRYPTO_FEEDS, NEWS_FEEDS, OPTION_FEEDS, STREAMS, SimulatorConfig
from simulator.pages import NEW_YORK, PageError, Past, Timeframe, View, bar_view, page, parse_limit, series_view
from simulator.wire import rfc3339
from tickpipe.codecs import parse_rfc3339_ns
from tickpipe.feeds import OPTIONS

#: Feeds the stock historical API serves (Alpaca's others, otc, boats and overnight, are not simulated).
REST_FEEDS = ("iex", "sip")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
_KINDS = {"trades": "t", "quotes": "q", "bars": "b"}
_COMMON = frozenset({"start", "end", "limit", "page_token", "sort", "feed", "asof", "currency"})
#: The window parameters of an API that takes no feed (crypto: the location is in the path; options).
_FEEDLESS = frozenset({"start", "end", "limit", "page_token", "sort"})
_ADJUSTMENTS = ("raw", "split", "dividend", "spin-off", "all")
_SYMBOL = re.compile(r"[A-Z][A-Z0-9./-]{0,20}")


@dataclass(frozen=True)
class Api:
    """One of Alpaca's historical APIs: where it is served, what it takes, which symbols and days it knows."""

    prefix: str
    """``/v2/stocks``, ``/v1beta3/crypto/us``: the routes are under it."""
    params: Mapping[str, frozenset[str]]
    """The query parameters each resource takes besides ``symbols``."""
    latest: Mapping[str, frozenset[str]]
    """The same for ``{prefix}/latest/{resource}`` (none: no such routes)."""
    symbol: re.Pattern[str]
    symbol_hint: str
    """Said after a symbol that is not one of this API's (empty: nothing)."""
    day_start: Callable[[int], int]
    """Midnight of the day containing a time (ns), in :attr:`zone`: the default ``start`` and a date's time."""
    zone: ZoneInfo
    feed: str | None
    """The feed whose history answers; None: the request's ``feed`` parameter says (stocks)."""
    keys_required: bool
    single: bool
    """Whether ``{prefix}/{symbol}/{resource}`` routes exist (stocks) besides ``{prefix}/{resource}?symbols=``."""
    max_symbols: int | None = None
    """The most symbols one request may name (options: 100); None: no bound but the URL's."""


STOCKS = Api(
    prefix="/v2/stocks",
    params={"trades": _COMMON, "quotes": _COMMON, "bars": _COMMON | {"timeframe", "adjustment"}},
    latest={},
    symbol=_SYMBOL,
    symbol_hint="",
    day_start=day_start,
    zone=NEW_YORK,
    feed=None,
    keys_required=True,
    single=True,
)
#: The crypto historical API of each crypto feed (``crypto/us`` on ``/v1beta3/crypto/us``).
CRYPTO_APIS = tuple(
    Api(
        prefix=STREAMS[feed][1],
        params={"trades": _FEEDLESS, "quotes": _FEEDLESS, "bars": _FEEDLESS | {"timeframe"}},
        latest={kind: frozenset() for kind in ("trades", "quotes", "bars", "orderbooks")},
        symbol=re.compile(STREAMS[feed][0].symbol_pattern),
        symbol_hint=", expected a pair such as BTC/USD",
        day_start=crypto.day_start,
        zone=crypto.DAY_ZONE,
        feed=feed,
        keys_required=False,
        single=False,
    )
    for feed in CRYPTO_FEEDS
)
#: The option historical API: trades only (Alpaca keeps no option quotes; bars, which the stream does
#: not carry, are not simulated), of the one option market both option feeds show.
OPTIONS_API = Api(
    prefix="/v1beta1/options",
    params={"trades": _FEEDLESS},
    latest={},
    symbol=re.compile(OPTIONS.symbol_pattern),
    symbol_hint=", expected an OCC contract such as AAPL240621C00190000",
    day_start=day_start,
    zone=NEW_YORK,
    feed=OPTION_FEEDS[0],
    keys_required=True,
    single=False,
    max_symbols=100,
)
APIS = (STOCKS, *CRYPTO_APIS, OPTIONS_API)


class Host(Protocol):
    """What the REST API needs of the server it runs in (the :class:`~simulator.server.Simulator`)."""

    config: SimulatorConfig

    def history(self, feed: str) -> Past | None: ...

    def market_now_ns(self) -> int: ...

    def book_snapshots(self, feed: str, symbols: Collection[str] | None = None) -> list[dict[str, Any]]: ...

    def news_stories(self, feed: str) -> Mapping[int, dict[str, Any]]: ...


class RestError(Exception):
    """An answer other than 200: its status and Alpaca's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RateLimit:
    """Alpaca's per-minute request budget per key: a fixed minute from its first request."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window end, epoch s; requests)

    def take(self, key: str, now_s: float) -> tuple[bool, dict[str, str]]:
        """Count one request; whether it is allowed, and the headers that say where the key stands."""
        if len(self._windows) > 1024:  # bounded: forget keys whose minute is over
            self._windows = {k: w for k, w in self._windows.items() if w[0] > now_s}
        reset, used = self._windows.get(key, (0, 0))
        if now_s >= reset:
            reset, used = int(now_s) + 60, 0
        allowed = used < self.per_minute
        used += allowed
        self._windows[key] = (reset, used)
        return allowed, {
            "X-RateLimit-Limit": str(self.per_minute),
            "X-RateLimit-Remaining": str(self.per_minute - used),
            "X-RateLimit-Reset": str(reset),
        }


def api_of(path: str) -> Api | None:
    """The API a request path (query left out) belongs to, or None for a stream path or another."""
    for api in (STOCKS, OPTIONS_API):
        if path == api.prefix or path.startswith(api.prefix + "/"):
            return api
    for api in CRYPTO_APIS:  # beneath the crypto stream's own path, which is not the REST API's
        if path.startswith(api.prefix + "/") and path.strip("/") != api.prefix.strip("/"):
            return api
    return None


#: The news history's path (the news stream's too): ``/v1beta1/news`` -> its feed, ``news/news``.
NEWS_PATHS: dict[str, str] = {STREAMS[feed][1]: feed for feed in NEWS_FEEDS}


def is_news(path: str) -> bool:
    """Whether a request path is the news history's (a WebSocket upgrade on it is the news stream)."""
    return "/" + urlsplit(path).path.strip("/") in NEWS_PATHS


def is_rest(path: str) -> bool:
    """Whether a request path belongs to a REST API rather than a stream."""
    return api_of(urlsplit(path).path) is not None


def handle(host: Host, limits: RateLimit, request: Request) -> Response:
    """Answer one REST request; never raises."""
    headers: dict[str, str] = {}
    try:
        url = urlsplit(request.path)
        api = api_of(url.path)
        feed = NEWS_PATHS.get("/" + url.path.strip("/"))
        if api is None and feed is None:
            raise RestError(404, "Not Found")
        key = _authenticate(host.config, request, api.keys_required if api is not None else True)
        allowed, headers = limits.take(key, time.time())
        if not allowed:
            raise RestError(429, "too many requests.")
        body = _answer(host, api, url) if api is not None else _news(host, feed or "", url)
        return _response(200, body, headers)
    except RestError as exc:
        return _response(exc.status, {"message": exc.message}, headers)


def _authenticate(config: SimulatorConfig, request: Request, required: bool = True) -> str:
    """The key a request is counted against; keyless (``""``) only where keys are not ``required``."""
    key = request.headers.get("APCA-API-KEY-ID")
    secret = request.headers.get("APCA-API-SECRET-KEY")
    if not required and not key and not secret:
        return ""
    if not key or not secret:
        raise RestError(401, "unauthorized.")
    if config.key is not None and (key != config.key or secret != config.secret):
        raise RestError(403, "forbidden.")
    return key


@dataclass(frozen=True)
class Query:
    """One request's parameters, read and checked as Alpaca checks them."""

    resource: str
    symbols: list[str]
    single: bool
    feed: str
    start: int | None
    end: int | None
    limit: int
    desc: bool
    token: str | None
    timeframe: Timeframe | None
    latest: bool = False
    api: Api = STOCKS


def parse(config: SimulatorConfig, url: Any, api: Api = STOCKS) -> Query:
    """The query a URL asks of ``api``, or RestError with Alpaca's status and a message naming the parameter."""
    parts = url.path[len(api.prefix) :].strip("/").split("/")
    params = {name: values[-1] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
    latest = len(parts) == 2 and parts[0] == "latest" and parts[1] in api.latest
    if api.single and len(parts) == 2 and parts[1] in _KINDS:
        resource, symbols, single = parts[1], [unquote(parts[0])], True
        if "symbols" in params:
            raise RestError(400, "unexpected query parameter(s): symbols")
    elif latest or (len(parts) == 1 and parts[0] in api.params):
        resource, single = parts[-1], False
        if not params.get("symbols"):
            raise RestError(400, "symbols missing")
        symbols = [s for s in params.pop("symbols").split(",") if s]
    else:
        raise RestError(404, "Not Found")
    unexpected = sorted(set(params) - (api.latest if latest else api.params)[resource])
    if unexpected:
        raise RestError(400, f"unexpected query parameter(s): {', '.join(unexpected)}")
    if api.max_symbols is not None and len(symbols) > api.max_symbols:
        raise RestError(400, f"too many symbols: {len(symbols)}, expected at most {api.max_symbols}")
    bad = [s for s in symbols if not api.symbol.fullmatch(s)]
    if bad:
        raise RestError(400, f"invalid symbol: {bad[0]}{api.symbol_hint}")
    feed = api.feed if api.feed is not None else _feed(config, params.get("feed"))
    if latest:
        return Query(resource, symbols, False, feed, None, None, 1, False, None, None, True, api)
    start, end = _time(params, "start", api.day_start), _time(params, "end", api.day_start)
    if start is not None and end is not None and end < start:
        raise RestError(422, "end should not be before start")
    sort = params.get("sort", "asc")
    if sort not in ("asc", "desc"):
        raise RestError(400, f"invalid sort: {sort!r}, expected asc or desc")
    if params.get("adjustment", "raw") not in _ADJUSTMENTS:
        raise RestError(400, f"invalid adjustment: {params['adjustment']!r}")
    timeframe = None
    if resource == "bars":
        if "timeframe" not in params:
            raise RestError(400, "timeframe missing")
        try:
            timeframe = Timeframe.parse(params["timeframe"])
        except PageError as exc:
            raise RestError(400, str(exc)) from exc
    limit, token = _limit(params.get("limit")), params.get("page_token") or None
    return Query(resource, symbols, single, feed, start, end, limit, sort == "desc", token, timeframe, False, api)


def _answer(host: Host, api: Api, url: Any) -> dict[str, Any]:
    q = parse(host.config, url, api)
    history = host.history(q.feed)
    if q.latest:
        return {q.resource: _latest(host, q, history)}
    start = q.start if q.start is not None else api.day_start(host.market_now_ns())  # the day so far
    made = history.clock_ns if history is not None else host.market_now_ns()  # what the market has made
    end = q.end if q.end is not None else max(made, start)
    if end < start:
        raise RestError(422, "end should not be before start")
    views: dict[str, View] = {}
    for symbol in dict.fromkeys(q.symbols):
        view = None
        if history is not None:
            if q.timeframe is not None:
                view = bar_view(history, symbol, q.timeframe, api.zone)
            else:
                view = series_view(history, _KINDS[q.resource], symbol)
        if view is not None:
            views[symbol] = view
    try:
        rows, token = page(views, start, end, q.limit, q.desc, q.token)
    except PageError as exc:
        raise RestError(400, str(exc)) from exc
    for items in rows.values():
        for item in items:
            item["t"] = rfc3339(item["t"])
    if q.single:
        return {q.resource: rows.get(q.symbols[0]), "symbol": q.symbols[0], "next_page_token": token}
    return {q.resource: rows, "next_page_token": token}


def _news(host: Host, feed: str, url: Any) -> dict[str, Any]:
    """``GET /v1beta1/news``: the news wire's stories (:func:`simulator.news.answer`); start defaults to the
    day so far (New York's), end to now."""
    params = {name: values[-1] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
    start = _time(params, "start")
    end = _time(params, "end")
    if start is not None and end is not None and end < start:
        raise RestError(422, "end should not be before start")
    if start is None:
        start = day_start(host.market_now_ns())
    try:
        return news.answer(
            host.news_stories(feed), params, start, end if end is not None else host.market_now_ns(), rfc3339
        )
    except news.NewsQueryError as exc:
        raise RestError(exc.status, str(exc)) from None


def _latest(host: Host, q: Query, history: Past | None) -> dict[str, dict[str, Any]]:
    """The newest trade, quote or minute bar of each symbol that has one, or its whole book now."""
    out: dict[str, dict[str, Any]] = {}
    symbols = list(dict.fromkeys(q.symbols))
    if q.resource == "orderbooks":
        for book in host.book_snapshots(q.feed, symbols):
            out[book["S"]] = {"t": book["t"], "b": book["b"], "a": book["a"]}
    elif history is not None:
        for symbol in symbols:
            if q.resource == "bars":
                bars = history.minute_bars(symbol)
                if bars:
                    out[symbol] = dict(bars[max(bars)])
            else:
                series = history.series(_KINDS[q.resource], symbol)
                if series is not None and len(series):
                    out[symbol] = series.rows(len(series) - 1, len(series))[0]
    for item in out.values():
        item["t"] = rfc3339(item["t"])
    return out


def _time(params: dict[str, str], name: str, midnight: Callable[[int], int] = day_start) -> int | None:
    """RFC 3339 with up to nine fractional digits and any offset, or a date (its ``midnight``:
    New York's for stocks, US Central's for crypto)."""
    text = params.get(name)
    if not text:
        return None
    try:
        if len(text) > len("2024-06-03"):  # longer than any date: a time
            return parse_rfc3339_ns(text)
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        return midnight(int(moment.timestamp()) * NS + 12 * 3600 * NS)
    except ValueError:
        pass
    raise RestError(400, f"invalid {name}: {text!r}, expected RFC 3339 (2024-06-03T13:30:00.123456789Z) or a date")


def _limit(text: str | None) -> int:
    return parse_limit(text, DEFAULT_LIMIT, MAX_LIMIT, RestError)


def _feed(config: SimulatorConfig, text: str | None) -> str:
    """The feed asked for, or the best the key may read (sip over iex), as Alpaca defaults."""
    if not text:
        entitled = [f for f in ("sip", "iex") if f in config.entitled_feeds]
        if not entitled:
            raise RestError(403, "subscription does not permit querying IEX or SIP data")
        return entitled[0]
    if text not in REST_FEEDS:
        raise RestError(400, f"invalid feed: {text!r}, expected one of {', '.join(REST_FEEDS)}")
    if text not in config.entitled_feeds:
        raise RestError(403, f"subscription does not permit querying {text.upper()} data")
    return text


def _response(status: int, body: dict[str, Any], extra: dict[str, str]) -> Response:
    data = orjson.dumps(body)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
            *extra.items(),
        ]
    )
    return Response(status, HTTPStatus(status).phrase, headers, data)
