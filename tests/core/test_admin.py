"""The shared admin surface (``tickpipe.admin``): the same routes everywhere, and a token for state changes.

Served by the real :class:`AdminServer` on a free port; requests over HTTP.
The token matrix: reads always pass; a state change passes with the right
bearer token, is 401 without one and 403 with a wrong one; with no token set it
passes on a loopback-bound surface and is refused (403) on one bound beyond.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from tickpipe.admin import AdminServer, admin_app, is_loopback
from tickpipe.service import BindError


def service_app(ready: bool = True) -> FastAPI:
    """An admin app as a service builds it, plus a route of its own that changes state (as /symbols)."""
    registry = CollectorRegistry()
    Counter("tickpipe_test_things", "Things counted", registry=registry).inc(3)

    async def is_ready() -> tuple[bool, dict[str, Any]]:
        return ready, {"checks": {"thing": ready}}

    async def health() -> dict[str, Any]:
        return {"things": 3}

    app = admin_app("test service", registry, is_ready, health)
    changed: list[str] = []

    @app.post("/things")
    async def add_thing() -> dict[str, int]:
        changed.append("thing")
        return {"things": len(changed)}

    return app


@asynccontextmanager
async def serving(app: FastAPI, host: str = "127.0.0.1", token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    server = AdminServer(app, host, 0, setting="TEST_ADMIN_PORT", token=token)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as client:
            yield client
    finally:
        await server.stop()


async def test_health_readiness_and_metrics() -> None:
    async with serving(service_app()) as http:
        assert (await http.get("/healthz")).json() == {"status": "alive"}
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "checks": {"thing": True}})
        assert (await http.get("/health")).json() == {"things": 3}
        assert "tickpipe_test_things_total 3.0" in (await http.get("/metrics")).text
    async with serving(service_app(ready=False)) as http:
        not_ready = await http.get("/readyz")
        assert (not_ready.status_code, not_ready.json()["ready"]) == (503, False)


TokenCase = tuple[str | None, str, dict[str, str], int]

MATRIX: list[TokenCase] = [
    # token set, bind host, request headers, expected status of POST /things
    ("s3cret", "127.0.0.1", {}, 401),
    ("s3cret", "127.0.0.1", {"Authorization": "Bearer wrong"}, 403),
    ("s3cret", "127.0.0.1", {"Authorization": "Basic s3cret"}, 403),
    ("s3cret", "127.0.0.1", {"Authorization": "Bearer s3cret"}, 200),
    ("s3cret", "0.0.0.0", {"Authorization": "Bearer s3cret"}, 200),
    ("s3cret", "0.0.0.0", {}, 401),
    (None, "127.0.0.1", {}, 200),
    (None, "0.0.0.0", {}, 403),
    (None, "0.0.0.0", {"Authorization": "Bearer anything"}, 403),
]


@pytest.mark.parametrize(("token", "host", "headers", "expected"), MATRIX)
async def test_state_changes_need_the_token(
    token: str | None, host: str, headers: dict[str, str], expected: int
) -> None:
    async with serving(service_app(), host, token) as http:
        answer = await http.post("/things", headers=headers)
        assert answer.status_code == expected, answer.text
        assert (await http.get("/health")).status_code == 200  # reading never needs it
    if expected == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "TICKPIPE_ADMIN_TOKEN" in answer.json()["detail"]
    elif expected == 403 and token is None:
        assert answer.json()["detail"].startswith("this admin route changes state and the admin surface listens on")
        assert "TICKPIPE_ADMIN_TOKEN" in answer.json()["detail"]
    elif expected == 403:
        assert answer.json() == {"detail": "the bearer token is not TICKPIPE_ADMIN_TOKEN", "status": 403}


def test_loopback_addresses() -> None:
    loopback: Callable[[str], bool] = is_loopback
    assert all(map(loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]))
    assert not any(map(loopback, ["0.0.0.0", "::", "", "10.0.0.5", "producer"]))


async def test_a_taken_port_names_the_setting() -> None:
    first = AdminServer(service_app(), "127.0.0.1", 0)
    await first.start()
    try:
        with pytest.raises(BindError) as info:
            AdminServer(service_app(), "127.0.0.1", first.port, setting="CONSUMER_ADMIN_PORT")
    finally:
        await first.stop()
    assert str(info.value) == (
        f"CONSUMER_ADMIN_PORT: cannot listen on 127.0.0.1:{first.port} (Address already in use); "
        "another process holds it: choose another port (0 = any free)"
    )
