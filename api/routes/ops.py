"""``/healthz`` (the process runs), ``/readyz`` (PostgreSQL and Redis answer), ``/metrics``, and ``/``."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import State
from api.models import Alive, Readiness

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT_S: Final = 2.0


@router.get("/healthz", response_model=Alive, summary="Liveness", description="200 while the process serves.")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


async def _check_postgres(state: State) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await state.pool.fetchval("SELECT 1")
        return "ok"
    except Exception as exc:
        return f"unavailable: {exc or type(exc).__name__}"


async def _check_redis(state: State) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await state.redis.ping()
        return "ok"
    except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
        return f"unavailable: {exc or type(exc).__name__}"


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    description="200 when PostgreSQL and Redis both answer, else 503 saying which does not.",
    responses={503: {"model": Readiness, "description": "PostgreSQL or Redis does not answer"}},
)
async def readyz(state: State) -> JSONResponse:
    postgres, redis_state = await asyncio.gather(_check_postgres(state), _check_redis(state))
    ready = postgres == "ok" and redis_state == "ok"
    # A driver's error text may quote the DSN: no password leaves the process.
    body: dict[str, Any] = {"ready": ready, "postgres": state.scrub(postgres), "redis": state.scrub(redis_state)}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Request latency by route, WebSocket clients, messages sent, slow-client disconnects, "
    "Redis subscriptions.",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"example": "tickpipe_api_ws_clients 3.0\n"}}}},
)
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/",
    summary="Dashboard",
    description="The dashboard page (api/static/index.html) when installed; 404 otherwise.",
    response_class=Response,
    responses={
        200: {"content": {"text/html": {"example": "<!doctype html>..."}}},
        404: {"description": "No dashboard installed", "content": {"application/json": {"example": {"detail": "..."}}}},
    },
)
async def dashboard(state: State) -> Response:
    index = state.static_dir / "index.html"
    if index.is_file():
        return FileResponse(index, media_type="text/html")
    return JSONResponse({"detail": "no dashboard installed (api/static/index.html is missing)"}, status_code=404)
