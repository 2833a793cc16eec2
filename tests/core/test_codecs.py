"""Codecs: every event survives every wire exactly; malformed input raises DecodeError naming the field."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers.events import events, timestamps
from tickpipe.codecs import (
    decode_frame,
    decode_kafka,
    decode_live,
    decode_message,
    encode_kafka,
    encode_live,
    encode_wire_json,
    encode_wire_msgpack,
    event_key,
    format_rfc3339_ns,
    parse_rfc3339_ns,
    to_alpaca_dict,
)
from tickpipe.errors import DecodeError
from tickpipe.events import (
    Event,
    Trade,
)


def without_receive_time(event: Event) -> Event:
    import msgspec

    return msgspec.structs.replace(event, received_at=0)


@given(events)
def test_kafka_roundtrip_is_exact(event: Event) -> None:
    assert decode_kafka(encode_kafka(event)) == event


@given(events)
def test_live_roundtrip_is_exact_except_receive_time(event: Event) -> None:
    # The live path carries exactly Alpaca's fields; our receive time is not one of them.
    assert decode_live(encode_live(event)) == without_receive_time(event)


@given(st.lists(events, min_size=1, max_size=5), timestamps)
def test_upstream_msgpack_frame_roundtrip(batch: list[Event], received_at: int) -> None:
    frame = encode_wire_msgpack([to_alpaca_dict(event) for event in batch])
    decoded = decode_frame(frame, received_at)
    assert decoded.rejected == []
    import msgspec

    assert decoded.events == [msgspec.structs.replace(e, received_at=received_at) for e in batch]


@given(st.lists(events, min_size=1, max_size=5))
def test_upstream_json_frame_roundtrip(batch: list[Event]) -> None:
    frame = encode_wire_json([to_alpaca_dict(event) for event in batch]).decode()
    assert decode_frame(frame, 0).events == [without_receive_time(e) for e in batch]


@given(timestamps)
def test_rfc3339_roundtrip_keeps_nanoseconds(ns: int) -> None:
    text = format_rfc3339_ns(ns)
    assert len(text.split(".")[1]) == 10  # nine digits and the Z
    assert parse_rfc3339_ns(text) == ns


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T15:04:05Z", 1704207845 * 10**9),
        ("2024-01-02T15:04:05.5Z", 1704207845 * 10**9 + 500_000_000),
        ("2024-01-02T15:04:05.123456789Z", 1704207845 * 10**9 + 123456789),
        ("2024-01-02T10:04:05.000000001-05:00", 1704207845 * 10**9 + 1),
    ],
)
def test_rfc3339_forms_alpaca_sends(text: str, expected: int) -> None:
    assert parse_rfc3339_ns(text) == expected


def test_alpaca_msgpack_timestamp_keeps_nanoseconds() -> None:
    stamp = msgpack.Timestamp(1_700_000_000, 123_456_789)
    raw = {"T": "t", "S": "AAPL", "i": 52983525029461, "x": "V", "p": 187.23, "s": 100, "c": ["@", "I"],
           "z": "C", "t": stamp}  # fmt: skip
    frame = msgpack.packb([raw], datetime=False)
    (trade,) = decode_frame(frame, 7).events
    assert isinstance(trade, Trade)
    assert trade.timestamp == 1_700_000_000_123_456_789
    assert trade.price == 187.23
    assert trade.conditions == ("@", "I")
    assert trade.received_at == 7
    assert datetime.fromtimestamp(trade.timestamp // 10**9, UTC).year == 2023


def test_control_messages_are_split_from_events() -> None:
    frame = orjson.dumps([{"T": "success", "msg": "authenticated"}]).decode()
    decoded = decode_frame(frame, 0)
    assert decoded.control == [{"T": "success", "msg": "authenticated"}]
    assert decoded.events == []


GOOD_QUOTE: dict[str, Any] = {"T": "q", "S": "AAPL", "bx": "V", "bp": 187.23, "bs": 3, "ax": "Q", "ap": 187.25,
                              "as": 1, "c": ["R"], "z": "C", "t": "2024-01-02T15:04:05.123456789Z"}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bp": "187.23"}, "bp"),
        ({"bs": 1.5}, "bs"),
        ({"t": "yesterday"}, "t"),
        ({"t": None}, "t"),
        ({"T": "nope"}, "T"),
        ({"S": None}, "S"),
        ({"c": "R"}, "c"),
    ],
)
def test_malformed_message_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_message({**GOOD_QUOTE, **change})
    assert caught.value.field == field


@pytest.mark.parametrize("missing", ["bp", "ap", "S", "t"])
def test_missing_field_is_named(missing: str) -> None:
    message = {k: v for k, v in GOOD_QUOTE.items() if k != missing}
    with pytest.raises(DecodeError) as caught:
        decode_message(message)
    assert caught.value.field == missing


def test_one_bad_message_does_not_cost_its_neighbours() -> None:
    bad = {**GOOD_QUOTE, "bp": "x"}
    frame = orjson.dumps([GOOD_QUOTE, bad, GOOD_QUOTE]).decode()
    decoded = decode_frame(frame, 0)
    assert len(decoded.events) == 2
    assert len(decoded.rejected) == 1
    assert decoded.rejected[0].error.field == "bp"
    # the dead letter keeps the message whole, as it arrived
    assert msgpack.unpackb(decoded.rejected[0].raw) == bad


@pytest.mark.parametrize("frame", [b"\xc1\xff", "not json", "{}", b"\x81\xa1T\xa1q"])
def test_malformed_frame_raises(frame: bytes | str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_frame(frame, 0)
    assert caught.value.field == "$"


@pytest.mark.parametrize("value", [b"", b"\xc1", orjson.dumps({"T": "q"})])
def test_malformed_kafka_value_raises(value: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_kafka(value)


def test_unknown_schema_version_is_refused() -> None:
    event = decode_message(GOOD_QUOTE)
    value = msgpack.unpackb(encode_kafka(event))
    value["_v"] = 99
    with pytest.raises(DecodeError) as caught:
        decode_kafka(msgpack.packb(value))
    assert caught.value.field == "_v"


def test_live_json_is_alpaca_shaped() -> None:
    event = decode_message(GOOD_QUOTE, received_at=5)
    assert orjson.loads(encode_live(event)) == GOOD_QUOTE


@given(events, timestamps)
def test_event_key_ignores_receive_time(event: Event, other: int) -> None:
    import msgspec

    assert event_key(event) == event_key(msgspec.structs.replace(event, received_at=other))


def test_event_key_differs_for_different_content() -> None:
    a = decode_message(GOOD_QUOTE)
    b = decode_message({**GOOD_QUOTE, "bp": math.nextafter(187.23, 200)})
    assert event_key(a) != event_key(b)


def test_prices_are_the_float64_sent() -> None:
    price = math.nextafter(187.23, 0)
    event = decode_message({**GOOD_QUOTE, "bp": price})
    assert decode_kafka(encode_kafka(event)).bid_price == price  # type: ignore[union-attr]
    assert decode_live(encode_live(event)).bid_price == price  # type: ignore[union-attr]
