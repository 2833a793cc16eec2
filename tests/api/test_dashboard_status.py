"""``GET /status``: the producer's and consumers' ``/health`` summed for the dashboard's strip.

The services' documents are served by the real admin server (``tickpipe.admin``)
on free ports, shaped as the services write them; a part with nothing
listening is reported down without failing the route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api.routes.status import Tracker, health_url, router, total
from tickpipe.admin import AdminServer, admin_app
from tickpipe.dev.processes import free_port
from tickpipe.settings import load_settings


def producer_doc(received: int) -> dict[str, Any]:
    """Shaped as producer/service.py writes its /health (the parts the status reads, and some others)."""
    return {
        "uptime_s": 12.5,
        "upstream": {"state": "streaming", "events": received, "reconnects": {"silence": 1}},
        "received": {"q": received - 100, "t": 80, "b": 20},
        "dead_letters": 1,
        "redis": {"connected": True, "published": received, "queued": 0, "dropped": {"queue_full": 3}},
        "kafka": {"state": "connected", "acked": received, "pending": 0},
        "spool": {"depth": 0, "bytes": 0, "path": "/tmp/spool"},
    }


def consumer_doc() -> dict[str, Any]:
    """Shaped as consumers/service.py writes its /health."""

    def worker(lag: dict[str, int], rows: int, dead: int) -> dict[str, Any]:
        return {"running": True, "lag": lag, "stats": {"rows_written": rows, "dead_letters": dead, "records": rows}}

    return {
        "workers": {
            "quotes": worker({"tickpipe.quotes:0": 4, "tickpipe.quotes:1": 6}, 1000, 2),
            "trades": worker({"tickpipe.trades:0": 0}, 500, 0),
            "bars": worker({}, 20, 1),
        },
        "dead_letters_sent": 3,
    }


@asynccontextmanager
async def health_server(doc: dict[str, Any]) -> AsyncIterator[AdminServer]:
    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    async def health() -> dict[str, Any]:
        return doc

    server = AdminServer(admin_app("fake part", CollectorRegistry(), ready, health), "127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def status_app(producer_port: int, consumer_port: int) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    settings = load_settings(producer_admin_port=producer_port, consumer_admin_port=consumer_port)
    app.state.api = SimpleNamespace(settings=settings)
    return app


async def get_status(app: FastAPI) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        response = await client.get("/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_status_sums_both_documents() -> None:
    producer_state = producer_doc(received=1000)
    async with health_server(producer_state) as producer, health_server(consumer_doc()) as consumers:
        app = status_app(producer.port, consumers.port)
        body = await get_status(app)
    assert body["parts"] == {
        "producer": {"url": f"{producer.url}/health", "reachable": True, "error": None},
        "consumers": {"url": f"{consumers.url}/health", "reachable": True, "error": None},
    }
    assert body["events_total"] == 1000
    assert body["events_per_s"] is None  # one sample: no rate yet
    assert body["drops"] == 3
    assert body["consumer_lag"] == 10
    assert body["rows_written"] == 1520
    assert body["dead_letters"] == 4  # 1 in the producer, 3 in the consumers
    assert body["upstream"] == "streaming"


async def test_a_part_that_is_down_is_reported_not_fatal() -> None:
    async with health_server(consumer_doc()) as consumers:
        app = status_app(free_port(), consumers.port)
        body = await get_status(app)
    producer = body["parts"]["producer"]
    assert producer["reachable"] is False
    assert "Connection refused" in producer["error"] or "ConnectionRefused" in producer["error"]
    assert body["events_per_s"] is None and body["drops"] is None and body["upstream"] is None
    assert body["consumer_lag"] == 10  # the part that answers still counts


async def test_nothing_running_gives_nulls() -> None:
    body = await get_status(status_app(free_port(), free_port()))
    assert {name: part["reachable"] for name, part in body["parts"].items()} == {
        "producer": False,
        "consumers": False,
    }
    assert [body[k] for k in ("events_per_s", "drops", "consumer_lag", "dead_letters")] == [None] * 4


async def test_events_per_second_from_successive_samples() -> None:
    now = [100.0]
    docs = {"producer": producer_doc(received=1000), "consumers": consumer_doc()}

    async def fetch(url: str) -> dict[str, Any]:
        return docs["producer" if "producer" in url else "consumers"]

    tracker = Tracker(fetch=fetch, clock=lambda: now[0])
    urls = {"producer": "http://producer/health", "consumers": "http://consumers/health"}
    assert (await tracker.status(urls))["events_per_s"] is None

    docs["producer"] = producer_doc(received=1500)
    now[0] += 0.5  # within the cache interval: the same answer, no new sample
    assert (await tracker.status(urls))["events_total"] == 1000
    now[0] += 2.0  # 2.5 s after the first sample
    assert (await tracker.status(urls))["events_per_s"] == 200.0

    docs["producer"] = producer_doc(received=300)  # restarted: counts start over, no negative rate
    now[0] += 2.0
    assert (await tracker.status(urls))["events_per_s"] is None
    docs["producer"] = producer_doc(received=700)
    now[0] += 4.0
    assert (await tracker.status(urls))["events_per_s"] == 100.0


def test_health_url_reaches_bind_all_hosts_on_the_loopback() -> None:
    assert health_url("0.0.0.0", 8081) == "http://127.0.0.1:8081/health"
    assert health_url("::1", 8082) == "http://[::1]:8082/health"
    assert health_url("producer", 8081) == "http://producer:8081/health"


def test_total_sums_nested_counts_and_ignores_the_rest() -> None:
    assert total({"a": 1, "b": {"c": 2.5, "d": [3, 4]}, "e": "x", "f": True, "g": None}) == 10.5


def test_a_document_of_another_shape_gives_nulls_not_errors() -> None:
    tracker = Tracker()
    body = tracker.summarize({"received": "many", "redis": []}, {"workers": ["not", "a", "dict"]})
    assert body["events_total"] == 0 and body["drops"] is None and body["consumer_lag"] is None
