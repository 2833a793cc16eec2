"""Query and path parameters: parsed and checked before anything reaches SQL or Redis.

Every rejection is a 422 in FastAPI's own shape (``{"detail": [{"loc": [...],
"msg": ..., "input": ...}]}``), so a client sees one error format whether
FastAPI or this module refused the value, and each message names the
parameter and what is allowed.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, NoReturn

from fastapi import Header, Path, Query
from fastapi.exceptions import RequestValidationError

from tickpipe.codecs import parse_rfc3339_ns
from tickpipe.feeds import STOCK

NS: Final = 1_000_000_000
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: The range of ``time_ns`` (a signed 64-bit count of nanoseconds since 1970).
MIN_NS: Final = 0
MAX_NS: Final = 2**63 - 1
MAX_LIMIT: Final = 10_000
DEFAULT_LIMIT: Final = 1_000
#: Most symbols one ``/…/latest`` request may name.
MAX_LATEST_SYMBOLS: Final = 1_000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: What the OpenAPI document says of each (checked here, with messages naming what is allowed).
_TICKER = r"[A-Za-z][A-Za-z0-9./-]{0,15}"
SYMBOL_PATTERN: Final = f"^{_TICKER}$"
SYMBOLS_PATTERN: Final = f"^ *{_TICKER} *(, *{_TICKER} *)*$"
TIME_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:?\d{2}))?$"
#: A page token as this API issues it (api/tokens.py): URL-safe base64, unpadded, of a compact JSON array
#: ``[1,"<table>...`` (version 1, then the scope, which starts with a served table's name), in whole
#: 4-character groups plus an optional 2 or 3 (never 1: no byte ends there). The prefixes are the
#: base64 of those leading bytes, cut to whole 3-byte groups. Strings outside it (``0``, a 1-character
#: tail, another version or table) are all refused by the server, so the document does not advertise
#: them as valid; which route and sort a token continues is a cross-field rule no pattern states.
_TOKEN_PREFIXES = sorted(
    base64.urlsafe_b64encode(lead[: len(lead) // 3 * 3]).decode()
    for lead in (f'[1,"{family.name}'.encode() for family in STOCK.stored)
)
TOKEN_PATTERN: Final = f"^(?:{'|'.join(_TOKEN_PREFIXES)})(?:[A-Za-z0-9_-]{{4}})+(?:[A-Za-z0-9_-]{{2,3}})?$"
TOKEN_MAX_LENGTH: Final = 512
_SYMBOL = re.compile(_TICKER, re.ASCII)
_TIME = re.compile(TIME_PATTERN[1:-1], re.ASCII)


def invalid(where: str, name: str, message: str, given: Any) -> NoReturn:
    """Refuse one parameter with a 422 naming it (``where`` is ``query``, ``path`` or ``header``)."""
    raise RequestValidationError([{"type": "value_error", "loc": (where, name), "msg": message, "input": given}])


def symbol_param(text: str, name: str = "symbol", where: str = "path") -> str:
    """A ticker, upper-cased; exactly what ``SYMBOL_PATTERN`` documents (no stray spaces)."""
    if not _SYMBOL.fullmatch(text):
        invalid(
            where,
            name,
            f"expected a ticker symbol (letters, digits, '.', '/', '-', at most 16 characters), got {text!r}",
            text,
        )
    return text.upper()


def parse_time(text: str, name: str, *, end: bool) -> int:
    """RFC 3339 (to the nanosecond) or a date, to ns since the epoch.

    A date as ``start`` is its first nanosecond (UTC); as ``end`` (inclusive)
    its last, so ``start=2024-03-04&end=2024-03-04`` is that whole day.
    """
    if not _TIME.fullmatch(text):
        invalid(
            "query",
            name,
            f"expected an RFC 3339 time like 2024-01-02T15:04:05.123456789Z or a date like 2024-01-02, got {text!r}",
            text,
        )
    try:
        if _DATE.fullmatch(text):
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            ns = (day - EPOCH) // timedelta(microseconds=1) * 1000
            ns = ns + 86_400 * NS - 1 if end else ns
        else:
            ns = parse_rfc3339_ns(text)
    except ValueError as exc:
        invalid("query", name, f"expected a valid date or time ({exc})", text)
    if not MIN_NS <= ns <= MAX_NS:
        invalid("query", name, "expected a time between 1970-01-01 and 2262-04-11", text)
    return ns


def ns_to_utc(ns: int) -> datetime:
    """Nanoseconds to the microsecond ``timestamptz`` the ``time`` column holds (floor, exact)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def datetime_to_ns(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1) * 1000


def parse_symbols(text: str, name: str = "symbols") -> list[str]:
    """A comma-separated list of symbols, each checked, duplicates dropped, order kept."""
    items = [item.strip(" ") for item in text.split(",")]
    if not all(items):
        invalid("query", name, "expected a comma-separated list of symbols, like AAPL,MSFT", text)
    if len(items) > MAX_LATEST_SYMBOLS:
        invalid("query", name, f"expected at most {MAX_LATEST_SYMBOLS} symbols, got {len(items)}", text)
    return list(dict.fromkeys(symbol_param(item, name, "query") for item in items))


def wants_csv(accept: str | None) -> bool:
    """Whether the Accept header prefers ``text/csv`` over JSON (JSON wins ties and ``*/*``)."""
    if not accept or "csv" not in accept:
        return False
    best_csv = best_json = -1.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        if media == "text/csv":
            best_csv = max(best_csv, quality)
        elif media in ("application/json", "application/*", "*/*"):
            best_json = max(best_json, quality)
    return best_csv > 0 and best_csv > best_json


# --- the parameters, as route signatures use them ----------------------------------------------

SymbolPath = Annotated[
    str,
    Path(
        description="Ticker symbol, e.g. AAPL (letters, digits, '.', '/', '-'; case-insensitive)",
        examples=["AAPL"],
        json_schema_extra={"pattern": SYMBOL_PATTERN},
    ),
]
StartQuery = Annotated[
    str | None,
    Query(
        description="Inclusive start: RFC 3339 (to the nanosecond) or a date (its first instant, UTC)",
        examples=["2024-03-04T14:30:00.123456789Z"],
        json_schema_extra={"pattern": TIME_PATTERN},
    ),
]
EndQuery = Annotated[
    str | None,
    Query(
        description="Inclusive end: RFC 3339 (to the nanosecond) or a date (the whole day, UTC)",
        examples=["2024-03-04"],
        json_schema_extra={"pattern": TIME_PATTERN},
    ),
]
LimitQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description=f"Most rows per page (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}). "
        "CSV without a limit streams the range up to API_CSV_MAX_ROWS rows (1,000,000 by default), "
        "with a Next-Page-Token header when more follow.",
    ),
]
Sort = Literal["asc", "desc"]
SortQuery = Annotated[Sort, Query(description="asc (oldest first, the default) or desc (newest first)")]
PageTokenQuery = Annotated[
    str | None,
    Query(
        description="The next_page_token of the previous page, to continue after it",
        json_schema_extra={"pattern": TOKEN_PATTERN, "maxLength": TOKEN_MAX_LENGTH},
    ),
]
AcceptHeader = Annotated[
    str | None,
    Header(description="application/json (default) or text/csv for a streamed CSV body"),
]
SymbolsQuery = Annotated[
    str,
    Query(
        description=f"Comma-separated symbols, e.g. AAPL,MSFT (at most {MAX_LATEST_SYMBOLS})",
        examples=["AAPL,MSFT"],
        json_schema_extra={"pattern": SYMBOLS_PATTERN},
    ),
]
