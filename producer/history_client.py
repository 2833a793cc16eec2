"""A thin async client of Alpaca's historical REST APIs (``/v2/stocks/...``, ``/v1beta3/crypto/us/...``,
``/v1beta1/options/trades``, ``/v1beta1/news``), spending a request budget.

Ours rather than alpaca-py's ``StockHistoricalDataClient``, which is
synchronous (it would block the producer's loop), parses every item into a
pydantic model (several µs each, for rows we only re-encode) and retries a
429 on a fixed schedule without reading the rate-limit headers. Here:

- one multi-symbol request per page (the feed's ``Feed.history_path``: ``/v2/stocks/{trades|quotes|bars}?symbols=``,
  ``/v1beta3/crypto/us/{trades|quotes|bars}?symbols=BTC/USD,...``, ``/v1beta1/options/trades?symbols=``
  of at most 100 contracts, as the gap code batches them), ``limit=10000`` (or the family's
  ``history_limit``: 50 stories of ``/v1beta1/news``) and its ``history_params`` (bars: ``timeframe=1Min``),
  following ``next_page_token``; a window of the whole feed (:data:`~producer.gaps.EVERY`) names no
  symbols (news: every story);
- a request budget of our own (``per_minute``, a sliding minute), so a backfill
  leaves the rest of the account's limit to whoever else uses the key;
- the server's ``X-RateLimit-Remaining``/``-Reset`` are obeyed: at 0 left, wait
  for the reset; a 429 waits for the reset, or backs off (:mod:`tickpipe.backoff`)
  when the answer does not say when;
- ``sleep`` and ``clock`` are seams, so a test can see every wait it asks for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from producer.gaps import EVERY
from tickpipe.backoff import EqualJitterBackoff
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.feeds import STOCK, Family, Feed

log = logging.getLogger(__name__)


def kinds(feed: Feed) -> dict[str, str]:
    """REST resource -> the stream type code its items become (the family's first), as the feed declares
    them, in the order the upstream lists its channels (trades, quotes, bars)."""
    return {
        family.history: family.types[0].code
        for family in sorted(feed.families, key=lambda family: feed.listed.index(family.types[0].channel))
        if family.history is not None
    }


def history_families(feed: Feed) -> dict[str, Family]:
    """REST resource -> the family whose history it is."""
    return {family.history: family for family in feed.families if family.history is not None}


#: The stock feed's :func:`kinds`.
KINDS: Final = kinds(STOCK)
PAGE_LIMIT: Final = 10_000


class HistoryError(Exception):
    """The REST API refused a request in a way waiting cannot fix (400, 401, 403, 404, 422), or could not
    be reached (or answered 5xx) ``give_up_after`` times in a row. The caller decides whether to try later."""


@dataclass(frozen=True)
class Page:
    """One answer: items per symbol (REST shape, times still RFC 3339) and the token of the next page; the
    items of a history that is not per symbol (news: a list of stories) under ``""``."""

    items: dict[str, list[dict[str, Any]]]
    next_token: str | None

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.items.values())


@dataclass
class ClientStats:
    requests: int = 0
    throttled: int = 0  # 429 answers
    waited_s: float = 0.0  # seconds spent waiting for the budget or a reset
    last_limit: dict[str, str] = field(default_factory=dict)  # the last X-RateLimit-* headers seen


class HistoryClient:
    """Pages of a REST resource over a time window, within a request budget.

    ``of``: the feed whose declared histories it pages (their fixed parameters and page bounds); ``path``:
    its ``Feed.history_path`` unless given; ``feed``: the value of the ``feed`` parameter (``iex``), or
    None for an API that takes none (crypto, options, news).
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        secret: str,
        feed: str | None,
        *,
        path: str | None = None,
        of: Feed = STOCK,
        per_minute: int = 120,
        page_limit: int = PAGE_LIMIT,
        give_up_after: int = 6,
        timeout: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.feed = feed
        self.path = (of.history_path or "") if path is None else path
        self.families = history_families(of)
        self.per_minute = per_minute
        self.page_limit = page_limit
        self.give_up_after = give_up_after  # failures in a row (429s excepted) before raising HistoryError
        self.stats = ClientStats()
        self._sleep = sleep
        self._clock = clock
        self._sent: deque[float] = deque()  # when our last ``per_minute`` requests went
        self._server_reset = 0.0  # epoch s: the server said nothing is left until then
        self._backoff = EqualJitterBackoff(base=1.0, cap=60.0)
        headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret, "Accept": "application/json"}
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout, transport=transport, trust_env=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def pages(
        self, resource: str, symbols: list[str], start_ns: int, end_ns: int, token: str | None = None
    ) -> AsyncGenerator[Page, None]:
        """Every page of ``resource`` for ``symbols`` (``[EVERY]``: every item) stamped in [start, end], from
        ``token`` on."""
        family = self.families.get(resource)
        params: dict[str, str] = {} if symbols == [EVERY] else {"symbols": ",".join(symbols)}
        params |= {
            "start": format_rfc3339_ns(start_ns),
            "end": format_rfc3339_ns(end_ns),
            "limit": str(min(self.page_limit, family.history_limit) if family else self.page_limit),
            "sort": "asc",
        }
        if self.feed is not None:
            params["feed"] = self.feed
        if family is not None:
            params |= dict(family.history_params)
        while True:
            if token:
                params["page_token"] = token
            body = await self.get(self.path.format(history=resource), params)
            items = body.get(resource) or {}
            if isinstance(items, list):  # not per symbol: a list of items (news: stories naming any symbols)
                items = {"": items}
            token = body.get("next_page_token")
            yield Page(items, token)
            if not token:
                return

    async def get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """One GET, after whatever wait the budget asks; 429 and 5xx and lost connections are retried."""
        failures = 0
        while True:
            await self._wait_for_budget()
            self._sent.append(self._clock())
            self.stats.requests += 1
            try:
                answer = await self._http.get(self.base_url + path, params=params)
            except httpx.TransportError as exc:
                failures += 1
                if failures >= self.give_up_after:
                    raise HistoryError(f"{path}: {type(exc).__name__} {exc} ({failures} attempts)") from exc
                delay = self._backoff.compute(failures)
                log.warning("history: %s %s; retrying in %.1f s", type(exc).__name__, exc, delay)
                await self._wait(delay)
                continue
            self._read_limits(answer.headers)
            if answer.status_code == 200:
                body: dict[str, Any] = answer.json()
                return body
            if answer.status_code == 429 or answer.status_code >= 500:
                failures += 1
                self.stats.throttled += answer.status_code == 429
                if answer.status_code >= 500 and failures >= self.give_up_after:
                    raise HistoryError(f"{path}: {answer.status_code} {answer.text[:200]} ({failures} attempts)")
                delay = self._backoff.compute(failures)
                if answer.status_code == 429 and self._server_reset > self._clock():
                    delay = max(delay, self._server_reset - self._clock())
                log.warning("history: %s from %s; waiting %.1f s", answer.status_code, path, delay)
                await self._wait(delay)
                continue
            raise HistoryError(f"{path}: {answer.status_code} {answer.text[:200]}")

    def _read_limits(self, headers: httpx.Headers) -> None:
        limits = {k: v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}
        if not limits:
            return
        self.stats.last_limit = limits
        try:
            remaining = int(headers.get("x-ratelimit-remaining", "1"))
            reset = float(headers.get("x-ratelimit-reset", "0"))
        except ValueError:
            return
        self._server_reset = reset if remaining <= 0 else 0.0

    async def _wait_for_budget(self) -> None:
        """Wait while our own minute is spent, or the server said none is left until its reset.

        One wait at most: once it is over the request goes (a server that still refuses says so with 429).
        """
        now = self._clock()
        while self._sent and self._sent[0] <= now - 60:
            self._sent.popleft()
        own = self._sent[0] + 60 - now if len(self._sent) >= self.per_minute else 0.0
        delay = max(own, self._server_reset - now)
        if delay > 0:
            await self._wait(delay)
            if own > 0:
                self._sent.popleft()
        self._server_reset = 0.0

    async def _wait(self, seconds: float) -> None:
        self.stats.waited_s += seconds
        await self._sleep(seconds)
