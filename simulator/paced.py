"""Paced mode: a feed's market moves with the wall clock, like a live one.

One ticker per feed, started by the first subscription, draws ``rate``
quotes and trades per second (plus whatever bars fall due) and hands each
batch to every subscribed connection on that feed, which queues what it
wants. A connection that falls ``send_buffer`` messages behind is dropped
with 407 slow client, as Alpaca drops it; the market does not wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from simulator.config import SimulatorConfig, market_kind
from simulator.market import Market
from simulator.session import Session


class Host(Protocol):
    """What a ticker needs of the server it runs in (the :class:`~simulator.server.Simulator`)."""

    config: SimulatorConfig
    start_ns: int
    produced: int

    @property
    def sessions(self) -> Sequence[Session]: ...


async def run_ticker(sim: Host, feed: str) -> None:
    """Move the feed's market with the wall clock and fan its events out, until cancelled."""
    config = sim.config
    assert config.rate is not None
    market = Market(config.symbols, config.seed, feed=market_kind(feed), start_ns=sim.start_ns)
    lag = sim.start_ns - time.time_ns()  # market time = wall time + lag
    interval = min(0.05, max(0.005, config.batch_size / config.rate))
    loop = asyncio.get_running_loop()
    began, made = loop.time(), 0
    while True:
        await asyncio.sleep(interval)
        listeners = [s for s in sim.sessions if s.feed == feed and s.authenticated and s.subscriptions]
        if not listeners:  # nobody listening: keep the clock, skip the work
            market.advance(0, time.time_ns() + lag)
            began, made = loop.time(), 0
            continue
        due = int((loop.time() - began) * config.rate) - made
        made += due
        events = market.advance(due, time.time_ns() + lag)
        if config.max_events is not None:
            events = events[: max(0, config.max_events - sim.produced)]
        sim.produced += len(events)
        for session in listeners:
            session.offer(events)
