"""The hub: events by type once per client, unknown symbols parked, channels bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from api.metrics import ApiMetrics
from api.stream import protocol as p
from api.stream.hub import ChannelLimit, Hub, event_code
from api.stream.outbox import Outbox
from tests.helpers.api import json_frame
from tests.helpers.waiting import wait_for
from tickpipe.codecs import encode_live
from tickpipe.events import Bar, Quote, UpdatedBar


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
    watcher = asyncio.create_task(hub._watch_parked())
    await wait_for(lambda: b"quotes:ALSO" in hub.redis_names, what="the parked symbol to be subscribed")
    watcher.cancel()
    assert hub.parked_symbols == set() and two.pending == [quote("ALSO")]
    hub.flusher.close()
