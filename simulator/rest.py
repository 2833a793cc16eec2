"""Alpaca's historical market-data REST API (v2 stocks) for the simulator's own market.

Served on the simulator's port next to the stream, so ``http://HOST:PORT`` is
the base URL a client (alpaca-py's ``StockHistoricalDataClient(url_override=...)``)
is given; the producer fills the gaps in its stream from it as it would from
Alpaca. Routes, each answered from the feed's history (kept as the paced
market made it, :mod:`simulator.history`; rebuilt from the replay in burst
mode, :mod:`simulator.burst_history`):

    GET /v2/stocks/{symbol}/trades|quotes|bars   {"trades": [...], "symbol": "AAPL", "next_page_token": ...}
    GET /v2/stocks/trades|quotes|bars?symbols=   {"trades": {"AAPL": [...]}, "next_page_token": ...}

Parameters as Alpaca's: ``start``/``end`` (RFC 3339 or a date, both inclusive;
default the New York day so far), ``limit`` (1 to 10,000, default 1,000),
``sort`` (asc, desc), ``feed`` (iex, sip; default sip when the key may read it),
``page_token``, ``timeframe`` (bars), and ``asof``, ``currency``,
``adjustment``, accepted and without effect. Errors are Alpaca's
``{"message": ...}``: 400 for a value that cannot be read or an unknown
parameter, 422 for one out of range, 401 without both key headers, 403 for
wrong keys or a feed the key is not entitled to, 429 past the per-minute
request limit. Every authenticated answer carries the ``X-RateLimit-*`` headers.

Trades are the prints as the stream sent them: its corrections and cancels
(and trading statuses) are stream messages with no REST route here, so a
reader that missed them on the stream does not get them from the history.
Windows older than the history's retention answer with what is left of them.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from simulator.bars import NS, day_start
from simulator.config import SimulatorConfig
from simulator.pages import PageError, Past, Timeframe, View, bar_view, page, series_view
from simulator.wire import rfc3339
from tickpipe.codecs import parse_rfc3339_ns

#: Feeds the historical API serves (Alpaca's others, otc, boats and overnight, are not simulated).
REST_FEEDS = ("iex", "sip")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
_KINDS = {"trades": "t", "quotes": "q", "bars": "b"}
_COMMON = {"start", "end", "limit", "page_token", "sort", "feed", "asof", "currency"}
_ALLOWED = {"trades": _COMMON, "quotes": _COMMON, "bars": _COMMON | {"timeframe", "adjustment"}}
_ADJUSTMENTS = ("raw", "split", "dividend", "spin-off", "all")
_SYMBOL = re.compile(r"[A-Z][A-Z0-9./-]{0,20}")


class Host(Protocol):
    """What the REST API needs of the server it runs in (the :class:`~simulator.server.Simulator`)."""

    config: SimulatorConfig

    def history(self, feed: str) -> Past | None: ...

    def market_now_ns(self) -> int: ...


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


def is_rest(path: str) -> bool:
    """Whether a request path belongs to the REST API rather than the stream."""
    return urlsplit(path).path.startswith("/v2/stocks")


def handle(host: Host, limits: RateLimit, request: Request) -> Response:
    """Answer one REST request; never raises."""
    headers: dict[str, str] = {}
    try:
        key = _authenticate(host.config, request)
        allowed, headers = limits.take(key, time.time())
        if not allowed:
            raise RestError(429, "too many requests.")
        body = _answer(host, urlsplit(request.path))
        return _response(200, body, headers)
    except RestError as exc:
        return _response(exc.status, {"message": exc.message}, headers)


def _authenticate(config: SimulatorConfig, request: Request) -> str:
    key = request.headers.get("APCA-API-KEY-ID")
    secret = request.headers.get("APCA-API-SECRET-KEY")
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


def parse(config: SimulatorConfig, url: Any) -> Query:
    """The query a URL asks, or RestError with Alpaca's status and a message naming the parameter."""
    parts = url.path.strip("/").split("/")[1:]  # after "v2"
    params = {name: values[-1] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
    if len(parts) == 3 and parts[2] in _KINDS:
        resource, symbols, single = parts[2], [unquote(parts[1])], True
        if "symbols" in params:
            raise RestError(400, "unexpected query parameter(s): symbols")
    elif len(parts) == 2 and parts[1] in _KINDS:
        resource, single = parts[1], False
        if not params.get("symbols"):
            raise RestError(400, "symbols missing")
        symbols = [s for s in params.pop("symbols").split(",") if s]
    else:
        raise RestError(404, "Not Found")
    unexpected = sorted(set(params) - _ALLOWED[resource])
    if unexpected:
        raise RestError(400, f"unexpected query parameter(s): {', '.join(unexpected)}")
    bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
    if bad:
        raise RestError(400, f"invalid symbol: {bad[0]}")
    start, end = _time(params, "start"), _time(params, "end")
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
    feed = _feed(config, params.get("feed"))
    return Query(resource, symbols, single, feed, start, end, limit, sort == "desc", token, timeframe)


def _answer(host: Host, url: Any) -> dict[str, Any]:
    q = parse(host.config, url)
    history = host.history(q.feed)
    start = q.start if q.start is not None else day_start(host.market_now_ns())  # the New York day so far
    made = history.clock_ns if history is not None else host.market_now_ns()  # what the market has made
    end = q.end if q.end is not None else max(made, start)
    if end < start:
        raise RestError(422, "end should not be before start")
    views: dict[str, View] = {}
    for symbol in dict.fromkeys(q.symbols):
        view = None
        if history is not None:
            if q.timeframe is not None:
                view = bar_view(history, symbol, q.timeframe)
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


def _time(params: dict[str, str], name: str) -> int | None:
    """RFC 3339 with up to nine fractional digits and any offset, or a date (its New York midnight)."""
    text = params.get(name)
    if not text:
        return None
    try:
        if len(text) > len("2024-06-03"):  # longer than any date: a time
            return parse_rfc3339_ns(text)
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        return day_start(int(moment.timestamp()) * NS + 12 * 3600 * NS)
    except ValueError:
        pass
    raise RestError(400, f"invalid {name}: {text!r}, expected RFC 3339 (2024-06-03T13:30:00.123456789Z) or a date")


def _limit(text: str | None) -> int:
    if not text:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise RestError(400, f"invalid limit: {text!r}, expected an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise RestError(422, f"invalid limit: {limit}, expected 1 to {MAX_LIMIT}")
    return limit


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
