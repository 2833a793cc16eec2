"""The simulator's trading stream on ``/stream``: Alpaca's protocol, the account's order lifecycles."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from simulator import Simulator, SimulatorConfig
from simulator.orders import OrderFlow
from tests.helpers.trading import TradingThread
from tests.helpers.waiting import wait_for
from tickpipe.trade_update_events import EVENTS
from tickpipe.trading_wire import decode_update

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.trading.models import TradeUpdate as AlpacaTradeUpdate

FAST = SimulatorConfig(order_rate=500, record=True)


def flow(n: int) -> list[dict[str, Any]]:
    clock = iter(range(1_700_000_000_000_000_000, 1_800_000_000_000_000_000, 1_000_000))
    orders = OrderFlow(("AAPL", "MSFT"), 3, lambda: next(clock))
    return [orders.next() for _ in range(n)]


def test_orders_live_whole_lives_that_alpaca_py_parses() -> None:
    updates = flow(400)
    assert updates == flow(400), "expected the same flow from the same seed"
    kinds = Counter(u["event"] for u in updates)
    assert {"new", "fill", "partial_fill", "canceled", "replaced"} <= set(kinds) <= set(EVENTS)
    by_order: dict[str, list[dict[str, Any]]] = {}
    for update in updates:
        parsed = AlpacaTradeUpdate(**update)  # what TradingStream does with each message
        assert str(parsed.order.id) == update["order"]["id"]
        by_order.setdefault(update["order"]["id"], []).append(update)
        assert decode_update(update, 0).order_id == update["order"]["id"]
    stamps = [decode_update(u, 0).timestamp for u in updates]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "expected strictly rising timestamps"
    for lives in list(by_order.values())[:-1]:  # the last order may still be open
        assert lives[0]["event"] == "new"
        assert lives[-1]["event"] in ("fill", "canceled", "replaced")
        fills = [u for u in lives if u["event"] in ("fill", "partial_fill")]
        assert all(u["execution_id"] and u["price"] and u["qty"] for u in fills)
        if lives[-1]["event"] == "fill":
            assert sum(float(u["qty"]) for u in fills) == float(lives[-1]["order"]["qty"])
            assert lives[-1]["order"]["status"] == "filled"


async def raw_client(url: str) -> Any:
    return await connect(url, proxy=None)


async def test_the_protocol_as_alpaca_sends_it_in_binary_frames() -> None:
    async with Simulator(FAST, order_updates=5) as sim:
        async with await raw_client(sim.trading_url) as ws:
            await ws.send(orjson.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}).decode())
            refused = await ws.recv()
            assert isinstance(refused, bytes), "expected a binary frame"
            assert orjson.loads(refused)["data"]["status"] == "unauthorized"
        async with await raw_client(sim.trading_url) as ws:
            await ws.send(orjson.dumps({"action": "authenticate", "data": {"key_id": "k", "secret_key": "s"}}))
            assert orjson.loads(await ws.recv()) == {
                "stream": "authorization", "data": {"status": "authorized", "action": "authenticate"},
            }  # fmt: skip
            await ws.send(orjson.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
            assert orjson.loads(await ws.recv()) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
            got = [orjson.loads(await ws.recv()) for _ in range(5)]
        assert [m["stream"] for m in got] == ["trade_updates"] * 5
        assert [m["data"] for m in got] == sim.desk.updates


async def test_wrong_credentials_are_unauthorized_and_closed() -> None:
    async with Simulator(FAST, key="PK1", secret="right") as sim:
        async with await raw_client(sim.trading_url) as ws:
            await ws.send(orjson.dumps({"action": "auth", "key": "PK1", "secret": "wrong"}))
            answer = orjson.loads(await ws.recv())
            assert answer["stream"] == "authorization" and answer["data"]["status"] == "unauthorized"
            await ws.wait_closed()
            assert ws.close_code == 1008
        assert sim.desk.updates == []


@pytest.mark.parametrize("n", [40])
async def test_alpaca_py_trading_stream_gets_every_update_as_its_models(n: int) -> None:
    async with Simulator(FAST, order_updates=n, key="PK1", secret="right") as sim:
        client = TradingThread(sim.trading_url, "PK1", "right")
        client.start()
        try:
            await wait_for(lambda: len(client.received) >= n, 30, f"{n} trade updates in alpaca-py")
        finally:
            await client.stop()
        assert len(client.received) == n
        assert [(str(u.order.id), str(u.event)) for u in client.received] == [
            (u["order"]["id"], u["event"]) for u in sim.desk.updates
        ]
        assert all(isinstance(u, AlpacaTradeUpdate) for u in client.received)
