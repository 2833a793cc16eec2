"""The order updates on the API: ``WS /stream`` for alpaca-py's ``TradingStream`` and ``GET /trade_updates``,
both only for keys allowed to see them (``tickpipe keys add --trade-updates``).

A permitted key's ``TradingStream`` gets every update the producer publishes (N published, N received, as
Alpaca sent them); a key without the scope, a wrong secret and no key at all are answered ``unauthorized``
as Alpaca answers, closed, and get none; the history route answers 403 to all of them and pages the rows to
a permitted key; bad parameters are 422 naming them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio
from websockets.asyncio.client import connect

from simulator.orders import OrderFlow
from tests.helpers.api import ApiServer, api_settings, insert_events, running_api
from tests.helpers.keys import add_key, key_headers
from tests.helpers.trading import TradingThread
from tests.helpers.waiting import wait_for
from tickpipe.trading_wire import decode_update

BASE_NS = 1_709_562_600_000_000_000


def updates(n: int, seed: int = 5) -> list[dict[str, Any]]:
    clock = iter(range(BASE_NS, BASE_NS + n * 10_000_000, 1_000_000))
    flow = OrderFlow(("AAPL", "MSFT"), seed, lambda: next(clock))
    return [flow.next() for _ in range(n)]


@pytest.fixture
async def keys(keyed_db: str) -> dict[str, tuple[str, str]]:
    return {
        "orders": await add_key(keyed_db, "orders", trade_updates=True),
        "market": await add_key(keyed_db, "market only"),
    }


@pytest.fixture
async def trading_api(keyed_db: str, redis_url: str, keys: dict[str, Any]) -> AsyncIterator[ApiServer]:
    settings = api_settings(keyed_db, redis_url, alpaca_feeds="stocks,trade_updates", api_keys_refresh_s=0.1)
    async with running_api(settings) as server:
        yield server


async def answer_to(url: str, auth: dict[str, Any]) -> tuple[dict[str, Any], bool, int | None]:
    """The server's first answer to ``auth`` on a raw WebSocket, whether its frame was binary, and the close code."""
    async with connect(url, proxy=None) as ws:
        await ws.send(orjson.dumps(auth).decode())
        frame = await ws.recv()
        await ws.send(orjson.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}).decode())
        rest = [frame]
        try:
            async for more in ws:
                rest.append(more)
        except Exception:
            pass
        assert rest[1:] == [], "expected nothing after the answer"
        return orjson.loads(frame), isinstance(frame, bytes), ws.close_code


async def test_only_a_permitted_key_gets_the_order_updates(
    trading_api: ApiServer, redis_url: str, keys: dict[str, tuple[str, str]]
) -> None:
    url = f"ws://127.0.0.1:{trading_api.port}/stream"
    for auth, why in (
        (
            {"action": "authenticate", "data": {"key_id": keys["market"][0], "secret_key": keys["market"][1]}},
            "may not see",
        ),
        ({"action": "authenticate", "data": {"key_id": keys["orders"][0], "secret_key": "wrong"}}, "verification"),
        ({"action": "listen", "data": {"streams": ["trade_updates"]}}, "authenticate"),
    ):
        answer, binary, code = await answer_to(url, auth)
        assert binary and answer["stream"] == "authorization" and answer["data"]["status"] == "unauthorized"
        assert why in answer["data"]["message"]
        assert code == 1008

    n = 60
    sent = updates(n)
    client = redis.asyncio.from_url(redis_url)
    permitted = TradingThread(url, *keys["orders"])
    refused = TradingThread(url, *keys["market"])
    try:
        before = int(await client.execute_command("PUBSUB", "NUMPAT"))
        permitted.start()
        refused.start()
        await wait_for(async_above(client, before), 20, "the permitted stream listening in Redis")
        for data in sent:
            await client.publish(f"trade_updates:{data['order']['symbol']}", orjson.dumps(data))
        await wait_for(lambda: len(permitted.received) >= n, 30, f"{n} updates in alpaca-py")
    finally:
        await permitted.stop()
        await refused.stop()
        await client.aclose()
    assert len(permitted.received) == n
    assert [(str(u.order.id), u.event, u.qty, u.order.status) for u in permitted.received] == [
        (d["order"]["id"], d["event"], float(d["qty"]) if "qty" in d else None, d["order"]["status"]) for d in sent
    ], "every update, in order, as alpaca-py's TradeUpdate"
    assert refused.received == [], "expected a key without the scope to get no order update"


