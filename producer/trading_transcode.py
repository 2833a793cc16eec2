"""The trading stream's frames (``alpaca-trading``) to what the producer's sinks take.

One frame is one message. A ``trade_updates`` message becomes one
:class:`~producer.transcode.Transcoded`: its Kafka value is the
:class:`~tickpipe.trade_update_events.TradeUpdate` in msgpack, keyed by the
order's id; its live payload is the ``data`` object exactly as Alpaca sent it
(what the API's ``/stream`` hands to alpaca-py's ``TradingStream``). The
dialect's control messages are given to the upstream client in the
market-data stream's words, so its state machine serves both dialects:
``authorized`` is ``{"T": "success", "msg": "authenticated"}``, ``unauthorized``
an error 402 (not retried), ``listening`` a subscription. Anything else (not
JSON, an unknown stream, an update missing its order) is rejected whole, for the
dead-letter topic.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import orjson

from producer.transcode import Transcode, Transcoded, TranscodedFrame, transcoder_for
from tickpipe.codecs import Rejected
from tickpipe.errors import DecodeError
from tickpipe.feeds import TRADING, Feed
from tickpipe.trading_wire import AUTHORIZATION, AUTHORIZED, LISTENING, STREAM, decode_update

_encoder: Final = msgspec.msgpack.Encoder()
AUTHENTICATED: Final = {"T": "success", "msg": "authenticated"}


def control_of(stream: str, data: Any) -> dict[str, Any] | None:
    """A control message of the dialect in the market-data stream's words; None for an unknown stream."""
    data = data if isinstance(data, dict) else {}
    if stream == AUTHORIZATION:
        if data.get("status") == AUTHORIZED:
            return dict(AUTHENTICATED)
        detail = data.get("message") or data.get("status") or "unauthorized"
        return {"T": "error", "code": 402, "msg": f"trading stream: {detail}"}
    if stream == LISTENING:
        streams = data.get("streams")
        return {"T": "subscription", STREAM: list(streams) if isinstance(streams, list) else []}
    return None


def transcode_trading(frame: bytes | str, received_at: int) -> TranscodedFrame:
    """One trading stream frame to its update, its control message or its reject.

    Raises DecodeError("$") for a frame that is not one JSON object (as :func:`~producer.transcode.transcode_frame`
    does for a frame that is not an array), so the upstream client dead-letters it whole.
    """
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("$", f"expected one JSON object per frame: {exc}") from None
    if not isinstance(message, dict):
        raise DecodeError("$", f"expected a JSON object, got {type(message).__name__}")
    stream, data = message.get("stream"), message.get("data")
    raw = frame.encode() if isinstance(frame, str) else bytes(frame)
    if stream == STREAM:
        try:
            update = decode_update(data, received_at)
        except DecodeError as exc:
            return TranscodedFrame([], [], [Rejected(raw, exc)])
        event = Transcoded(
            update.type_code, update.symbol, update.timestamp, _encoder.encode(update), orjson.dumps(data),
            update.order_id,
        )  # fmt: skip
        return TranscodedFrame([event], [], [])
    control = control_of(stream, data) if isinstance(stream, str) else None
    if control is None:
        error = DecodeError("stream", f"expected {STREAM}, {AUTHORIZATION} or {LISTENING}, got {stream!r}")
        return TranscodedFrame([], [], [Rejected(raw, error)])
    return TranscodedFrame([], [control], [])


def transcoder_of(feed: Feed) -> Transcode:
    """A feed's transcoder by its dialect: the trading stream's (:func:`transcode_trading`), or a market-data
    feed's (:func:`producer.transcode.transcoder_for`)."""
    return transcode_trading if feed.dialect == TRADING else transcoder_for(feed)
