"""The API's pure logic, without services: parameters, tokens, timestamps, protocol, outbox, fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Sequence
from datetime import date
from typing import Any

import msgpack
import orjson
import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.metrics import ApiMetrics, StreamCounts
from api.pages import PageRequest, next_bucket
from api.params import parse_time, wants_csv
from api.shape import rfc3339_ns
from api.stream import protocol as p
from api.stream.direct import OP_BINARY, OP_TEXT, frame
from api.stream.flusher import Flusher
from api.stream.hub import ChannelLimit, Hub, event_code
from api.stream.outbox import FRAME_EVENTS, Outbox
from api.tokens import decode_token, encode_token
from tests.helpers.waiting import wait_for
from tickpipe.codecs import encode_live, format_rfc3339_ns, parse_rfc3339_ns
from tickpipe.events import Bar, Quote, UpdatedBar

NS = 1_000_000_000


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_fast_timestamps_match_the_codec(ns: int) -> None:
    assert rfc3339_ns(ns) == format_rfc3339_ns(ns)


def test_times_are_rfc3339_to_the_nanosecond_or_whole_days() -> None:
    assert parse_time("2024-03-04T14:30:00.123456789Z", "start", end=False) == parse_rfc3339_ns(
        "2024-03-04T14:30:00.123456789Z"
    )
    assert parse_time("2024-03-04T09:30:00-05:00", "start", end=False) == parse_rfc3339_ns("2024-03-04T14:30:00Z")
    day = parse_rfc3339_ns("2024-03-04T00:00:00Z")
    assert parse_time("2024-03-04", "start", end=False) == day
    assert parse_time("2024-03-04", "end", end=True) == day + 86_400 * NS - 1
    for bad in ("2024-03-04\n", "٢٠٢٤-03-04", "2024-3-4", "2024-03-04T10:00Z", "now"):
        with pytest.raises(RequestValidationError):
            parse_time(bad, "start", end=False)


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("text/csv", True),
        ("text/csv;q=0.9, application/json", False),
        ("application/json;q=0.5, text/csv", True),
        ("text/html, text/csv;q=0.1", True),
        ("text/csv;q=0", False),
    ],
)
def test_csv_only_when_preferred(accept: str | None, csv: bool) -> None:
    assert wants_csv(accept) is csv


def test_tokens_round_trip_and_refuse_what_this_route_did_not_issue() -> None:
    token = encode_token("trades", "desc", (1_709_559_000_000_000_001, "V", 42))
    assert decode_token(token, "trades", "desc") == (1_709_559_000_000_000_001, "V", 42)
    for scope, sort in (("quotes", "desc"), ("trades", "asc"), ("bars:5Min", "desc")):
        with pytest.raises(RequestValidationError):
            decode_token(token, scope, sort)
    for forged in (token + "!", token[:-3], encode_token("trades", "desc", (2**63, "V", 1)), "x" * 600):
        with pytest.raises(RequestValidationError):
            decode_token(forged, "trades", "desc")


def test_a_token_narrows_the_time_bounds() -> None:
    at = 1_709_559_000_000_000_000
    asc = PageRequest("quotes", "AAPL", token=(at, 7))
    desc = PageRequest("quotes", "AAPL", sort="desc", token=(at, 7), start_ns=5)
    assert asc.bounds() == (at, 2**63 - 1)
    assert desc.bounds() == (5, at)
    hourly = PageRequest("bars", "AAPL", timeframe="1Hour", token=(at,))
    assert hourly.bounds()[0] == at + 3600 * NS


def test_new_york_days_follow_daylight_saving() -> None:
    before = parse_rfc3339_ns("2024-03-10T05:00:00Z")  # midnight EST, the day clocks go forward
    assert next_bucket("1Day", before) == parse_rfc3339_ns("2024-03-11T04:00:00Z")  # midnight EDT
    autumn = parse_rfc3339_ns("2024-11-03T04:00:00Z")
    assert next_bucket("1Day", autumn) == parse_rfc3339_ns("2024-11-04T05:00:00Z")
    assert date(2024, 3, 10)  # (the dates above)


def test_actions_in_json_and_msgpack() -> None:
    sub = {"action": "subscribe", "trades": ["aapl"], "quotes": ["*"]}
    for raw in (orjson.dumps(sub).decode(), msgpack.packb(sub)):
        action = p.decode_action(raw)
        assert (action.kind, action.streams) == ("subscribe", {"trades": ["AAPL"], "quotes": ["*"]})
    auth = p.decode_action('{"action":"auth","key":"k","secret":"s"}')
    assert (auth.kind, auth.key, auth.secret) == ("auth", "k", "s")
    for bad, code in (
        ("[]", 400),
        ('{"action":"auth","key":1}', 400),
        ('{"action":"subscribe","quotes":"AAPL"}', 400),
        ('{"action":"subscribe","lulds":["AAPL"]}', 410),
        (b"\xc1", 400),
    ):
        with pytest.raises(p.ProtocolError) as error:
            p.decode_action(bad)
        assert error.value.code == code


def test_subscriptions_bring_corrections_with_trades_and_count_symbols() -> None:
    subs = p.Subscriptions()
    assert subs.add({"trades": ["A"], "quotes": ["A", "B"]}) == [
        ("trades", "A"),
        ("quotes", "A"),
        ("quotes", "B"),
        ("corrections", "A"),
        ("cancelErrors", "A"),
    ]
    assert subs.add({"quotes": ["A"]}) == []
    assert subs.symbol_count() == 2
    assert subs.count_after_add({"bars": ["C", "*"]}) == 4
    assert subs.remove({"trades": ["A"], "bars": ["Z"]}) == [
        ("trades", "A"),
        ("corrections", "A"),
        ("cancelErrors", "A"),
    ]
    message = subs.message()
    assert list(message) == ["T", *p.LISTED] and message["quotes"] == ["A", "B"] and message["trades"] == []


class ListSink:
    """A sink that keeps what it is given, with the loop time; not writable while ``full``."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.times: list[float] = []
        self.full = False

    @property
    def writable(self) -> bool:
        return not self.full

    def write(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.times.append(asyncio.get_running_loop().time())


def json_frame(batch: list[bytes]) -> bytes:
    return b"[" + b",".join(batch) + b"]"


def outbox_with_sink(flusher: Flusher, limit: int = 100_000, on_overflow: Any = None) -> tuple[Outbox, ListSink]:
    outbox = Outbox(limit, on_overflow or (lambda: None), flusher, json_frame)
    sink = outbox.sink = ListSink()
    return outbox, sink


async def test_outbox_cuts_a_client_that_falls_behind() -> None:
    cut: list[int] = []
    flusher = Flusher(0.02, StreamCounts())
    outbox, sink = outbox_with_sink(flusher, limit=3, on_overflow=lambda: cut.append(1))
    sink.full = True  # the client reads nothing: its socket buffer stays full
    for n in range(10):
        outbox.push(b"%d" % n)
    assert cut == [1] and outbox.closed and outbox.pending == []
    flusher.close()


async def test_outbox_counts_control_frames_and_events_in_bytes() -> None:
    cut: list[int] = []
    flusher = Flusher(0.02, StreamCounts())
    outbox = Outbox(100_000, lambda: cut.append(1), flusher, json_frame, max_bytes=1_000)
    outbox.sink = sink = ListSink()
    sink.full = True
    outbox.push(b"x" * 400)
    outbox.push_front(b"y" * 500)
    assert outbox.queued_bytes == 900 and not cut
    outbox.push_front(b"z" * 101)  # a reply like any other: over the bound, the client is cut
    assert cut == [1] and outbox.closed and outbox.queued_bytes == 0 and outbox.front == outbox.pending == []
    outbox.push_front(b"late")
    assert outbox.front == [] and cut == [1]
    flusher.close()


async def test_front_frames_go_first_then_events_in_frames_of_at_most_frame_events() -> None:
    counts = StreamCounts()
    flusher = Flusher(0.02, counts)
    outbox, sink = outbox_with_sink(flusher)
    outbox.held = True  # a subscribe is being answered
    for n in range(FRAME_EVENTS + 5):
        outbox.push(b"%d" % n)
    outbox.push_front(b'"subscription"')
    await wait_for(lambda: sink.frames, what="the front frame")
    assert sink.frames == [b'"subscription"']  # events wait while held
    outbox.release()
    await wait_for(lambda: len(sink.frames) == 3, what="the events")
    assert orjson.loads(sink.frames[1])[:2] == [0, 1] and orjson.loads(sink.frames[2]) == list(
        range(FRAME_EVENTS, FRAME_EVENTS + 5)
    )
    assert (counts.messages_sent, counts.frames_sent) == (FRAME_EVENTS + 5, 2)
    flusher.close()


async def test_first_event_goes_at_once_and_later_ones_wait_for_the_interval() -> None:
    interval = 0.05
    flusher = Flusher(interval, StreamCounts())
    outbox, sink = outbox_with_sink(flusher)
    outbox.push(b"1")
    await wait_for(lambda: sink.frames, what="the first frame")
    outbox.push(b"2")
    outbox.push(b"3")  # both within the interval: gathered into one frame
    await wait_for(lambda: len(sink.frames) == 2, what="the second frame")
    assert sink.frames == [b"[1]", b"[2,3]"]
    assert sink.times[1] - sink.times[0] >= interval - flusher.resolution
    flusher.close()


async def test_a_full_sink_holds_events_until_it_drains() -> None:
    flusher = Flusher(0.0, StreamCounts())
    outbox, sink = outbox_with_sink(flusher)
    sink.full = True
    outbox.push(b"1")
    outbox.push(b"2")
    await asyncio.sleep(0)  # the flusher's turn: nothing can be written
    await asyncio.sleep(0)
    assert sink.frames == [] and outbox.pending == [b"1", b"2"]
    sink.full = False
    outbox.writable_again()
    await wait_for(lambda: sink.frames, what="the held events")
    assert sink.frames == [b"[1,2]"]
    flusher.close()


def quote(symbol: str) -> bytes:
    return encode_live(
        Quote(symbol=symbol, timestamp=1, bid_exchange="V", bid_price=1, bid_size=1, ask_exchange="V", ask_price=1,
              ask_size=1)
    )  # fmt: skip


async def test_hub_delivers_by_type_once_per_client() -> None:
    hub = Hub("redis://127.0.0.1:1/0", ApiMetrics())  # never started: registrations only
    one, wild, bars = (Outbox(100, lambda: None, hub.flusher, json_frame) for _ in range(3))
    await hub.add(one, [(p.STREAMS["quotes"], "AAPL")])
    await hub.add(wild, [(p.STREAMS["quotes"], "AAPL"), (p.STREAMS["quotes"], "*")])
    await hub.add(bars, [(p.STREAMS["updatedBars"], "AAPL")])
    assert hub.redis_names == {b"quotes:AAPL", b"quotes:*", b"bars:AAPL"}
    payload = quote("AAPL")
    hub.deliver(b"quotes:AAPL", payload, None)  # Redis sends it once per matching subscription
    hub.deliver(b"quotes:AAPL", payload, b"quotes:*")
    assert (one.pending, wild.pending) == ([payload], [payload])
    minute = encode_live(Bar(symbol="AAPL", timestamp=1, open=1, high=1, low=1, close=1, volume=1))
    updated = encode_live(UpdatedBar(symbol="AAPL", timestamp=1, open=1, high=1, low=1, close=1, volume=1))
    hub.deliver(b"bars:AAPL", minute, None)
    hub.deliver(b"bars:AAPL", updated, None)
    assert bars.pending == [updated]
    hub.remove(wild, [(p.STREAMS["quotes"], "AAPL"), (p.STREAMS["quotes"], "*")])
    hub.remove(one, [(p.STREAMS["quotes"], "AAPL")])
    assert hub.redis_names == {b"bars:AAPL"}
    assert event_code(b'{"S":"X","T":"q"}') == b"q" and event_code(b"nonsense") == b""


class ListedDirectory:
    """A :class:`~api.stream.directory.Directory` over a plain set: which symbols exist, and a version."""

    def __init__(self, *symbols: str) -> None:
        self.symbols = set(symbols)

    async def known(self, symbols: Sequence[str]) -> set[str]:
        return self.symbols & set(symbols)

    async def version(self) -> tuple[int, ...]:
        return (len(self.symbols),)

    async def snapshots(self, symbol: str) -> list[bytes]:
        return [quote(symbol)] if symbol in self.symbols else []


async def test_hub_parks_unknown_symbols_and_bounds_its_channels() -> None:
    directory = ListedDirectory("AAPL", "MSFT")
    hub = Hub("redis://127.0.0.1:1/0", ApiMetrics(), directory=directory, max_channels=2)  # never started
    one, two = (Outbox(100, lambda: None, hub.flusher, json_frame) for _ in range(2))
    quotes = p.STREAMS["quotes"]
    await hub.add(one, [(quotes, "AAPL"), (quotes, "NOPE"), (quotes, "*")])
    assert hub.redis_names == {b"quotes:AAPL", b"quotes:*"} and hub.parked_symbols == {"NOPE"}
    with pytest.raises(ChannelLimit, match="at most 2 Redis channels"):
        await hub.add(two, [(quotes, "AAPL"), (quotes, "MSFT")])  # AAPL is shared, MSFT would be a third
    assert hub.outboxes_of("AAPL") == {one} and hub.outboxes_of("MSFT") == set()  # refused whole
    await hub.add(two, [(quotes, "AAPL"), (quotes, "ALSO")])  # a parked symbol takes no channel
    assert hub.parked_symbols == {"NOPE", "ALSO"} and hub.outboxes_of("ALSO") == {two}
    hub.remove(one, [(quotes, "*"), (quotes, "NOPE")])
    assert hub.redis_names == {b"quotes:AAPL"} and hub.parked_symbols == {"ALSO"}
    directory.symbols.add("ALSO")  # it trades: the watcher's next look subscribes it, its snapshot first
    watcher = asyncio.create_task(hub._watch_parked(directory))
    await wait_for(lambda: b"quotes:ALSO" in hub.redis_names, what="the parked symbol to be subscribed")
    watcher.cancel()
    assert hub.parked_symbols == set() and two.pending == [quote("ALSO")]
    hub.flusher.close()


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 200_000])
def test_direct_frames_parse_as_websockets_reads_them(size: int) -> None:
    """Every length encoding of RFC 6455 (7 bits, 16, 64), read back by the websockets library's own parser."""
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    reader = StreamReader()
    reader.feed_data(frame(OP_TEXT, payload) + frame(OP_BINARY, b"x"))
    parsed = drive(Frame.parse(reader.read_exact, mask=False))
    assert (parsed.opcode, parsed.data, parsed.fin) == (Opcode.TEXT, payload, True)
    second = drive(Frame.parse(reader.read_exact, mask=False))
    assert (second.opcode, second.data) == (Opcode.BINARY, b"x")


def drive(parser: Generator[None, None, Frame]) -> Frame:
    """Run a websockets sans-I/O parser whose input is all there."""
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("the frame is incomplete")


def test_the_flusher_arms_its_timer_on_uvloop_for_a_bucket_about_due() -> None:
    """tickpipe api runs on uvloop, whose call_at for less than half a millisecond ahead is a call_soon."""
    import uvloop

    async def scenario() -> tuple[ListSink, ListSink]:
        loop = asyncio.get_running_loop()
        flusher = Flusher(0.02, StreamCounts(), resolution=0.0001)
        (soon, soon_sink), (later, later_sink) = outbox_with_sink(flusher), outbox_with_sink(flusher)
        soon.last_flush = loop.time() - 0.02 + 0.0002  # its interval ends in 0.2 ms
        later.last_flush = loop.time() - 0.01  # in 10 ms
        soon.push(b"1")
        later.push(b"2")
        await wait_for(lambda: soon_sink.frames and later_sink.frames, what="both outboxes written")
        flusher.close()
        return soon_sink, later_sink

    soon_sink, later_sink = uvloop.run(scenario())
    assert (soon_sink.frames, later_sink.frames) == ([b"[1]"], [b"[2]"])
