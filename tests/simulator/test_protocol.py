"""The simulator's protocol as a plain WebSocket client sees it, JSON and msgpack."""

from __future__ import annotations

from collections import Counter

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulator import Simulator, SimulatorConfig, synthetic_symbols
from simulator.wire import decode_frame
from tests.helpers.simulator import CONTROL, StreamClient

PACED = SimulatorConfig(rate=2000, record=True)


async def test_json_client_connects_authenticates_subscribes_and_gets_batched_data() -> None:
    async with Simulator(record=True) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        reply = await client.subscribe(trades=["AAPL"], quotes=["AMD", "CLDR"], bars=["*"])
        assert reply == {
            "T": "subscription",
            "trades": ["AAPL"],
            "quotes": ["AMD", "CLDR"],
            "bars": ["*"],
            "updatedBars": [],
            "dailyBars": [],
            "statuses": [],
            "lulds": [],
            "corrections": ["AAPL"],
            "cancelErrors": ["AAPL"],
        }
        frame = await client.recv()
        assert len(frame) > 1, "expected data messages batched in one array"
        data = await client.collect(500)
        assert {(m["T"], m["S"]) for m in data} <= {
            ("t", "AAPL"),
            ("q", "AMD"),
            ("q", "CLDR"),
            ("c", "AAPL"),
            ("x", "AAPL"),
        } | {("b", s) for s in sim.config.symbols}
        assert all(isinstance(m["t"], str) and m["t"].endswith("Z") for m in data)
    assert isinstance(client.ws.close_code, int)


async def test_msgpack_client_gets_binary_frames_with_timestamp_extension() -> None:
    async with Simulator() as sim, StreamClient.connect(sim.url, "msgpack") as client:
        await client.login()
        await client.subscribe(quotes=["*"], trades=["*"])
        raw = await client.ws.recv()
        assert isinstance(raw, bytes)
        messages = msgpack.unpackb(raw)
        assert all(isinstance(m["t"], msgpack.Timestamp) for m in messages)
        assert sim.sessions[0].encoding == "msgpack"


async def test_a_subscribe_adds_to_the_set_and_the_confirmation_lists_all_of_it() -> None:
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(quotes=["AAPL"])
        reply = await client.subscribe(quotes=["MSFT"], trades=["*"])
        assert reply["quotes"] == ["AAPL", "MSFT"]
        assert reply["trades"] == reply["corrections"] == reply["cancelErrors"] == ["*"]
        reply = await client.subscribe("unsubscribe", quotes=["AAPL"], trades=["*"])
        assert reply["quotes"] == ["MSFT"] and reply["trades"] == [] and reply["corrections"] == []


async def test_unsubscribe_stops_the_data_from_the_confirmation_on() -> None:
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(quotes=["AAPL", "SPY"])
        await client.collect(50)
        await client.subscribe("unsubscribe", quotes=["AAPL"])
        client.data.clear()
        after = await client.collect(100)
        assert {m["S"] for m in after} == {"SPY"}
        session = sim.sessions[0]
        confirmation = next(
            i for i, m in enumerate(session.messages()) if m.get("T") == "subscription" and m["quotes"] == ["SPY"]
        )
        assert all(m["S"] == "SPY" for m in session.messages()[confirmation:] if m["T"] == "q")


async def test_every_event_the_simulator_sent_arrived() -> None:
    async with Simulator(max_events=25_000, record=True) as sim, StreamClient.connect(sim.url, "msgpack") as client:
        await client.login()
        await client.subscribe(
            trades=["*"], quotes=["*"], bars=["*"], updatedBars=["*"], dailyBars=["*"], statuses=["*"]
        )
        data = await client.collect(25_000)
        assert len(data) == 25_000 == sim.sent_total == sim.produced
        assert Counter(m["T"] for m in data) == sim.sent
        assert data == sim.sessions[0].sent_events()
        assert sim.exhausted


async def test_errors_401_403_400_leave_the_connection_open() -> None:
    async with Simulator() as sim, StreamClient.connect(sim.url) as client:
        assert (await client.control())["msg"] == "connected"
        await client.send({"action": "subscribe", "quotes": ["AAPL"]})
        assert await client.control() == {"T": "error", "code": 401, "msg": "not authenticated"}
        await client.send({"action": "auth", "key": "k", "secret": "s"})
        assert (await client.control())["msg"] == "authenticated"
        await client.send({"action": "auth", "key": "k", "secret": "s"})
        assert await client.control() == {"T": "error", "code": 403, "msg": "already authenticated"}
        for bad in ("{not json", "[1, 2]", '{"action": "dance"}', '{"action": "subscribe", "quotes": "AAPL"}'):
            await client.ws.send(bad)
            assert await client.control() == {"T": "error", "code": 400, "msg": "invalid syntax"}
        await client.send({"action": "subscribe", "news": ["AAPL"]})
        assert (await client.control())["code"] == 410
        assert sim.sessions[0].errors == [401, 403, 400, 400, 400, 400, 410]
        assert (await client.subscribe(quotes=["AAPL"]))["quotes"] == ["AAPL"]


