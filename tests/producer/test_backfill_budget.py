"""The backfill's REST client spends a request budget: its own per-minute bound, the server's
``X-RateLimit-*`` headers, and 429 answers, against the simulator's real rate limit.

Waits go through the client's ``sleep`` seam, which records each wait and
lets the minute pass at once: the simulator's limiter forgets the minute's
requests and the client's clock moves on by the wait, so a test of a
one-minute budget takes no minute.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import httpx
import pytest

from producer.backfill import Backfiller
from producer.gaps import Gap
from producer.history_client import HistoryClient
from simulator import DEFAULT_START_NS, Simulator, SimulatorConfig
from simulator.config import OPTION_FEEDS
from simulator.history import History
from simulator.options import chain
from simulator.rest import RateLimit
from tests.helpers.waiting import wait_for
from tickpipe.feeds import OPTIONS

SECOND = 1_000_000_000


class Minutes:
    """The ``sleep`` and ``clock`` seams of a client: a wait is recorded and then is over at once."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.waits: list[float] = []
        self.offset = 0.0

    def clock(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.offset += seconds
        self.sim._limits = RateLimit(self.sim.config.rest_rate_limit)  # the simulator's minute is over too


@pytest.fixture
def symbols(unique_symbol: Callable[[], str]) -> list[str]:
    return sorted({unique_symbol() for _ in range(2)})


async def pages(sim: Simulator, symbols: list[str], n: int, per_minute: int) -> tuple[int, HistoryClient, Minutes]:
    """Ask ``n`` single-item pages of trades through a client of budget ``per_minute`` whose waits are
    :class:`Minutes`: how many items came, the client and its waits."""
    minutes = Minutes(sim)
    client = HistoryClient(sim.rest_url, "key", "secret", "iex", per_minute=per_minute, page_limit=1,
                           sleep=minutes.sleep, clock=minutes.clock)  # fmt: skip
    items = 0
    try:
        async with contextlib.aclosing(client.pages("trades", symbols, sim.start_ns, sim.market_now_ns())) as answers:
            async for page in answers:
                items += page.count
                n -= 1
                if n == 0:
                    break
    finally:
        await client.aclose()
    return items, client, minutes


async def until_trades(sim: Simulator, symbols: list[str], n: int) -> None:
    await sim.wait_for(lambda: (sim.history("iex").recorded or 0) >= n * 10, timeout=30)  # type: ignore[union-attr]


async def test_the_clients_own_budget_waits_out_its_minute_before_going_over(symbols: list[str]) -> None:
    async with Simulator(rate=500.0, symbols=tuple(symbols), rest_rate_limit=200) as sim:
        await until_trades(sim, symbols, 5)
        items, client, minutes = await pages(sim, symbols, 5, per_minute=2)
        assert items == 5
        assert client.stats.requests == 5 and client.stats.throttled == 0
        # Five requests at two a minute: the third waits for the first's minute to end, the fifth for the third's.
        assert 118 < sum(minutes.waits) <= 121, minutes.waits


async def test_no_requests_left_by_the_headers_waits_for_their_reset(symbols: list[str]) -> None:
    async with Simulator(rate=500.0, symbols=tuple(symbols), rest_rate_limit=2) as sim:
        await until_trades(sim, symbols, 3)
        items, client, minutes = await pages(sim, symbols, 3, per_minute=100)
        assert items == 3
        assert client.stats.throttled == 0, "the headers said 0 left: the client must wait, not be refused"
        assert len(minutes.waits) == 1 and 0 < minutes.waits[0] <= 61, minutes.waits
        assert client.stats.last_limit["x-ratelimit-limit"] == "2"


async def test_a_429_is_waited_out_and_the_request_made_again(symbols: list[str]) -> None:
    async with Simulator(rate=500.0, symbols=tuple(symbols), rest_rate_limit=2) as sim:
        await until_trades(sim, symbols, 2)
        headers = {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}
        async with httpx.AsyncClient(headers=headers, trust_env=False) as other:  # someone else spends the minute
            for _ in range(3):
                await other.get(f"{sim.rest_url}/v2/stocks/{symbols[0]}/trades", params={"feed": "iex"})
        items, client, minutes = await pages(sim, symbols, 2, per_minute=100)
        assert items == 2
        assert client.stats.throttled == 1 and client.stats.requests == 3
        assert minutes.waits and minutes.waits[0] > 0


class Kept:
    """A backfill's record sink that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []

    async def put(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        self.records += records


async def test_an_option_chain_gap_is_fetched_100_contracts_a_request_within_the_budget() -> None:
    """250 contracts: three requests (the simulator refuses more than 100 contracts in one, as Alpaca does),
    spending the client's budget of two a minute, so the third waits for the first's minute to end."""
    contracts = chain(["SPY", "QQQ", "AAPL"], DEFAULT_START_NS, expiries=3, strikes=14)[:250]
    config = SimulatorConfig(rate=1000, start_ns=DEFAULT_START_NS, option_symbols=tuple(contracts),
                             feed=OPTION_FEEDS[0])  # fmt: skip
    async with Simulator(config) as sim:
        history = sim.history(OPTION_FEEDS[0])
        assert isinstance(history, History)
        await wait_for(lambda: history.recorded >= 100, 30, "100 option trades")
        minutes = Minutes(sim)
        client = HistoryClient(sim.rest_url, "key", "secret", None, of=OPTIONS, per_minute=2,
                               sleep=minutes.sleep, clock=minutes.clock)  # fmt: skip
        sink = Kept()
        filler = Backfiller(client, sink, {"t": "options.trades"}, ["trades"], feed=OPTIONS)
        gap, made = Gap(DEFAULT_START_NS, history.clock_ns, contracts), history.recorded  # the trades up to its end
        try:
            await filler.fill(gap)
        finally:
            await client.aclose()
        assert gap.finished("trades") and sorted(gap.progress) == ["trades/0", "trades/1", "trades/2"]
        assert client.stats.requests == 3 and client.stats.throttled == 0 and filler.last_error is None
        assert len(minutes.waits) == 1 and 59 < minutes.waits[0] <= 61, minutes.waits
        assert len(sink.records) == filler.events["trades"] == made, "expected every trade of the window, once"
