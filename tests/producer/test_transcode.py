"""producer.transcode: the producer's fast upstream path gives exactly what the exact path gives, byte for byte."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.transcode import Transcoded, transcode_event, transcode_frame
from tests.helpers.events import events, timestamps
from tickpipe.codecs import (
    decode_frame,
    decode_kafka,
    encode_live,
    encode_wire_json,
    encode_wire_msgpack,
    to_alpaca_dict,
)
from tickpipe.errors import DecodeError
from tickpipe.events import Event, Quote


def exact(frame: bytes | str, received_at: int) -> list[Transcoded]:
    return [transcode_event(e) for e in decode_frame(frame, received_at).events]


def assert_same(fast: list[Transcoded], slow: list[Transcoded]) -> None:
    assert len(fast) == len(slow)
    for got, want in zip(fast, slow, strict=True):
        assert got.type_code == want.type_code
        assert got.symbol == want.symbol
        assert got.timestamp == want.timestamp
        assert got.live == want.live
        assert decode_kafka(got.kafka) == decode_kafka(want.kafka)


@given(st.lists(events, min_size=1, max_size=6), timestamps)
def test_fast_path_matches_the_exact_path(batch: list[Event], received_at: int) -> None:
    frame = encode_wire_msgpack([to_alpaca_dict(event) for event in batch])
    out = transcode_frame(frame, received_at)
    assert out.control == [] and out.rejected == []
    assert_same(out.events, exact(frame, received_at))
    for got, event in zip(out.events, batch, strict=True):
        assert decode_kafka(got.kafka) == msgspec.structs.replace(event, received_at=received_at)
        assert got.live == encode_live(event)


QUOTE = {"T": "q", "S": "AAPL", "bx": "V", "bp": 187.2, "bs": 1, "ax": "V", "ap": 187.25, "as": 3, "c": ["R"],
         "z": "C"}  # fmt: skip


@pytest.mark.parametrize(
    "stamp",
    [
        msgpack.Timestamp(1_700_000_000, 0),  # 32-bit form
        msgpack.Timestamp(1_700_000_000, 123_456_789),  # 64-bit form
        msgpack.Timestamp(-86_400, 7),  # 96-bit form (before 1970)
    ],
)
def test_every_msgpack_timestamp_size_keeps_nanoseconds(stamp: msgpack.Timestamp) -> None:
    frame = msgpack.packb([{**QUOTE, "t": stamp}], datetime=False)
    (event,) = transcode_frame(frame, 5).events
    assert event.timestamp == stamp.to_unix_nano()
    assert_same([event], exact(frame, 5))


def frames_needing_the_exact_path() -> list[tuple[str, Any]]:
    stamp = msgpack.Timestamp(1_700_000_000, 1)
    good = {**QUOTE, "t": stamp}
    return [
        ("control", msgpack.packb([{"T": "success", "msg": "authenticated"}])),
        (
            "control and data",
            msgpack.packb([{"T": "subscription", "quotes": ["AAPL"]}, good], datetime=False),
        ),
        ("one bad message", msgpack.packb([good, {**good, "bp": "oops"}, good], datetime=False)),
        ("unknown type", msgpack.packb([good, {**good, "T": "l"}], datetime=False)),
        ("string t", msgpack.packb([{**QUOTE, "t": "2024-01-02T15:04:05.123456789Z"}])),
        ("json text", encode_wire_json([{**QUOTE, "t": "2024-01-02T15:04:05.123456789Z"}]).decode()),
    ]


@pytest.mark.parametrize(("name", "frame"), frames_needing_the_exact_path())
def test_other_frames_take_the_exact_path(name: str, frame: bytes | str) -> None:
    out = transcode_frame(frame, 9)
    decoded = decode_frame(frame, 9)
    assert_same(out.events, [transcode_event(e) for e in decoded.events])
    assert out.control == decoded.control
    assert [(r.raw, r.error.field, r.error.reason) for r in out.rejected] == [
        (r.raw, r.error.field, r.error.reason) for r in decoded.rejected
    ]


def test_a_bad_message_is_rejected_and_its_neighbours_kept() -> None:
    good = {**QUOTE, "t": msgpack.Timestamp(1_700_000_000, 1)}
    frame = msgpack.packb([good, {**good, "bp": "oops"}, good], datetime=False)
    out = transcode_frame(frame, 1)
    assert len(out.events) == 2
    (bad,) = out.rejected
    assert bad.error.field == "bp"


@pytest.mark.parametrize("frame", [b"\x91\x8b\xa1T\xa1q\xa1S", b"\xc1", b'[{"T":"q","S":"AAPL","bp":18'])
def test_a_frame_that_is_not_an_array_raises(frame: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        transcode_frame(frame, 1)
    assert caught.value.field == "$"


def test_live_bytes_equal_encode_live_for_a_typical_quote() -> None:
    quote = Quote(symbol="AAPL", timestamp=1_700_000_000_123_456_789, bid_exchange="V", bid_price=187.2,
                  bid_size=1, ask_exchange="V", ask_price=187.25, ask_size=3, conditions=("R",), tape="C")  # fmt: skip
    (event,) = transcode_frame(encode_wire_msgpack([to_alpaca_dict(quote)]), 1).events
    assert event.live == encode_live(quote)
    assert event.live.startswith(b'{"T":"q","S":"AAPL","t":"2023-11-14T22:13:20.123456789Z"')


def test_a_timestamp_no_int64_holds_is_rejected_not_raised() -> None:
    frame = msgpack.packb([{**QUOTE, "t": msgpack.Timestamp(2**35, 7)}], datetime=False)  # year 3058
    out = transcode_frame(frame, 1)
    assert out.events == []
    (bad,) = out.rejected
    assert bad.error.field == "t"
