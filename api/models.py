"""Response schemas, for the OpenAPI document (``/docs``) and its examples.

Handlers build their JSON bytes directly (see :mod:`api.pages`), so these
models describe the responses without costing a validation per row; the
schemathesis test checks that the two agree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

T_DOC = "Event time, RFC 3339 UTC with nine fractional digits"


class QuoteOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    t: str = Field(description=T_DOC)
    ax: str = Field(description="Ask exchange")
    ap: float = Field(description="Ask price")
    as_: int = Field(alias="as", description="Ask size")
    bx: str = Field(description="Bid exchange")
    bp: float = Field(description="Bid price")
    bs: int = Field(description="Bid size")
    c: list[str] = Field(description="Conditions")
    z: str = Field(description="Tape")


class TradeOut(BaseModel):
    t: str = Field(description=T_DOC)
    x: str = Field(description="Exchange")
    p: float = Field(description="Price")
    s: int = Field(description="Size")
    c: list[str] = Field(description="Conditions")
    i: int = Field(description="Trade id")
    z: str = Field(description="Tape")
    cancelled: str | None = Field(
        default=None,
        description="Only with include_cancelled=true, only on a cancelled trade: C (cancel) or E (error)",
    )


class BarOut(BaseModel):
    t: str = Field(description="Bar start, " + T_DOC)
    o: float = Field(description="Open")
    h: float = Field(description="High")
    l: float = Field(description="Low")  # noqa: E741 - Alpaca's name
    c: float = Field(description="Close")
    v: int = Field(description="Volume")
    n: int = Field(description="Trade count")
    vw: float = Field(description="Volume-weighted average price")


class CryptoQuoteOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    t: str = Field(description=T_DOC)
    bp: float = Field(description="Bid price (quote currency per unit of the base currency)")
    bs: float = Field(description="Bid size (units of the base currency)")
    ap: float = Field(description="Ask price")
    as_: float = Field(alias="as", description="Ask size")


class CryptoTradeOut(BaseModel):
    t: str = Field(description=T_DOC)
    p: float = Field(description="Price (quote currency per unit of the base currency)")
    s: float = Field(description="Size (units of the base currency)")
    tks: str = Field(description="Taker side: B a buyer lifted the ask, S a seller hit the bid")
    i: int = Field(description="Trade id")


class CryptoBarOut(BaseModel):
    t: str = Field(description="Bar start, " + T_DOC)
    o: float = Field(description="Open")
    h: float = Field(description="High")
    l: float = Field(description="Low")  # noqa: E741 - Alpaca's name
    c: float = Field(description="Close")
    v: float = Field(description="Volume (units of the base currency)")
    n: int = Field(description="Trade count")
    vw: float = Field(description="Volume-weighted average price")


class OptionQuoteOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    t: str = Field(description=T_DOC)
    bx: str = Field(description="Bid exchange (OPRA venue code)")
    bp: float = Field(description="Bid price (premium per share of the underlying, USD)")
    bs: int = Field(description="Bid size (contracts)")
    ax: str = Field(description="Ask exchange (OPRA venue code)")
    ap: float = Field(description="Ask price")
    as_: int = Field(alias="as", description="Ask size (contracts)")
    c: str = Field(description="Quote condition (one OPRA code)")


class OptionTradeOut(BaseModel):
    t: str = Field(description=T_DOC)
    x: str = Field(description="Exchange (OPRA venue code)")
    p: float = Field(description="Price (premium per share of the underlying, USD)")
    s: int = Field(description="Size (contracts)")
    c: str = Field(description="Trade condition (one OPRA code)")


class BookLevelOut(BaseModel):
    p: float = Field(description="Price")
    s: float = Field(description="Size at the price (units of the base currency)")


class OrderbookOut(BaseModel):
    t: str = Field(description="Time of the book's last change, " + T_DOC)
    b: list[BookLevelOut] = Field(description="Bids, best (highest) first")
    a: list[BookLevelOut] = Field(description="Asks, best (lowest) first")


QUOTE_EXAMPLE: dict[str, Any] = {
    "t": "2024-03-04T14:30:00.123456789Z",
    "ax": "V",
    "ap": 187.25,
    "as": 300,
    "bx": "V",
    "bp": 187.24,
    "bs": 200,
    "c": ["R"],
    "z": "C",
}
TRADE_EXAMPLE: dict[str, Any] = {
    "t": "2024-03-04T14:30:00.223456789Z",
    "x": "V",
    "p": 187.245,
    "s": 100,
    "c": ["@"],
    "i": 52983525029461,
    "z": "C",
}
BAR_EXAMPLE: dict[str, Any] = {
    "t": "2024-03-04T14:30:00.000000000Z",
    "o": 187.2,
    "h": 187.9,
    "l": 187.1,
    "c": 187.6,
    "v": 120345,
    "n": 1432,
    "vw": 187.47,
}
CRYPTO_QUOTE_EXAMPLE: dict[str, Any] = {
    "t": "2024-03-04T14:30:00.123456789Z",
    "bp": 65012.5,
    "bs": 0.41,
    "ap": 65013.1,
    "as": 0.2755,
}
CRYPTO_TRADE_EXAMPLE: dict[str, Any] = {
    "t": "2024-03-04T14:30:00.223456789Z",
    "p": 65013.1,
    "s": 0.0125,
    "tks": "B",
    "i": 2415133,
}
CRYPTO_BAR_EXAMPLE: dict[str, Any] = {
    "t": "2024-03-04T14:30:00.000000000Z",
    "o": 65001.2,
    "h": 65020.0,
    "l": 64990.4,
    "c": 65013.1,
    "v": 3.1875,
    "n": 52,
    "vw": 65008.72,
}
ORDERBOOK_EXAMPLE: dict[str, Any] = {
    "t": "2024-03-04T14:30:00.323456789Z",
    "b": [{"p": 65012.5, "s": 0.41}, {"p": 65011.0, "s": 1.2}],
    "a": [{"p": 65013.1, "s": 0.2755}, {"p": 65015.0, "s": 0.8}],
}
OPTION_CONTRACT = "AAPL240621C00190000"
OPTION_QUOTE_EXAMPLE: dict[str, Any] = {
    "t": "2024-03-04T14:30:00.123456789Z",
    "bx": "C",
    "bp": 4.15,
    "bs": 12,
    "ax": "N",
    "ap": 4.25,
    "as": 30,
    "c": "A",
}
OPTION_TRADE_EXAMPLE: dict[str, Any] = {
    "t": "2024-03-04T14:30:00.223456789Z",
    "x": "C",
    "p": 4.2,
    "s": 3,
    "c": "I",
}
TOKEN_EXAMPLE = "WzEsInF1b3RlcyIsImFzYyIsMTcwOTU2MjYwMDEyMzQ1Njc4OSw0Ml0"


def _example(data: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [data]})


class QuotesPage(BaseModel):
    model_config = _example({"quotes": [QUOTE_EXAMPLE], "symbol": "AAPL", "next_page_token": TOKEN_EXAMPLE})
    quotes: list[QuoteOut]
    symbol: str
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last")


class TradesPage(BaseModel):
    model_config = _example({"trades": [TRADE_EXAMPLE], "symbol": "AAPL", "next_page_token": None})
    trades: list[TradeOut]
    symbol: str
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last")


class BarsPage(BaseModel):
    model_config = _example({"bars": [BAR_EXAMPLE], "symbol": "AAPL", "next_page_token": None})
    bars: list[BarOut]
    symbol: str
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last")


class LatestQuotes(BaseModel):
    model_config = _example({"quotes": {"AAPL": QUOTE_EXAMPLE}})
    quotes: dict[str, QuoteOut] = Field(description="Latest quote by symbol; symbols without any are left out")


class LatestTrades(BaseModel):
    model_config = _example({"trades": {"AAPL": TRADE_EXAMPLE}})
    trades: dict[str, TradeOut] = Field(description="Latest trade by symbol; symbols without any are left out")


class LatestBars(BaseModel):
    model_config = _example({"bars": {"AAPL": BAR_EXAMPLE}})
    bars: dict[str, BarOut] = Field(description="Latest minute bar by symbol; symbols without any are left out")


class CryptoQuotesPage(BaseModel):
    model_config = _example({"quotes": [CRYPTO_QUOTE_EXAMPLE], "symbol": "BTC/USD", "next_page_token": None})
    quotes: list[CryptoQuoteOut]
    symbol: str
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last")


class CryptoTradesPage(BaseModel):
    model_config = _example({"trades": [CRYPTO_TRADE_EXAMPLE], "symbol": "BTC/USD", "next_page_token": None})
    trades: list[CryptoTradeOut]
    symbol: str
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last")


class CryptoBarsPage(BaseModel):
    model_config = _example({"bars": [CRYPTO_BAR_EXAMPLE], "symbol": "BTC/USD", "next_page_token": None})
    bars: list[CryptoBarOut]
    symbol: str
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last")


class LatestCryptoQuotes(BaseModel):
    model_config = _example({"quotes": {"BTC/USD": CRYPTO_QUOTE_EXAMPLE}})
    quotes: dict[str, CryptoQuoteOut] = Field(description="Latest quote by pair; pairs without any are left out")


class LatestCryptoTrades(BaseModel):
    model_config = _example({"trades": {"BTC/USD": CRYPTO_TRADE_EXAMPLE}})
    trades: dict[str, CryptoTradeOut] = Field(description="Latest trade by pair; pairs without any are left out")


class LatestCryptoBars(BaseModel):
    model_config = _example({"bars": {"BTC/USD": CRYPTO_BAR_EXAMPLE}})
    bars: dict[str, CryptoBarOut] = Field(description="Latest minute bar by pair; pairs without any are left out")


class OptionQuotesPage(BaseModel):
    model_config = _example({"quotes": [OPTION_QUOTE_EXAMPLE], "symbol": OPTION_CONTRACT, "next_page_token": None})
    quotes: list[OptionQuoteOut]
    symbol: str
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last")


class OptionTradesPage(BaseModel):
    model_config = _example({"trades": [OPTION_TRADE_EXAMPLE], "symbol": OPTION_CONTRACT, "next_page_token": None})
    trades: list[OptionTradeOut]
    symbol: str
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last")


class LatestOptionQuotes(BaseModel):
    model_config = _example({"quotes": {OPTION_CONTRACT: OPTION_QUOTE_EXAMPLE}})
    quotes: dict[str, OptionQuoteOut] = Field(
        description="Latest quote by contract; contracts without any are left out"
    )


class LatestOptionTrades(BaseModel):
    model_config = _example({"trades": {OPTION_CONTRACT: OPTION_TRADE_EXAMPLE}})
    trades: dict[str, OptionTradeOut] = Field(
        description="Latest trade by contract; contracts without any are left out"
    )


class LatestOrderbooks(BaseModel):
    model_config = _example({"orderbooks": {"BTC/USD": ORDERBOOK_EXAMPLE}})
    orderbooks: dict[str, OrderbookOut] = Field(
        description="Current whole book by pair; pairs without a live book are left out"
    )


class SymbolsOut(BaseModel):
    model_config = _example({"symbols": ["AAPL", "MSFT", "TSLA"], "options": [OPTION_CONTRACT]})
    symbols: list[str] = Field(description="Every stock symbol with live data in Redis or history in PostgreSQL")
    crypto: list[str] | None = Field(
        None, description="Every crypto pair known the same way; present when ALPACA_FEEDS names crypto"
    )
    options: list[str] | None = Field(
        None, description="Every OCC option contract known the same way; present when ALPACA_FEEDS names options"
    )


class Alive(BaseModel):
    model_config = _example({"status": "alive"})
    status: str


class Readiness(BaseModel):
    model_config = _example({"ready": True, "postgres": "ok", "redis": "ok"})
    ready: bool
    postgres: str = Field(description='"ok" or why it does not answer')
    redis: str = Field(description='"ok" or why it does not answer')


class Unavailable(BaseModel):
    model_config = _example({"detail": "PostgreSQL is unavailable: connection refused"})
    detail: str


class Refused(BaseModel):
    """Alpaca's error body: a numeric code (the status and 10000) and what to do about it."""

    model_config = _example({"code": 40110000, "message": "request is not authorized: send the ... headers"})
    code: int
    message: str


