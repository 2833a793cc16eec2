"""The trading stream's dialect (``alpaca-trading``), spoken by the simulator, the producer and the API.

Every message is one JSON object ``{"stream": ..., "data": ...}`` sent in a
binary frame (alpaca-py's ``TradingStream`` reads either kind of frame with
``json.loads``). A client authenticates with ``{"action": "authenticate",
"data": {"key_id", "secret_key"}}`` (or the older ``{"action": "auth", "key",
"secret"}``), is answered on stream ``authorization`` (``authorized`` or
``unauthorized``, then closed), asks ``{"action": "listen", "data":
{"streams": ["trade_updates"]}}`` and is answered on stream ``listening``.

:func:`decode_update` turns an update's ``data`` into a
:class:`~tickpipe.trade_update_events.TradeUpdate`, naming the field of a bad one
(:class:`~tickpipe.errors.DecodeError`), so it becomes a dead letter.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

from tickpipe.codecs import parse_rfc3339_ns
from tickpipe.errors import DecodeError
from tickpipe.events import SCHEMA_VERSION
from tickpipe.trade_update_events import TradeUpdate

STREAM: Final = "trade_updates"
AUTHORIZATION: Final = "authorization"
LISTENING: Final = "listening"
AUTHORIZED: Final = "authorized"
UNAUTHORIZED: Final = "unauthorized"
#: Longest text an order id, a symbol, an event or an execution id may have.
_MOST_CHARS: Final = 128


def message(stream: str, data: Any) -> bytes:
    """One message of the dialect, as the bytes of its binary frame."""
    return orjson.dumps({"stream": stream, "data": data})


def authorization(authorized: bool, action: str = "authenticate", detail: str = "") -> bytes:
    """The answer to an authentication: ``authorized``, or ``unauthorized`` (the connection is then closed)."""
    data: dict[str, Any] = {"status": AUTHORIZED if authorized else UNAUTHORIZED, "action": action}
    if detail and not authorized:
        data["message"] = detail
    return message(AUTHORIZATION, data)


def listening(streams: list[str], error: str = "") -> bytes:
    """The answer to ``listen``: the streams now listened to (and what was refused, when something was)."""
    data: dict[str, Any] = {"streams": streams}
    if error:
        data["error"] = error
    return message(LISTENING, data)


def update_frame(live: bytes) -> bytes:
    """An update's frame around its ``data`` as the live path holds it (the JSON Alpaca sent)."""
    return b'{"stream":"trade_updates","data":' + live + b"}"


def credentials(action: dict[str, Any]) -> tuple[str, str] | None:
    """The key and secret of an ``authenticate`` (``data.key_id``, ``data.secret_key``) or ``auth``
    (``key``, ``secret``) action; None for any other message."""
    if action.get("action") == "authenticate" and isinstance(action.get("data"), dict):
        key, secret = action["data"].get("key_id"), action["data"].get("secret_key")
    elif action.get("action") == "auth":
        key, secret = action.get("key"), action.get("secret")
    else:
        return None
    return (key, secret) if isinstance(key, str) and isinstance(secret, str) else None


def listened(action: dict[str, Any]) -> list[str] | None:
    """The streams a ``listen`` action asks for; None for another message or a malformed one."""
    data = action.get("data")
    if action.get("action") != "listen" or not isinstance(data, dict):
        return None
    streams = data.get("streams")
    if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
        return None
    return streams


def _text(data: dict[str, Any], name: str, *, required: bool = True, field: str | None = None) -> str:
    value = data.get(name)
    field = field or name
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > _MOST_CHARS:
        raise DecodeError(field, f"expected a non-empty string of at most {_MOST_CHARS} characters, got {value!r}")
    return value


def _number(data: dict[str, Any], name: str) -> str | None:
    """A price or quantity as the text Alpaca sent (it sends strings; a JSON number is kept as its text)."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DecodeError(name, f"expected a decimal number as a string, got {value!r}")
    text = value if isinstance(value, str) else repr(value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise DecodeError(name, f"expected a decimal number, got {text!r}") from None
    if not number.is_finite() or len(text) > 40:
        raise DecodeError(name, f"expected a finite decimal number, got {text!r}")
    return text


def decode_update(data: Any, received_at: int) -> TradeUpdate:
    """The ``data`` of a ``trade_updates`` message to an event; DecodeError naming the bad field."""
    if not isinstance(data, dict):
        raise DecodeError("data", f"expected an object, got {type(data).__name__}")
    order = data.get("order")
    if not isinstance(order, dict):
        raise DecodeError("order", f"expected the order object, got {type(order).__name__}")
    _text(order, "id", field="order.id")
    symbol = _text(order, "symbol", field="order.symbol")
    stamp = data.get("timestamp")
    if not isinstance(stamp, str):
        raise DecodeError("timestamp", f"expected an RFC 3339 timestamp, got {stamp!r}")
    try:
        ns = parse_rfc3339_ns(stamp)
    except ValueError as exc:
        raise DecodeError("timestamp", str(exc)) from None
    if not 0 < ns < 2**63:
        raise DecodeError("timestamp", f"expected a time between 1970 and 2262, got {stamp!r}")
    return TradeUpdate(
        symbol=symbol,
        timestamp=ns,
        received_at=received_at,
        schema_version=SCHEMA_VERSION,
        event=_text(data, "event"),
        order=order,
        execution_id=_text(data, "execution_id", required=False),
        price=_number(data, "price"),
        qty=_number(data, "qty"),
        position_qty=_number(data, "position_qty"),
    )
