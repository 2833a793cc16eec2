"""``GET /quotes/{symbol}``, ``/trades/{symbol}``, ``/bars/{symbol}``: history pages from PostgreSQL.

One route per served table of every feed of the declaration (:mod:`tickpipe.feeds`):
the stock feed's ``/quotes/{symbol}`` ..., the crypto feed's ``/crypto/quotes/{symbol}``
... (a pair has a slash: ``/crypto/quotes/BTC/USD`` or ``BTC%2FUSD``), the options feed's
``/options/trades/{symbol}`` and ``/options/quotes/{symbol}`` (OCC contracts), all served by
:func:`respond`; ``DOCS`` holds what the OpenAPI document says of each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from api.csv import csv_response
from api.deps import HISTORY, HistoryParams, State
from api.models import (
    BarsPage,
    CryptoBarsPage,
    CryptoQuotesPage,
    CryptoTradesPage,
    OptionQuotesPage,
    OptionTradesPage,
    QuotesPage,
    TradesPage,
    history_responses,
)
from api.pages import PageRequest, fetch_page, page_json
from api.params import SYMBOLS
from api.queries import SERVED
from tickpipe.feeds import Family

router = APIRouter(tags=["history"])

PAGING = (
    "Rows in time order (`sort=asc`, the default, or `desc`), at most `limit` per page. "
    "When more rows follow, `next_page_token` is set: pass it as `page_token` (with the same "
    "parameters) for the next page. Pages are keyed on the last row, so rows "
    "inserted meanwhile never cause a gap or a repeat. An unknown symbol gives an empty page. "
    "With `Accept: text/csv` the rows are streamed as CSV; without a `limit`, up to the instance's row cap "
    "(API_CSV_MAX_ROWS), the `Next-Page-Token` header continuing it. A 503 with `Retry-After` means the "
    "instance is at a bound (connections, concurrent exports): retry."
)
Timeframes = Literal["1Min", "5Min", "15Min", "1Hour", "1Day"]
Timeframe = Annotated[
    Timeframes,
    Query(
        description="1Min as stored; 5Min, 15Min, 1Hour (UTC-aligned) and 1Day (New York calendar days) "
        "are aggregated from minute bars"
    ),
]
#: Crypto trades around the clock; its days are US Central's, as Alpaca's crypto daily bars are.
CryptoTimeframe = Annotated[
    Timeframes,
    Query(
        description="1Min as stored; 5Min, 15Min, 1Hour (UTC-aligned) and 1Day (US Central calendar days, "
        "from midnight America/Chicago, as Alpaca's crypto daily bars) are aggregated from minute bars"
    ),
]
TIMEFRAMES: Final = {"stock": Timeframe, "crypto": CryptoTimeframe}

IncludeCancelled = Annotated[
    bool,
    Query(
        description="Also return cancelled and busted trades, each with `cancelled` (C cancel, E error); "
        "in CSV a `cancel_action` column. By default they are left out"
    ),
]
Original = Annotated[
    bool,
    Query(
        description="The trades as printed, before any correction or cancel (every stored trade, no `cancelled`); "
        "by default corrected trades show their corrected price, size and conditions"
    ),
]
AMENDS = (
    "Corrections and cancels are applied (the view `trades_corrected`): a corrected trade shows its corrected "
    "price, size and conditions under its original id and time, a cancelled one is left out unless "
    "`include_cancelled=true`; `original=true` gives the trades as printed."
)


#: What the docs say of each served table's history: its page model and what a stored row is.
DOCS: Final[dict[str, tuple[type[BaseModel], str]]] = {
    "quotes": (QuotesPage, "Stored quotes (NBBO updates) of `symbol`."),
    "trades": (TradesPage, f"Stored trades of `symbol`. {AMENDS}"),
    "bars": (BarsPage, "Bars of `symbol` in the chosen `timeframe`."),
    "crypto_quotes": (CryptoQuotesPage, "Stored quotes (best bid and ask) of the crypto pair `symbol`."),
    "crypto_trades": (CryptoTradesPage, "Stored trades of the crypto pair `symbol`, with the taker's side."),
    "crypto_bars": (CryptoBarsPage, "Bars of the crypto pair `symbol` in the chosen `timeframe`."),
    "options_quotes": (OptionQuotesPage, "Stored quotes (best bid and ask) of the option contract `symbol`."),
    "options_trades": (OptionTradesPage, "Stored trades of the option contract `symbol`."),
}


async def respond(state: State, request: PageRequest, csv: bool) -> Response:
    if csv:
        return await csv_response(state.pool, state.csv_exports, state.settings.api_csv_max_rows, request)
    page = await fetch_page(state.pool, request)
    return Response(page_json(request, page), media_type="application/json")


def endpoint(table: str, family: Family, timeframe_type: Any = Timeframe) -> Callable[..., Awaitable[Response]]:
    """The handler of one table's history; with a ``timeframe`` parameter where the table pins one."""
    name = table
    history = HISTORY[name]  # the parameters, with this table's page-token pattern and the feed's symbols
    if "timeframe" in dict(family.pinned):

        async def timeframed(state: State, params: HistoryParams = history, timeframe: Timeframe = "1Min") -> Response:
            return await respond(state, params.request(name, timeframe), params.csv)

        timeframed.__annotations__["timeframe"] = timeframe_type
        return timeframed

    if family.view is not None:

        async def amended(
            state: State,
            params: HistoryParams = history,
            include_cancelled: IncludeCancelled = False,
            original: Original = False,
        ) -> Response:
            amend = "" if original else "mark" if include_cancelled else "exclude"
            return await respond(state, replace(params.request(name), amend=amend), params.csv)

        return amended

    async def plain(state: State, params: HistoryParams = history) -> Response:
        return await respond(state, params.request(name), params.csv)

    return plain


for _table, (_feed, _family) in SERVED.items():
    _model, _what = DOCS[_table]
    _symbols = SYMBOLS[_feed.name]
    # A feed's timeframes are described only where it has bars (the options feed has none).
    _timeframe = TIMEFRAMES[_feed.name] if "timeframe" in dict(_family.pinned) else Timeframe
    router.add_api_route(
        f"{_feed.route(_family.name)}/{_symbols.path}",
        endpoint(_table, _family, _timeframe),
        methods=["GET"],
        name=_table,
        response_model=_model,
        summary=f"{_family.name.capitalize()} of one {_symbols.noun}",
        description=f"{_what} {PAGING}",
        responses=history_responses(_table),
    )
