"""Paced mode: a feed's market moves with the wall clock, like a live one.

One ticker per market (a feed's own; both option feeds share one) draws ``rate``
quotes and trades per second (plus whatever bars fall due), records them in the
market's history for the REST API and hands each batch to every subscribed
connection on a feed showing it, which
queues what it wants. A connection that falls ``send_buffer`` messages behind
is dropped with 407 slow client, as Alpaca drops it; the market does not wait.

The market runs whether or not anyone listens, as a real one does, so a
client that was away finds what it missed in the REST history. One
exception keeps the old behaviour: a finite market (``max_events``, the
``--count`` of tests that count every event end to end) only moves while a
connection is subscribed, so none of its events are made before the reader came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from simulator.config import CRYPTO_BURST_RATE, SimulatorConfig, is_crypto, is_news, is_options, market_kind, market_of
from simulator.crypto import CryptoMarket
from simulator.history import History
from simulator.market import Market
from simulator.news import NewsMarket
from simulator.options import OptionMarket
from simulator.session import Session


class Host(Protocol):
    """What a ticker needs of the server it runs in (the :class:`~simulator.server.Simulator`)."""

    config: SimulatorConfig
    produced: int

    @property
    def sessions(self) -> Sequence[Session]: ...

    def market_now_ns(self) -> int: ...


AnyMarket = Market | CryptoMarket | OptionMarket | NewsMarket


def make_market(config: SimulatorConfig, feed: str, start_ns: int, contracts: Sequence[str] | None = None) -> AnyMarket:
    """The market a feed shows: the crypto market's pairs on a crypto feed, the option market's
    ``contracts`` (else config.option_symbols) on an option feed, the news wire over the stock symbols on
    the news feed, else the stock market."""
    if is_news(feed):
        return NewsMarket(config.symbols, config.seed, start_ns=start_ns, history_max_events=config.history_max_events)
    if is_options(feed):
        return OptionMarket(contracts or config.option_symbols, config.seed, start_ns=start_ns)
    if is_crypto(feed):
        return CryptoMarket(config.crypto_symbols, config.seed, start_ns=start_ns)
    return Market(config.symbols, config.seed, feed=market_kind(feed), start_ns=start_ns)


async def run_ticker(sim: Host, feed: str, history: History | None, market: AnyMarket) -> None:
    """Move the market of ``feed`` (the name :func:`~simulator.config.market_of` gives it) with the wall
    clock, record (``history``: None, not recorded) and fan its events out, until cancelled. The crypto
    and option markets run at CRYPTO_BURST_RATE when the simulator is burst."""
    config = sim.config
    rate = config.news_rate if is_news(feed) else config.rate if config.rate is not None else CRYPTO_BURST_RATE
    interval = min(0.05, max(0.005, config.batch_size / rate))
    finite = config.max_events is not None
    loop = asyncio.get_running_loop()
    began, made = loop.time(), 0
    while True:
        await asyncio.sleep(interval)
        # Every session whose feed shows this market (both option feeds show one).
        listeners = [s for s in sim.sessions if market_of(s.feed) == feed and s.authenticated and s.subscriptions]
        until = sim.market_now_ns()
        if finite and not listeners:  # a finite market waits for its reader: keep the clock, skip the work
            market.advance(0, until)
            if history is not None:
                history.record((), until)
            began, made = loop.time(), 0
            continue
        due = int((loop.time() - began) * rate) - made
        made += due
        events = market.advance(due, until)
        if config.max_events is not None:
            events = events[: max(0, config.max_events - sim.produced)]
        sim.produced += len(events)
        if history is not None:
            history.record(events, until)
        for session in listeners:
            session.offer(events)
