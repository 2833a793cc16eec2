"""Each injected fault, and what a client sees of it."""

from __future__ import annotations

import asyncio
import logging

import pytest
from websockets.exceptions import ConnectionClosed

from simulator import Faults, Simulator, SimulatorConfig
from simulator.wire import decode_frame
from tests.helpers.simulator import CONTROL, AlpacaThread, Handler, StockDataStream, StreamClient, Trade, alpaca
from tests.helpers.waiting import wait_for


def faulty(**faults: object) -> SimulatorConfig:
    return SimulatorConfig(faults=Faults(**faults))  # type: ignore[arg-type]


async def test_close_after_n_messages_closes_with_1001_after_exactly_n() -> None:
    async with Simulator(faulty(close_after=1234)) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(quotes=["*"], trades=["*"])
        with pytest.raises(ConnectionClosed) as closed:
            await client.collect(10**9)
        assert len(client.data) == 1234 == sim.sessions[0].sent_total
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_alpaca_py_reconnects_after_the_server_closes_on_it() -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_trades(handler, "*")

    config = SimulatorConfig(rate=5000, faults=Faults(close_after=50))
    async with Simulator(config) as sim, alpaca(sim, subscribe) as client:
        await wait_for(lambda: len(client.received) >= 120, 20, "trades over three connections")
        assert len(sim.sessions) >= 3
        assert all(s.sent_total <= 50 for s in sim.sessions)


async def test_refused_connection_answers_406_to_auth_and_stays_open() -> None:
    async with Simulator(faulty(refuse_connections=-1)) as sim, StreamClient.connect(sim.url) as client:
        assert (await client.control())["msg"] == "connected"
        for _ in range(2):
            await client.send({"action": "auth", "key": "k", "secret": "s"})
            assert await client.control() == {"T": "error", "code": 406, "msg": "connection limit exceeded"}
        await client.send({"action": "subscribe", "quotes": ["AAPL"]})
        assert (await client.control())["code"] == 401


async def test_never_authenticate_leaves_the_client_waiting_until_the_404() -> None:
    config = SimulatorConfig(auth_timeout=0.3, faults=Faults(never_authenticate=True))
    async with Simulator(config) as sim:
        async with StreamClient.connect(sim.url) as client:
            assert (await client.control())["msg"] == "connected"
            await client.send({"action": "auth", "key": "k", "secret": "s"})
            assert await client.control() == {"T": "error", "code": 404, "msg": "auth timeout"}
            with pytest.raises(ConnectionClosed):
                await client.recv()
        stream = AlpacaThread(sim.url).stream
        with pytest.raises(ValueError, match="auth timeout"):
            await stream._start_ws()
        await stream.close()


async def test_a_malformed_frame_fails_to_decode_and_data_goes_on() -> None:
    async with Simulator(faulty(malformed_after=100)) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(trades=["*"])
        await client.collect(100)
        assert len(client.data) == 100
        bad = await client.ws.recv()
        with pytest.raises(ValueError):
            decode_frame(bad)
        await client.collect(200)
        assert all(m["T"] in ("t", "c", "x") for m in client.data)


async def test_alpaca_py_logs_a_malformed_frame_and_keeps_streaming(caplog: pytest.LogCaptureFixture) -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_trades(handler, "*")

    caplog.set_level(logging.ERROR, logger="alpaca")
    config = SimulatorConfig(rate=5000, faults=Faults(malformed_after=20))
    async with Simulator(config) as sim, alpaca(sim, subscribe) as client:
        await wait_for(lambda: len(client.of_type(Trade)) >= 100, 20, "trades after the bad frame")
        assert "error during websocket communication" in caplog.text
        assert len(sim.sessions) == 1


async def test_silent_connection_confirms_subscriptions_but_sends_no_data() -> None:
    async with Simulator(faulty(silent_after=0)) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(quotes=["*"])
        # Were data flowing, it would come between the two confirmations.
        await client.send({"action": "subscribe", "trades": ["*"]})
        assert (await client.recv())[0]["T"] == "subscription"
        assert client.data == [] and sim.sessions[0].sent_total == 0
        await asyncio.wait_for(await client.ws.ping(), 10)  # and the connection is alive


async def test_silent_after_n_sends_n_then_nothing() -> None:
    async with Simulator(faulty(silent_after=300)) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(quotes=["*"])
        await client.collect(300)
        await client.send({"action": "subscribe", "trades": ["*"]})
        assert (await client.recv())[0]["T"] == "subscription"
        assert len(client.data) == 300 == sim.sessions[0].sent_total


async def test_alpaca_py_reconnects_when_a_connection_goes_mute() -> None:
    def subscribe(stream: StockDataStream, handler: Handler) -> None:
        stream.subscribe_trades(handler, "*")

    async with Simulator(faulty(silent_after=0)) as sim, alpaca(sim, subscribe, data_timeout=0.3):
        await sim.wait_for(lambda: len(sim.sessions) >= 2)
        assert sim.sent_total == 0


async def test_a_server_that_reads_slowly_applies_changes_late() -> None:
    async with Simulator(rate=20_000) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(quotes=["SPY"], trades=["SPY"])
        sim.pause_reading()
        await client.send({"action": "unsubscribe", "quotes": ["SPY"]})
        client.data.clear()
        await client.collect(200)  # the unsubscribe is unread: quotes keep coming
        assert any(m["T"] == "q" for m in client.data)
        sim.resume_reading()
        reply = await client.control()
        assert reply["quotes"] == [] and reply["trades"] == ["SPY"]
        client.data.clear()
        assert all(m["T"] != "q" for m in await client.collect(100))


async def test_read_delay_still_answers_every_message_in_order() -> None:
    async with Simulator(faulty(read_delay=0.05)) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.send({"action": "subscribe", "quotes": ["AAPL"]})
        await client.send({"action": "subscribe", "quotes": ["MSFT"]})
        assert (await client.control())["quotes"] == ["AAPL"]
        assert (await client.control())["quotes"] == ["AAPL", "MSFT"]


async def test_a_client_that_stops_reading_is_dropped_with_407() -> None:
    config = SimulatorConfig(rate=50_000, send_buffer=5_000, record=True)
    async with Simulator(config) as sim, StreamClient.connect(sim.url, max_queue=1) as client:
        await client.login()
        await client.subscribe(quotes=["*"], trades=["*"])
        await sim.wait_for(lambda: sim.sessions[0].slow, 60)  # the client reads nothing meanwhile
        messages = []
        with pytest.raises(ConnectionClosed):
            while True:
                messages += await client.recv()
        assert messages[-1] == {"T": "error", "code": 407, "msg": "slow client"}
        assert all(m["T"] not in CONTROL for m in messages[:-1])
        assert client.ws.close_code == 1008
        assert sim.sessions[0].errors == [407]
