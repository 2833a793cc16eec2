"""The flusher: its timer is armed on uvloop even for a bucket about due; its interval adapts to load."""

from __future__ import annotations

import asyncio

import pytest

from api.metrics import StreamCounts
from api.stream.flusher import Flusher, adaptive_interval
from tests.helpers.api import ListSink, outbox_with_sink
from tests.helpers.waiting import wait_for


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


@pytest.mark.parametrize(
    ("active", "writes_per_s", "expected"),
    [(100, 20_000, 0.005), (2_500, 20_000, 0.02), (0, 20_000, 0.0), (10, 0, 0.02)],
    ids=["few-clients-wait-a-little", "many-wait-the-ceiling", "idle", "no-budget-fixed"],
)
def test_the_adaptive_interval_keeps_writes_within_the_budget(
    active: int, writes_per_s: float, expected: float
) -> None:
    assert adaptive_interval(active, writes_per_s, 0.02) == pytest.approx(expected)


def test_the_interval_follows_how_many_clients_were_written_in_the_last_window() -> None:
    """Busy clients make each wait (clients / budget); when the load goes, a client is written at once again."""

    async def scenario() -> tuple[list[float], float, float]:
        flusher = Flusher(0.02, StreamCounts(), writes_per_s=1_000, window=0.0)
        assert flusher.interval == 0.0  # no load seen yet: written as data arrives
        warm, warm_sink = outbox_with_sink(flusher)
        warm.push(b"0")  # the first write starts the first window
        await wait_for(lambda: warm_sink.frames, what="the first window started")
        busy = [outbox_with_sink(flusher) for _ in range(10)]
        for number, (outbox, _) in enumerate(busy):
            outbox.push(str(number).encode())
        await wait_for(lambda: all(sink.frames for _, sink in busy), what="ten clients written")
        under_load = flusher.interval
        outbox, sink = busy[0]
        first = outbox.last_flush
        outbox.push(b"10")
        await wait_for(lambda: len(sink.frames) == 2, what="the busy client written again")
        gaps = [outbox.last_flush - first]
        # Now only this client is busy: the next window counts one client.
        outbox.push(b"11")
        await wait_for(lambda: len(sink.frames) == 3, what="the client written a third time")
        after_load = flusher.interval
        flusher.close()
        return gaps, under_load, after_load

    gaps, under_load, after_load = asyncio.run(scenario())
    assert under_load == pytest.approx(10 / 1_000)
    assert gaps[0] >= under_load  # a busy client waits its interval between two writes
    assert after_load == pytest.approx(1 / 1_000)


def test_without_a_budget_the_interval_is_fixed() -> None:
    flusher = Flusher(0.02, StreamCounts())
    assert flusher.interval == 0.02
