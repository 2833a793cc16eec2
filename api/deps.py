"""Dependencies as ``Annotated`` aliases, so route signatures read like prose.

``State`` is the running instance (pool, Redis, hub); ``HISTORY[table]`` is the
checked history parameters shared by the quotes, trades and bars routes.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from api.auth import KEY_HEADER, SECRET_HEADER, ApiKey
from api.pages import PageRequest
from api.params import (
    DEFAULT_LIMIT,
    SYMBOLS,
    AcceptHeader,
    EndQuery,
    LimitQuery,
    SortQuery,
    StartQuery,
    SymbolPath,
    parse_time,
    symbol_param,
    wants_csv,
)
from api.queries import SERVED
from api.state import ApiState
from api.tokens import MAX_LENGTH, PATTERNS, decode_token


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
        return replace(request, token=decode_token(self.page_token, table))


async def history_params(
    symbol: SymbolPath,
    start: StartQuery = None,
    end: EndQuery = None,
    limit: LimitQuery = None,
    sort: SortQuery = "asc",
    page_token: str | None = None,
    accept: AcceptHeader = None,
    *,
    check: Callable[[str, str, str], str] = symbol_param,
) -> HistoryParams:
    """The checked parameters (``check``: how the feed's symbols are checked, tickers by default)."""
    start_ns = parse_time(start, "start", end=False) if start is not None else 0
    end_ns = parse_time(end, "end", end=True) if end is not None else 2**63 - 1
    # A start after the end is an empty range, not an error: an empty page, as the document says.
    symbol = check(symbol, "symbol", "path")
    return HistoryParams(symbol, start_ns, end_ns, limit, sort, page_token, wants_csv(accept))


def _page_token_query(table: str) -> Any:
    return Annotated[
        str | None,
        Query(
            description="The next_page_token of the previous page, to continue after its last row (the same "
            "route; another sort or timeframe continues from that row too)",
            json_schema_extra={"pattern": PATTERNS[table], "maxLength": MAX_LENGTH},
        ),
    ]


def _history_params_of(table: str) -> Callable[..., Awaitable[HistoryParams]]:
    """:func:`history_params` documented with the pattern of ``table``'s page tokens (one per route) and
    its feed's symbols (tickers, or crypto pairs).

    The same function under another signature: FastAPI reads a dependency's parameters from
    ``__signature__``, a token of one table is no token of another, and a pair is no ticker.
    """
    symbols = SYMBOLS[SERVED[table][0].name]

    async def of_table(**params: Any) -> HistoryParams:
        return await history_params(**params, check=symbols.check)

    signature = inspect.signature(history_params, eval_str=True)
    annotations = {"page_token": _page_token_query(table), "symbol": symbols.path_type}
    of_table.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=annotations.get(p.name, p.annotation))
            for p in signature.parameters.values()
            if p.name != "check"
        ]
    )
    return of_table


#: The checked history parameters of each served table's routes (every feed's, by table name).
HISTORY: dict[str, Any] = {table: Depends(_history_params_of(table)) for table in SERVED}
