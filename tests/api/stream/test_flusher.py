"""The flusher: its timer is armed on uvloop even for a bucket about due."""

from __future__ import annotations

import asyncio

from api.metrics import StreamCounts
from api.stream.flusher import Flusher
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
