"""Query and path parameters: parsed and checked before anything reaches SQL or Redis.

Every rejection is a 422 in FastAPI's own shape (``{"detail": [{"loc": [...],
"msg": ..., "input": ...}]}``), so a client sees one error format whether
FastAPI or this module refused the value, and each message names the
parameter and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, NoReturn

from fastapi import Header, Path, Query
from fastapi.exceptions import RequestValidationError
from starlette.convertors import PathConvertor, register_url_convertor

from tickpipe.codecs import parse_rfc3339_ns
from tickpipe.feeds import CRYPTO, OPTIONS
from tickpipe.settings import validate_contract, validate_pair

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
# Dates that exist, from 1971 to 2261: inside the range of ``time_ns`` whatever the UTC offset, so every
# string the pattern admits is a time the server accepts, and nothing else is (a schemathesis run holds the
# document to that). Leap days by the Gregorian rule: 2000 is one, 2100 and 2200 are not.
_YEAR = r"(?:19(?:7[1-9]|[89][0-9])|2[01][0-9]{2}|22[0-5][0-9]|226[01])"
_LEAP_YEAR = (
    r"(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26])|21(?:0[48]|[2468][048]|[13579][26])"
    r"|22(?:0[48]|1[26]|2[048]|3[26]|4[048]|5[26]|60))"
)
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_DAY = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_CLOCK = (
    r"[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])"
)
TIME_PATTERN: Final = f"^{_DAY}(?:{_CLOCK})?$"
_SYMBOL = re.compile(_TICKER, re.ASCII)
#: A crypto pair as the crypto feed declares it (BTC/USD), in either case as tickers are.
_PAIR = CRYPTO.symbol_pattern.replace("A-Z", "A-Za-z")
PAIR_PATTERN: Final = f"^{_PAIR}$"
PAIRS_PATTERN: Final = f"^ *{_PAIR} *(, *{_PAIR} *)*$"
_PAIR_RE = re.compile(_PAIR, re.ASCII)
_PAIR_HELP = "base and quote currency, 1 to 12 letters or digits each, slash-separated"
#: An OCC option contract as the options feed declares it (AAPL240621C00190000), in either case as tickers are.
_CONTRACT = OPTIONS.symbol_pattern.replace("A-Z", "A-Za-z").replace("[CP]", "[CPcp]")
CONTRACT_PATTERN: Final = f"^{_CONTRACT}$"
CONTRACTS_PATTERN: Final = f"^ *{_CONTRACT} *(, *{_CONTRACT} *)*$"
_CONTRACT_RE = re.compile(_CONTRACT, re.ASCII)
_CONTRACT_HELP = "root of 1 to 6 letters or digits, expiry YYMMDD, C or P, strike x 1000 in 8 digits"
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


def pair_param(text: str, name: str = "symbol", where: str = "path") -> str:
    """A crypto pair, upper-cased by :func:`tickpipe.settings.validate_pair`; exactly what ``PAIR_PATTERN``
    documents (no stray spaces)."""
    try:
        pair = validate_pair(text)
    except ValueError as exc:
        invalid(where, name, f"{exc} ({_PAIR_HELP})", text)
    if not _PAIR_RE.fullmatch(text):  # what validate_pair forgives: spaces around it, non-ASCII case folding
        invalid(where, name, f"expected a crypto pair like BTC/USD ({_PAIR_HELP}), got {text!r}", text)
    return pair


def contract_param(text: str, name: str = "symbol", where: str = "path") -> str:
    """An OCC option contract, upper-cased by :func:`tickpipe.settings.validate_contract`; exactly what
    ``CONTRACT_PATTERN`` documents (no stray spaces)."""
    try:
        contract = validate_contract(text)
    except ValueError as exc:
        invalid(where, name, str(exc), text)
    if not _CONTRACT_RE.fullmatch(text):  # what validate_contract forgives: spaces around it, non-ASCII case folding
        invalid(
            where,
            name,
            f"expected an OCC option contract like {OPTIONS.example} ({_CONTRACT_HELP}), got {text!r}",
            text,
        )
    return contract


def parse_time(text: str, name: str, *, end: bool) -> int:
    """RFC 3339 (to the nanosecond) or a date, to ns since the epoch.

    A date as ``start`` is its first nanosecond (UTC); as ``end`` (inclusive)
    its last, so ``start=2024-03-04&end=2024-03-04`` is that whole day.
    """
    if not _TIME.fullmatch(text):
        invalid(
            "query",
            name,
            "expected an RFC 3339 time like 2024-01-02T15:04:05.123456789Z or a date like 2024-01-02 "
            f"(one that exists, 1971 to 2261), got {text!r}",
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


def parse_symbols(
    text: str, name: str = "symbols", check: Callable[[str, str, str], str] = symbol_param, example: str = "AAPL,MSFT"
) -> list[str]:
    """A comma-separated list of symbols, each checked (``check``: a ticker, :func:`pair_param` or
    :func:`contract_param`),
    duplicates dropped, order kept."""
    items = [item.strip(" ") for item in text.split(",")]
    if not all(items):
        invalid("query", name, f"expected a comma-separated list of symbols, like {example}", text)
    if len(items) > MAX_LATEST_SYMBOLS:
        invalid("query", name, f"expected at most {MAX_LATEST_SYMBOLS} symbols, got {len(items)}", text)
    return list(dict.fromkeys(check(item, name, "query") for item in items))


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
        description="Inclusive start: RFC 3339 (to the nanosecond) or a date (its first instant, UTC), "
        "1971 to 2261; a start after the end gives an empty page",
        examples=["2024-03-04T14:30:00.123456789Z"],
        json_schema_extra={"pattern": TIME_PATTERN},
    ),
]
EndQuery = Annotated[
    str | None,
    Query(
        description="Inclusive end: RFC 3339 (to the nanosecond) or a date (the whole day, UTC), 1971 to 2261",
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
PairPath = Annotated[
    str,
    Path(
        description="Crypto pair, e.g. BTC/USD, as is or URL-encoded (BTC%2FUSD); case-insensitive",
        examples=["BTC/USD"],
        json_schema_extra={"pattern": PAIR_PATTERN},
    ),
]
PairsQuery = Annotated[
    str,
    Query(
        description=f"Comma-separated crypto pairs, e.g. BTC/USD,ETH/USD (at most {MAX_LATEST_SYMBOLS})",
        examples=["BTC/USD,ETH/USD"],
        json_schema_extra={"pattern": PAIRS_PATTERN},
    ),
]
ContractPath = Annotated[
    str,
    Path(
        description=f"OCC option contract, e.g. {OPTIONS.example} ({_CONTRACT_HELP}); case-insensitive",
        examples=[OPTIONS.example],
        json_schema_extra={"pattern": CONTRACT_PATTERN},
    ),
]
ContractsQuery = Annotated[
    str,
    Query(
        description=f"Comma-separated OCC option contracts, e.g. {OPTIONS.example},AAPL240621P00190000 "
        f"(at most {MAX_LATEST_SYMBOLS})",
        examples=[f"{OPTIONS.example},AAPL240621P00190000"],
        json_schema_extra={"pattern": CONTRACTS_PATTERN},
    ),
]


class AnyPathConvertor(PathConvertor):
    """Starlette's ``path`` (slashes included), newlines too: every string reaches the symbol's check and is
    refused with a 422 naming it, never a 404 (``path``'s ``.*`` stops at a newline, ``%0A``)."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", AnyPathConvertor())


@dataclass(frozen=True, slots=True)
class Symbols:
    """How one feed's routes take its symbols: the path and query parameters, and their check."""

    #: What one is called in summaries: "symbol", "pair".
    noun: str
    #: The history route's path parameter: ``{symbol}``, or ``{symbol:anypath}`` for symbols with a slash
    #: (``/crypto/quotes/BTC/USD``; the OpenAPI path still reads ``{symbol}``).
    path: str
    #: The check of one (``text, name, where`` -> the normalized symbol, or a 422 naming the parameter).
    check: Callable[[str, str, str], str]
    path_type: Any
    list_type: Any
    #: A list as the latest routes take it, for messages.
    example: str

    def parse(self, text: str, name: str = "symbols") -> list[str]:
        return parse_symbols(text, name, self.check, self.example)


#: Each feed's symbols, by feed name.
SYMBOLS: Final = {
    "stock": Symbols("symbol", "{symbol}", symbol_param, SymbolPath, SymbolsQuery, "AAPL,MSFT"),
    "crypto": Symbols("pair", "{symbol:anypath}", pair_param, PairPath, PairsQuery, "BTC/USD,ETH/USD"),
    "options": Symbols(
        "contract", "{symbol}", contract_param, ContractPath, ContractsQuery, f"{OPTIONS.example},AAPL240621P00190000"
    ),
}
