"""A client's outbox: bounded in bytes, control frames first, events in frames at the flush interval."""

from __future__ import annotations

import asyncio

import orjson

from api.metrics import StreamCounts
from api.stream.flusher import Flusher
from api.stream.outbox import FRAME_EVENTS, Outbox
from tests.helpers.api import ListSink, json_frame, outbox_with_sink
from tests.helpers.waiting import wait_for


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
