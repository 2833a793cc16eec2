"""The upstream client against the simulator: streaming, every fault, run-time symbols, alpaca-py as reference."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import msgspec
import pytest

from producer.source import UpstreamOptions, UpstreamState
from producer.transcode import Transcoded
from producer.upstream import UpstreamClient
from simulator import Faults, Simulator, SimulatorConfig
from simulator.wire import malformed
from tests.helpers.simulator import Handler, StockDataStream, alpaca
from tests.helpers.waiting import wait_for
from tickpipe.codecs import Rejected, decode_kafka, decode_message
from tickpipe.errors import UpstreamAuthError
from tickpipe.events import Event


class Collected:
    """A FrameSink that keeps everything."""

    def __init__(self) -> None:
        self.events: list[Transcoded] = []
        self.rejected: list[Rejected] = []

    def on_events(self, events: list[Transcoded], received_at: int) -> None:
        self.events += events

    def on_rejected(self, rejected: list[Rejected]) -> None:
        self.rejected += rejected

    def decoded(self) -> list[Event]:
        return [msgspec.structs.replace(decode_kafka(e.kafka), received_at=0) for e in self.events]


def client(sim: Simulator, symbols: Sequence[str] = ("*",), **options: float | str) -> tuple[UpstreamClient, Collected]:
    values: dict[str, object] = {
        "url": sim.url, "key": "key", "secret": "secret", "silence_timeout": 5.0, "reconnect_min": 0.01,
        "reconnect_max": 0.05, "conn_limit_wait": 0.3, "handshake_timeout": 5.0,
    }  # fmt: skip
    values.update(options)
    sink = Collected()
    return UpstreamClient(UpstreamOptions(**values), lambda: symbols, sink), sink  # type: ignore[arg-type]


def faulty(max_events: int = 2_000, **faults: object) -> SimulatorConfig:
    return SimulatorConfig(max_events=max_events, faults=Faults(**faults))  # type: ignore[arg-type]


async def test_streams_what_the_simulator_sends_and_logs_each_state_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "producer.upstream")
    async with Simulator(SimulatorConfig(max_events=3_000, record=True)) as sim:
        upstream, sink = client(sim)
        await upstream.run(max_events=3_000)
    assert upstream.events == len(sink.events) == 3_000
    assert sink.decoded() == [decode_message(m) for m in sim.sessions[0].sent_events()]
    changes = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()]
    assert [c.split(" (")[0] for c in changes] == [
        "upstream: idle -> connecting",
        "upstream: connecting -> authenticating",
        "upstream: authenticating -> subscribing",
        "upstream: subscribing -> streaming",
        "upstream: streaming -> stopped",
    ]
    assert upstream.state is UpstreamState.STOPPED and not upstream.reconnects


async def test_a_closed_connection_is_redialled_and_nothing_is_missed() -> None:
    async with Simulator(faulty(close_after=500)) as sim:
        upstream, sink = client(sim)
        await upstream.run(max_events=2_000)
    assert len(sink.events) == 2_000 == sum(s.sent_total for s in sim.sessions)
    assert len(sim.sessions) == 4
    assert upstream.reconnects["closed"] == 3


async def test_406_waits_for_alpaca_to_drop_the_old_connection_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    async with Simulator(faulty(refuse_connections=1)) as sim:
        upstream, sink = client(sim, conn_limit_wait=0.3)
        began = time.monotonic()
        await upstream.run(max_events=2_000)
    assert upstream.reconnects == {"connection_limit": 1}
    assert time.monotonic() - began >= 0.3, "waited the configured connection-limit pause"
    assert "another connection may be using this Alpaca account" in caplog.text
    assert len(sink.events) == 2_000


async def test_402_stops_with_a_clear_error_instead_of_retrying() -> None:
    async with Simulator(SimulatorConfig(key="right", secret="right")) as sim:
        upstream, sink = client(sim, key="wrong", secret="wrong")
        with pytest.raises(UpstreamAuthError, match="402 auth failed; check ALPACA_API_KEY"):
            await upstream.run()
    assert len(sim.sessions) == 1, "no second attempt"
    assert upstream.state is UpstreamState.FAILED and sink.events == []


async def test_a_silent_connection_is_dropped_by_the_watchdog_and_redialled() -> None:
    async with Simulator(faulty(silent_after=300)) as sim:
        upstream, sink = client(sim, silence_timeout=0.3)
        await upstream.run(max_events=900)
    assert upstream.reconnects["silence"] == 2
    assert len(sink.events) == 900 and len(sim.sessions) == 3


async def test_a_malformed_frame_becomes_one_reject_and_the_stream_goes_on() -> None:
    async with Simulator(faulty(malformed_after=100)) as sim:
        upstream, sink = client(sim)
        await upstream.run(max_events=2_000)
    (reject,) = sink.rejected
    assert reject.raw == malformed("msgpack") and reject.error.field == "$"
    assert len(sink.events) == 2_000 and not upstream.reconnects


async def test_symbols_change_at_run_time_on_the_open_connection() -> None:
    config = SimulatorConfig(symbols=("AAAA", "BBBB"), rate=2_000)
    async with Simulator(config) as sim:
        symbols = ["AAAA"]
        upstream, sink = client(sim, symbols)
        task = asyncio.create_task(upstream.run())
        try:
            await wait_for(lambda: len(sink.events) > 50, what="AAAA events")
            assert {e.symbol for e in sink.events} == {"AAAA"}
            symbols.append("BBBB")
            await upstream.subscribe(["BBBB"])
            await wait_for(lambda: any(e.symbol == "BBBB" for e in sink.events), what="BBBB events")
            symbols.remove("AAAA")
            await upstream.unsubscribe(["AAAA"])
            await wait_for(lambda: upstream.subscription.get("quotes") == ["BBBB"], what="AAAA unsubscribed")
            after = len(sink.events)
            await wait_for(lambda: len(sink.events) > after + 50, what="more events")
            assert {e.symbol for e in sink.events[after:]} == {"BBBB"}
        finally:
            upstream.stop()
            await task
    assert len(sim.sessions) == 1 and not upstream.reconnects, "no reconnect needed"


async def test_alpaca_py_the_reference_client_reads_the_same_events() -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_quotes(handler, "*")
        stream.subscribe_trades(handler, "*")
        stream.subscribe_bars(handler, "*")

    config = SimulatorConfig(max_events=3_000, start_ns=1_717_421_400 * 10**9, seed=11)
    async with Simulator(config) as theirs, alpaca(theirs, subscribe, raw_data=True) as reference:
        async with Simulator(config) as ours:
            upstream, sink = client(ours)
            await upstream.run(max_events=3_000)
        await wait_for(lambda: len(reference.received) >= 3_000, what="alpaca-py to read as many")
    assert sink.decoded() == [decode_message(dict(m)) for m in reference.received]


def test_backoff_grows_exponentially_to_its_cap_with_jitter() -> None:
    backoff = UpstreamClient(
        UpstreamOptions("ws://unused", reconnect_min=0.5, reconnect_max=30.0), list, Collected()
    ).backoff
    waits = {attempt: [backoff.compute(attempt) for _ in range(200)] for attempt in (1, 2, 3, 8, 20)}
    for attempt, delays in waits.items():
        full = min(30.0, 0.5 * 2 ** (attempt - 1))
        assert all(full / 2 <= d <= full for d in delays), f"attempt {attempt}: between half and all of {full}"
        assert len(set(delays)) > 100, "jittered"
    assert max(waits[20]) <= 30.0
