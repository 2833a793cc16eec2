"""``GET /quotes/{symbol}``, ``/trades/{symbol}``, ``/bars/{symbol}``: history pages from PostgreSQL."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.csv import csv_response
from api.deps import History, State
from api.models import BarsPage, QuotesPage, TradesPage, history_responses
from api.pages import PageRequest, fetch_page, page_json

router = APIRouter(tags=["history"])

PAGING = (
    "Rows in time order (`sort=asc`, the default, or `desc`), at most `limit` per page. "
    "When more rows follow, `next_page_token` is set: pass it as `page_token` (with the same "
    "path, timeframe and sort) for the next page. Pages are keyed on the last row, so rows "
    "inserted meanwhile never cause a gap or a repeat. An unknown symbol gives an empty page. "
    "With `Accept: text/csv` the rows are streamed as CSV; without a `limit` the whole range."
)
Timeframe = Annotated[
    Literal["1Min", "5Min", "15Min", "1Hour", "1Day"],
    Query(
        description="1Min as stored; 5Min, 15Min, 1Hour (UTC-aligned) and 1Day (New York calendar days) "
        "are aggregated from minute bars"
    ),
]


async def respond(state: State, request: PageRequest, csv: bool) -> Response:
    if csv:
        return await csv_response(state.pool, request)
    page = await fetch_page(state.pool, request)
    return Response(page_json(request, page), media_type="application/json")


@router.get(
    "/quotes/{symbol}",
    response_model=QuotesPage,
    summary="Quotes of one symbol",
    description=f"Stored quotes (NBBO updates) of `symbol`. {PAGING}",
    responses=history_responses("quotes"),
)
async def quotes(state: State, params: History) -> Response:
    return await respond(state, params.request("quotes"), params.csv)


@router.get(
    "/trades/{symbol}",
    response_model=TradesPage,
    summary="Trades of one symbol",
    description=f"Stored trades of `symbol`. {PAGING}",
    responses=history_responses("trades"),
)
async def trades(state: State, params: History) -> Response:
    return await respond(state, params.request("trades"), params.csv)


@router.get(
    "/bars/{symbol}",
    response_model=BarsPage,
    summary="Bars of one symbol",
    description=f"Bars of `symbol` in the chosen `timeframe`. {PAGING}",
    responses=history_responses("bars"),
)
async def bars(state: State, params: History, timeframe: Timeframe = "1Min") -> Response:
    return await respond(state, params.request("bars", timeframe), params.csv)
