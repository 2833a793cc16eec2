"""Wire details, subscription rules and burst replays, without a server."""

from __future__ import annotations

from collections import Counter

import msgpack
import orjson
import pytest

from simulator import DEFAULT_SYMBOLS
from simulator.bars import MINUTE_NS
from simulator.burst import BurstFeed
from simulator.subscriptions import SubscriptionError, Subscriptions
from simulator.wire import (
    array_header,
    count_messages,
    decode,
    decode_frame,
    error,
    malformed,
    rfc3339,
    timestamp,
)
from tests.helpers.simulator import check_tape, nanos


def test_rfc3339_prints_nanoseconds_the_way_go_does() -> None:
    assert rfc3339(1_717_421_400_123_456_789) == "2024-06-03T13:30:00.123456789Z"
    assert rfc3339(1_717_421_400_839_159_730) == "2024-06-03T13:30:00.83915973Z"
    assert rfc3339(1_717_421_400_000_000_000) == "2024-06-03T13:30:00Z"
    stamp = timestamp(1_717_421_400_000_000_001)
    assert (stamp.seconds, stamp.nanoseconds) == (1_717_421_400, 1)


def test_errors_carry_alpacas_codes_and_messages_one_per_array() -> None:
    assert orjson.loads(error(406, "json")) == [{"T": "error", "code": 406, "msg": "connection limit exceeded"}]
    assert msgpack.unpackb(error(402, "msgpack")) == [{"T": "error", "code": 402, "msg": "auth failed"}]


@pytest.mark.parametrize("n", [0, 15, 16, 65535, 65536])
def test_count_messages_reads_the_array_header(n: int) -> None:
    frame = array_header(n) + b"\xc0" * n
    assert count_messages(frame) == n
    assert len(msgpack.unpackb(frame)) == n


def test_bad_client_messages_and_malformed_frames_do_not_decode() -> None:
    with pytest.raises(ValueError, match="expected a json object"):
        decode(b"{not json", "json")
    with pytest.raises(ValueError, match="expected a msgpack object"):
        decode(b"\xc1", "msgpack")
    assert decode('{"action":"auth"}', "msgpack") == {"action": "auth"}  # text is always JSON
    with pytest.raises(ValueError):
        msgpack.unpackb(malformed("msgpack"))
    with pytest.raises(ValueError):
        orjson.loads(malformed("json"))


def test_subscribe_adds_unsubscribe_subtracts_and_trades_bring_corrections() -> None:
    subs = Subscriptions()
    subs.change({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AMD", "CLDR"], "bars": ["*"]})
    subs.change({"action": "subscribe", "quotes": ["AMD", "MSFT"], "news": None, "orderbooks": []})
    assert subs.listing() == {
        "trades": ["AAPL"],
        "quotes": ["AMD", "CLDR", "MSFT"],
        "bars": ["*"],
        "updatedBars": [],
        "dailyBars": [],
        "statuses": [],
        "lulds": [],
        "corrections": ["AAPL"],
        "cancelErrors": ["AAPL"],
    }
    assert subs.accepts("q", "MSFT") and subs.accepts("b", "ANY") and subs.accepts("x", "AAPL")
    assert not subs.accepts("q", "AAPL")
    subs.change({"action": "unsubscribe", "bars": ["*"], "trades": ["AAPL"]})
    assert subs.listing()["bars"] == [] and subs.listing()["cancelErrors"] == []
    assert not subs.accepts("c", "AAPL")


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"action": "subscribe", "quotes": "AAPL"}, 400),
        ({"action": "subscribe", "quotes": [1]}, 400),
        ({"action": "subscribe", "quotes": ["aapl"]}, 400),
        ({"action": "subscribe", "news": ["AAPL"]}, 410),
    ],
)
def test_invalid_requests_are_refused_with_alpacas_codes(request_: dict, code: int) -> None:
    subs = Subscriptions()
    with pytest.raises(SubscriptionError) as refused:
        subs.change(request_)
    assert refused.value.code == code
    assert not subs


def test_a_request_over_the_symbol_limit_changes_nothing() -> None:
    subs = Subscriptions()
    subs.change({"action": "subscribe", "quotes": ["A", "B"]}, symbol_limit=3)
    with pytest.raises(SubscriptionError) as refused:
        subs.change({"action": "subscribe", "trades": ["C", "D"]}, symbol_limit=3)
    assert refused.value.code == 405
    assert subs.listing()["quotes"] == ["A", "B"] and subs.listing()["trades"] == []


@pytest.fixture(scope="module")
def feed() -> BurstFeed:
    return BurstFeed(DEFAULT_SYMBOLS, 0, "sip", 1, start_ns=1_800_000_000 * 10**9 + 7)


def test_burst_replays_are_unique_shifted_and_still_consistent(feed: BurstFeed) -> None:
    size = len(feed.window.events)
    feed.position = 0
    parts, keys, drawn = feed.draw(2 * size + 500, "msgpack", None)
    assert drawn == len(parts) == len(keys) == 2 * size + 500
    events = msgpack.unpackb(array_header(len(parts)) + b"".join(parts))
    assert Counter((e["T"], e["S"]) for e in events) == Counter(keys)
    quotes = [(e["S"], nanos(e["t"])) for e in events if e["T"] == "q"]
    assert len(set(quotes)) == len(quotes)
    ids = [e["i"] for e in events if e["T"] == "t"]
    assert len(set(ids)) == len(ids)
    first, second = events[0], events[size]
    assert nanos(second["t"]) - nanos(first["t"]) == MINUTE_NS  # a window is one minute
    assert nanos(first["t"]) // MINUTE_NS == 1_800_000_000 // 60  # starts at the configured minute
    checked = check_tape(events[: 2 * size])
    assert checked["bars"] >= 2 * len(DEFAULT_SYMBOLS) and checked["daily"] >= 2 * len(DEFAULT_SYMBOLS)


def test_burst_json_carries_the_same_events_and_honours_the_filter(feed: BurstFeed) -> None:
    feed.position = 0
    packed, _, _ = feed.draw(3000, "msgpack", None)
    feed.position = 0
    texts, _, _ = feed.draw(3000, "json", None)
    as_msgpack = msgpack.unpackb(array_header(len(packed)) + b"".join(packed))
    as_json = decode_frame(b"[" + b",".join(texts) + b"]")
    assert [{**e, "t": nanos(e["t"])} for e in as_msgpack] == [{**e, "t": nanos(e["t"])} for e in as_json]
    feed.position = 0
    wanted = {("q", "AAPL"), ("t", "SPY")}
    parts, keys, drawn = feed.draw(3000, "msgpack", wanted)
    assert drawn == 3000 and set(keys) <= wanted and len(parts) == len(keys) > 0
