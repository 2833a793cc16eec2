"""Events to PostgreSQL rows and back, in the column order of :mod:`tickpipe.schema`.

The consumers COPY these tuples; the API and the tests turn rows back into
events, so the mapping lives here once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

from tickpipe.codecs import event_key, ns_to_datetime
from tickpipe.crypto_events import (
    BookLevel,
    CryptoBar,
    CryptoDailyBar,
    CryptoEvent,
    CryptoOrderbook,
    CryptoQuote,
    CryptoTrade,
    CryptoUpdatedBar,
)
from tickpipe.events import (
    Bar,
    DailyBar,
    Event,
    Quote,
    Trade,
    TradeCancel,
    TradeCorrection,
    TradingStatus,
    UpdatedBar,
)
from tickpipe.feeds import TABLES
from tickpipe.feeds.tables import columns, primary_key
from tickpipe.news_events import NewsStory
from tickpipe.option_events import OptionEvent, OptionQuote, OptionTrade
from tickpipe.trade_update_events import TradeUpdate

#: The columns of each table (every feed's, by table name), in :mod:`tickpipe.schema`'s order.
COLUMNS: Final[dict[str, tuple[str, ...]]] = {table: columns(family) for table, (_, family) in TABLES.items()}

#: The primary key of each table: what ON CONFLICT names.
KEYS: Final[dict[str, tuple[str, ...]]] = {table: primary_key(family) for table, (_, family) in TABLES.items()}


def _crypto_row(event: CryptoEvent, when: Any, received: Any) -> tuple[Any, ...]:
    if isinstance(event, CryptoQuote):
        return (
            event.symbol, when, event.timestamp, event_key(event), event.bid_price, event.bid_size,  # type: ignore[arg-type]
            event.ask_price, event.ask_size, received,
        )  # fmt: skip
    if isinstance(event, CryptoTrade):
        return (
            event.symbol, when, event.timestamp, event.trade_id, event.price, event.size, event.taker_side, received,
        )  # fmt: skip
    if isinstance(event, CryptoBar):
        return (
            event.symbol, event.timeframe, when, event.timestamp, event.open, event.high, event.low, event.close,
            event.volume, event.vwap, event.trade_count, event.type_code, received,
        )  # fmt: skip
    if isinstance(event, CryptoOrderbook):
        return (
            event.symbol, when, event.timestamp, event_key(event), event.reset,  # type: ignore[arg-type]
            [level.price for level in event.bids], [level.size for level in event.bids],
            [level.price for level in event.asks], [level.size for level in event.asks], received,
        )  # fmt: skip
    raise ValueError(f"expected a crypto event of a stored family, got {type(event).__name__}")


def _option_row(event: OptionEvent, when: Any, received: Any) -> tuple[Any, ...]:
    if isinstance(event, OptionTrade):
        return (
            event.symbol, when, event.timestamp, event_key(event), event.exchange, event.price,  # type: ignore[arg-type]
            event.size, event.condition, received,
        )  # fmt: skip
    if isinstance(event, OptionQuote):
        return (
            event.symbol, when, event.timestamp, event_key(event), event.bid_exchange,  # type: ignore[arg-type]
            event.bid_price, event.bid_size, event.ask_exchange, event.ask_price, event.ask_size, event.condition,
            received,
        )  # fmt: skip
    raise ValueError(f"expected an option event of a stored family, got {type(event).__name__}")


def _number(text: str | None) -> Decimal | None:
    return None if text is None or text == "" else Decimal(text)


def _trade_update_row(event: TradeUpdate, when: Any, received: Any) -> tuple[Any, ...]:
    order = event.order
    return (
        event.symbol, when, event.timestamp, event.order_id, event.event, event.execution_id,
        order.get("client_order_id") or "", order.get("side") or "", order.get("type") or order.get("order_type") or "",
        _number(order.get("qty")), _number(order.get("filled_qty")), _number(order.get("filled_avg_price")),
        _number(event.price), _number(event.qty), _number(event.position_qty), order.get("status") or "",
        orjson.dumps(order).decode(), received,
    )  # fmt: skip


def _text(number: Decimal | None) -> str | None:
    return None if number is None else str(number)


def _trade_update_from_row(table: str, row: Mapping[str, Any], received: int) -> TradeUpdate:
    if table != "trade_updates":
        raise ValueError(f"expected a stored table among {', '.join(COLUMNS)}, got {table!r}")
    order = row["order_details"]
    return TradeUpdate(
        symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, event=row["event"],
        order=orjson.loads(order) if isinstance(order, str | bytes) else dict(order),
        execution_id=row["execution_id"], price=_text(row["fill_price"]), qty=_text(row["fill_quantity"]),
        position_qty=_text(row["position_quantity"]),
    )  # fmt: skip


def _news_row(event: NewsStory, received: Any) -> tuple[Any, ...]:
    return (
        event.news_id, ns_to_datetime(event.created_at), ns_to_datetime(event.updated_at), event.headline,
        event.summary, event.author, event.url, event.content, list(event.symbols), event.source, received,
    )  # fmt: skip


def _news_from_row(table: str, row: Mapping[str, Any], received: int) -> NewsStory:
    if table != "news":
        raise ValueError(f"expected a stored table among {', '.join(COLUMNS)}, got {table!r}")
    return NewsStory(
        news_id=row["news_id"], created_at=_ns(row["created_at"]), updated_at=_ns(row["updated_at"]),
        headline=row["headline"], summary=row["summary"], author=row["author"], url=row["url"],
        content=row["content"], symbols=tuple(row["symbols"]), source=row["source"], received_at=received,
    )  # fmt: skip


def to_row(event: Event | CryptoEvent | OptionEvent | TradeUpdate | NewsStory) -> tuple[Any, ...]:
    """One event as a tuple for its table; raise ValueError for a type that has no table."""
    received = ns_to_datetime(event.received_at) if event.received_at else None
    if isinstance(event, NewsStory):  # no symbol and no ``t``: times of its own (microseconds stored)
        return _news_row(event, received)
    when = ns_to_datetime(event.timestamp)
    if isinstance(event, CryptoEvent):
        return _crypto_row(event, when, received)
    if isinstance(event, OptionEvent):
        return _option_row(event, when, received)
    if isinstance(event, TradeUpdate):
        return _trade_update_row(event, when, received)
    if isinstance(event, Quote):
        return (
            event.symbol, when, event.timestamp, event_key(event), event.bid_exchange, event.bid_price,
            event.bid_size, event.ask_exchange, event.ask_price, event.ask_size, list(event.conditions),
            event.tape, received,
        )  # fmt: skip
    if isinstance(event, Trade):
        return (
            event.symbol, when, event.timestamp, event.exchange, event.trade_id, event.price, event.size,
            list(event.conditions), event.tape, received,
        )  # fmt: skip
    if isinstance(event, Bar):
        return (
            event.symbol, event.timeframe, when, event.timestamp, event.open, event.high, event.low,
            event.close, event.volume, event.vwap, event.trade_count, event.type_code, received,
        )  # fmt: skip
    if isinstance(event, TradingStatus):
        return (
            event.symbol, when, event.timestamp, event.status_code, event.status_message, event.reason_code,
            event.reason_message, event.tape, received,
        )  # fmt: skip
    if isinstance(event, TradeCorrection):
        return (
            event.symbol, when, event.timestamp, event.exchange, event.original_id, event.original_price,
            event.original_size, list(event.original_conditions), event.corrected_id, event.corrected_price,
            event.corrected_size, list(event.corrected_conditions), event.tape, received,
        )  # fmt: skip
    if isinstance(event, TradeCancel):
        return (
            event.symbol, when, event.timestamp, event.exchange, event.trade_id, event.price, event.size,
            event.action, event.tape, received,
        )  # fmt: skip
    raise ValueError(f"expected an event of a stored family; {type(event).__name__} has no table")


def _ns(moment: Any) -> int:
    """A stored ``timestamptz`` (a datetime) back to nanoseconds since the epoch."""
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _received_ns(row: Mapping[str, Any]) -> int:
    received = row["received_at"]
    if received is None:
        return 0
    return _ns(received)


def _levels(prices: list[float], sizes: list[float]) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(price, size) for price, size in zip(prices, sizes, strict=True))


def _crypto_from_row(table: str, row: Mapping[str, Any], received: int) -> CryptoEvent:
    if table == "crypto_quotes":
        return CryptoQuote(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, bid_price=row["bid_price"],
            bid_size=row["bid_size"], ask_price=row["ask_price"], ask_size=row["ask_size"],
        )  # fmt: skip
    if table == "crypto_trades":
        return CryptoTrade(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, trade_id=row["trade_id"],
            price=row["price"], size=row["size"], taker_side=row["taker_side"],
        )  # fmt: skip
    if table == "crypto_bars":
        cls = {"b": CryptoBar, "u": CryptoUpdatedBar, "d": CryptoDailyBar}[row["updated"]]
        return cls(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, open=row["open"],
            high=row["high"], low=row["low"], close=row["close"], volume=row["volume"], vwap=row["vwap"],
            trade_count=row["trade_count"],
        )  # fmt: skip
    if table == "crypto_orderbooks":
        return CryptoOrderbook(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, reset=row["reset"],
            bids=_levels(row["bid_prices"], row["bid_sizes"]), asks=_levels(row["ask_prices"], row["ask_sizes"]),
        )  # fmt: skip
    raise ValueError(f"expected a stored table among {', '.join(COLUMNS)}, got {table!r}")


def _option_from_row(table: str, row: Mapping[str, Any], received: int) -> OptionEvent:
    if table == "options_trades":
        return OptionTrade(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, exchange=row["exchange"],
            price=row["price"], size=row["size"], condition=row["condition"],
        )  # fmt: skip
    if table == "options_quotes":
        return OptionQuote(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, bid_exchange=row["bid_exchange"],
            bid_price=row["bid_price"], bid_size=row["bid_size"], ask_exchange=row["ask_exchange"],
            ask_price=row["ask_price"], ask_size=row["ask_size"], condition=row["condition"],
        )  # fmt: skip
    raise ValueError(f"expected a stored table among {', '.join(COLUMNS)}, got {table!r}")


#: The row readers of the feeds other than stocks, by feed name (a table's feed is ``TABLES[table][0]``).
_FEED_FROM_ROW: Final[dict[str, Callable[[str, Mapping[str, Any], int], Any]]] = {
    "crypto": _crypto_from_row, "options": _option_from_row, "trade_updates": _trade_update_from_row,
    "news": _news_from_row,
}  # fmt: skip


def from_row(table: str, row: Mapping[str, Any], *, with_received: bool = False) -> Any:
    """A stored row back to the event it came from (``received_at`` only to the microsecond)."""
    received = _received_ns(row) if with_received else 0
    feed_reader = _FEED_FROM_ROW.get(TABLES[table][0].name) if table in TABLES else None
    if feed_reader is not None:
        return feed_reader(table, row, received)
    if table == "quotes":
        return Quote(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received,
            bid_exchange=row["bid_exchange"], bid_price=row["bid_price"], bid_size=row["bid_size"],
            ask_exchange=row["ask_exchange"], ask_price=row["ask_price"], ask_size=row["ask_size"],
            conditions=tuple(row["conditions"]), tape=row["tape"],
        )  # fmt: skip
    if table == "trades":
        return Trade(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, trade_id=row["trade_id"],
            exchange=row["exchange"], price=row["price"], size=row["size"],
            conditions=tuple(row["conditions"]), tape=row["tape"],
        )  # fmt: skip
    if table == "bars":
        cls = {"b": Bar, "u": UpdatedBar, "d": DailyBar}[row["updated"]]
        return cls(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, open=row["open"],
            high=row["high"], low=row["low"], close=row["close"], volume=row["volume"], vwap=row["vwap"],
            trade_count=row["trade_count"],
        )  # fmt: skip
    if table == "statuses":
        return TradingStatus(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, status_code=row["status_code"],
            status_message=row["status_message"], reason_code=row["reason_code"],
            reason_message=row["reason_message"], tape=row["tape"],
        )  # fmt: skip
    if table == "corrections":
        return TradeCorrection(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, exchange=row["exchange"],
            original_id=row["original_id"], original_price=row["original_price"],
            original_size=row["original_size"], original_conditions=tuple(row["original_conditions"]),
            corrected_id=row["corrected_id"], corrected_price=row["corrected_price"],
            corrected_size=row["corrected_size"], corrected_conditions=tuple(row["corrected_conditions"]),
            tape=row["tape"],
        )  # fmt: skip
    if table == "cancels":
        return TradeCancel(
            symbol=row["symbol"], timestamp=row["time_ns"], received_at=received, exchange=row["exchange"],
            trade_id=row["trade_id"], price=row["price"], size=row["size"], action=row["action"], tape=row["tape"],
        )  # fmt: skip
    raise ValueError(f"expected a stored table among {', '.join(COLUMNS)}, got {table!r}")