def async_above(client: redis.asyncio.Redis, before: int) -> Any:
    async def check() -> bool:
        return int(await client.execute_command("PUBSUB", "NUMPAT")) > before

    return check


async def test_auth_off_still_refuses_the_order_updates(migrated_db: str, redis_url: str) -> None:
    settings = api_settings(migrated_db, redis_url, alpaca_feeds="stocks,trade_updates", tickpipe_api_auth="off")
    async with running_api(settings) as server:
        answer, _, code = await answer_to(
            f"ws://127.0.0.1:{server.port}/stream",
            {"action": "authenticate", "data": {"key_id": "anyone", "secret_key": "anything"}},
        )
        assert answer["data"]["status"] == "unauthorized" and code == 1008
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.get("/trade_updates")
        assert response.status_code == 403 and "--trade-updates" in response.json()["message"]


async def test_the_history_route_serves_a_permitted_key_only(
    trading_api: ApiServer, keyed_db: str, keys: dict[str, tuple[str, str]]
) -> None:
    sent = updates(25, seed=9)
    await insert_events(keyed_db, [decode_update(d, 0) for d in sent])
    async with httpx.AsyncClient(base_url=trading_api.url) as http:
        assert (await http.get("/trade_updates")).status_code == 401
        refused = await http.get("/trade_updates", headers=key_headers(*keys["market"]))
        assert refused.status_code == 403 and refused.json()["code"] == 40310000
        headers = key_headers(*keys["orders"])
        start, end = "2024-03-04T14:30:00Z", "2024-03-04T14:31:00Z"
        items: list[dict[str, Any]] = []
        token: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {
                "start": start,
                "end": end,
                "limit": 7,
                **({"page_token": token} if token else {}),
            }
            page = await http.get("/trade_updates", params=params, headers=headers)
            assert page.status_code == 200, page.text
            body = page.json()
            items += body["trade_updates"]
            pages += 1
            token = body["next_page_token"]
            if token is None:
                break
        assert pages == 4 and len(items) == 25
        assert [(i["order"]["id"], i["event"], i["execution_id"] or "") for i in items] == [
            (d["order"]["id"], d["event"], d.get("execution_id", "")) for d in sent
        ]
        assert [i.get("price") for i in items] == [d.get("price") for d in sent]
        # Newest first with sort=desc, paged the other way round: the same updates, reversed.
        newest: list[dict[str, Any]] = []
        token = None
        while True:
            params = {"start": start, "end": end, "limit": 10, "sort": "desc"}
            if token:
                params["page_token"] = token
            body = (await http.get("/trade_updates", params=params, headers=headers)).json()
            newest += body["trade_updates"]
            token = body["next_page_token"]
            if token is None:
                break
        assert newest == items[::-1]
        one = sent[0]["order"]["id"]
        mine = await http.get("/trade_updates", params={"order_id": one, "start": start}, headers=headers)
        assert {i["order"]["id"] for i in mine.json()["trade_updates"]} == {one}
        aapl = await http.get("/trade_updates", params={"symbol": "aapl", "start": start}, headers=headers)
        assert {i["order"]["symbol"] for i in aapl.json()["trade_updates"]} == {"AAPL"}
        for params, name in (
            ({"symbol": "not a symbol"}, "symbol"),
            ({"start": "yesterday"}, "start"),
            ({"limit": 0}, "limit"),
            ({"page_token": "bm90IGEgdG9rZW4"}, "page_token"),
            ({"sort": "newest"}, "sort"),
        ):
            bad = await http.get("/trade_updates", params=params, headers=headers)
            assert bad.status_code == 422 and name in bad.text, (params, bad.text)
