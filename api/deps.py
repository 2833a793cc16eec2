"""Dependencies as ``Annotated`` aliases, so route signatures read like prose.

``State`` is the running instance (pool, Redis, hub); ``History`` is the
checked history parameters shared by the quotes, trades and bars routes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Request

from api.auth import KEY_HEADER, SECRET_HEADER, ApiKey
from api.pages import PageRequest
from api.params import (
    DEFAULT_LIMIT,
    AcceptHeader,
    EndQuery,
    LimitQuery,
    PageTokenQuery,
    SortQuery,
    StartQuery,
    SymbolPath,
    invalid,
    parse_time,
    symbol_param,
    wants_csv,
)
from api.state import ApiState
from api.tokens import decode_token


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]


async def api_key(request: Request, state: State) -> ApiKey | None:
    """The request's key, counted against its rate (None when auth is off); else 401, 403 or 429."""
    headers = request.headers
    return await state.keys.http_key(headers.get(KEY_HEADER), headers.get(SECRET_HEADER), request.scope.get("server"))


@dataclass(frozen=True, slots=True)
class HistoryParams:
    symbol: str
    start_ns: int
    end_ns: int
    limit: int | None
    sort: str
    page_token: str | None
    csv: bool

    def request(self, table: str, timeframe: str = "1Min") -> PageRequest:
        """The page request for one table; the token is checked against it here."""
        request = PageRequest(
            table=table,
            symbol=self.symbol,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            limit=self.limit if self.limit is not None or self.csv else DEFAULT_LIMIT,
            sort=self.sort,
            timeframe=timeframe,
        )
        if self.page_token is None:
            return request
        return replace(request, token=decode_token(self.page_token, request.scope, self.sort))


async def history_params(
    symbol: SymbolPath,
    start: StartQuery = None,
    end: EndQuery = None,
    limit: LimitQuery = None,
    sort: SortQuery = "asc",
    page_token: PageTokenQuery = None,
    accept: AcceptHeader = None,
) -> HistoryParams:
    start_ns = parse_time(start, "start", end=False) if start is not None else 0
    end_ns = parse_time(end, "end", end=True) if end is not None else 2**63 - 1
    if start_ns > end_ns:
        invalid("query", "start", f"expected start not after end (start={start}, end={end})", start)
    return HistoryParams(symbol_param(symbol), start_ns, end_ns, limit, sort, page_token, wants_csv(accept))


History = Annotated[HistoryParams, Depends(history_params)]