#: What every data route may answer when API keys are required (TICKPIPE_API_AUTH, ``tickpipe keys``).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Refused, "description": "No key: send APCA-API-KEY-ID and APCA-API-SECRET-KEY"},
    403: {"model": Refused, "description": "An unknown or revoked key, or a wrong secret"},
    429: {"model": Refused, "description": "Over the key's requests per minute; see Retry-After"},
}


CSV_EXAMPLES = {
    "quotes": "symbol,time,bid_exchange,bid_price,bid_size,ask_exchange,ask_price,ask_size,conditions,tape\n"
    'AAPL,2024-03-04T14:30:00.123456789Z,V,187.24,200,V,187.25,300,"[""R""]",C\n',
    "trades": "symbol,time,exchange,trade_id,price,size,conditions,tape\n"
    'AAPL,2024-03-04T14:30:00.223456789Z,V,52983525029461,187.245,100,"[""@""]",C\n',
    "bars": "symbol,time,open,high,low,close,volume,vwap,trade_count\n"
    "AAPL,2024-03-04T14:30:00.000000000Z,187.2,187.9,187.1,187.6,120345,187.47,1432\n",
    "crypto_quotes": "symbol,time,bid_price,bid_size,ask_price,ask_size\n"
    "BTC/USD,2024-03-04T14:30:00.123456789Z,65012.5,0.41,65013.1,0.2755\n",
    "crypto_trades": "symbol,time,trade_id,price,size,taker_side\n"
    "BTC/USD,2024-03-04T14:30:00.223456789Z,2415133,65013.1,0.0125,B\n",
    "crypto_bars": "symbol,time,open,high,low,close,volume,vwap,trade_count\n"
    "BTC/USD,2024-03-04T14:30:00.000000000Z,65001.2,65020,64990.4,65013.1,3.1875,65008.72,52\n",
    "options_quotes": "symbol,time,bid_exchange,bid_price,bid_size,ask_exchange,ask_price,ask_size,condition\n"
    f"{OPTION_CONTRACT},2024-03-04T14:30:00.123456789Z,C,4.15,12,N,4.25,30,A\n",
    "options_trades": "symbol,time,exchange,price,size,condition\n"
    f"{OPTION_CONTRACT},2024-03-04T14:30:00.223456789Z,C,4.2,3,I\n",
}


def history_responses(table: str) -> dict[int | str, dict[str, Any]]:
    """The documented responses of a history route: JSON or CSV, and why it may fail."""
    return {
        200: {
            "description": "One page, or with `Accept: text/csv` the rows as a streamed CSV "
            "(its `Next-Page-Token` header continues when `limit` cut it short)",
            "content": {"text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLES[table]}},
        },
        503: {
            "model": Unavailable,
            "description": "PostgreSQL does not answer, every pooled connection stayed busy for "
            "API_DB_POOL_TIMEOUT_S, or API_CSV_EXPORTS_MAX CSV exports are streaming already (see Retry-After)",
        },
    }