async def test_wrong_credentials_get_402_and_the_right_ones_still_work() -> None:
    async with Simulator(key="key", secret="secret") as sim, StreamClient.connect(sim.url) as client:
        assert (await client.control())["msg"] == "connected"
        await client.send({"action": "auth", "key": "key", "secret": "wrong"})
        assert await client.control() == {"T": "error", "code": 402, "msg": "auth failed"}
        await client.send({"action": "auth", "key": "key", "secret": "secret"})
        assert (await client.control())["msg"] == "authenticated"


async def test_credentials_in_handshake_headers_authenticate_at_once() -> None:
    headers = {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}
    async with Simulator(key="key", secret="secret") as sim, StreamClient.connect(sim.url, headers=headers) as client:
        assert (await client.control())["msg"] == "connected"
        assert (await client.control())["msg"] == "authenticated"
        await client.subscribe(trades=["SPY"])


async def test_no_auth_within_the_timeout_gets_404_and_a_close() -> None:
    async with Simulator(auth_timeout=0.2) as sim, StreamClient.connect(sim.url) as client:
        assert (await client.control())["msg"] == "connected"
        assert await client.control() == {"T": "error", "code": 404, "msg": "auth timeout"}
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 1008


async def test_symbol_limit_405_keeps_the_previous_subscriptions() -> None:
    async with Simulator(symbol_limit=2) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(quotes=["AAPL"])
        await client.send({"action": "subscribe", "trades": ["MSFT", "SPY"]})
        assert await client.control() == {"T": "error", "code": 405, "msg": "symbol limit exceeded"}
        assert sim.sessions[0].subscriptions.listing()["trades"] == []


async def test_second_connection_over_the_limit_gets_406_until_the_first_leaves() -> None:
    async with (
        Simulator(connection_limit=1) as sim,
        StreamClient.connect(sim.url) as first,
        StreamClient.connect(sim.url) as second,
    ):
        await first.login()
        assert (await second.control())["msg"] == "connected"
        await second.send({"action": "auth", "key": "k", "secret": "s"})
        assert await second.control() == {"T": "error", "code": 406, "msg": "connection limit exceeded"}
        await first.ws.close()
        await sim.wait_for(lambda: not sim.sessions[0].authenticated)
        await second.send({"action": "auth", "key": "k", "secret": "s"})
        assert (await second.control())["msg"] == "authenticated"


async def test_a_feed_outside_the_subscription_gets_409_and_a_close() -> None:
    async with Simulator(entitled_feeds=("iex",)) as sim, StreamClient.connect(sim.url_for("sip")) as client:
        assert (await client.control())["msg"] == "connected"
        await client.send({"action": "auth", "key": "k", "secret": "s"})
        assert await client.control() == {"T": "error", "code": 409, "msg": "insufficient subscription"}
        with pytest.raises(ConnectionClosed):
            await client.recv()


async def test_every_feed_is_served_and_an_unknown_path_is_refused() -> None:
    async with Simulator() as sim:
        for feed in ("iex", "sip", "test"):
            async with StreamClient.connect(sim.url_for(feed)) as client:
                await client.login()
                await client.subscribe(trades=["*"])
                venues = {m["x"] for m in await client.collect(200)}
                assert (venues == {"V"}) == (feed == "iex")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(sim.url_for("crypto")):
                pass
        assert refused.value.response.status_code == 404


async def test_a_subscribe_split_in_32k_fragments_is_reassembled() -> None:
    symbols = list(synthetic_symbols(8000))
    async with Simulator() as sim, StreamClient.connect(sim.url, "msgpack") as client:
        await client.login()
        packed = msgpack.packb({"action": "subscribe", "quotes": symbols})
        assert len(packed) > 32768
        await client.ws.send(packed[i : i + 32768] for i in range(0, len(packed), 32768))
        reply = await client.control()
        assert reply["T"] == "subscription" and reply["quotes"] == symbols


async def test_control_messages_arrive_alone_and_data_in_arrays() -> None:
    async with Simulator(PACED) as sim, StreamClient.connect(sim.url) as client:
        await client.login()
        await client.subscribe(quotes=["*"])
        await client.collect(1000)
        await client.subscribe(trades=["*"])
        for frame in sim.sessions[0].frames:
            messages = decode_frame(frame)
            if messages[0]["T"] in CONTROL:
                assert len(messages) == 1
            else:
                assert all(m["T"] not in CONTROL for m in messages)
