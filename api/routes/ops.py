"""``/healthz``, ``/readyz`` (PostgreSQL and Redis answer) and ``/metrics``: the shared admin surface; and ``/``.

The routes are :func:`tickpipe.admin.ops_router`'s, the same every tickpipe
process serves; what is the API's own is what readiness means here and whose
metrics are read.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import redis.exceptions
from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CollectorRegistry

from api.deps import State
from api.models import Readiness
from api.state import ApiState
from tickpipe.admin import ops_router

CHECK_TIMEOUT_S: Final = 2.0


async def _check_postgres(state: ApiState) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await state.pool.fetchval("SELECT 1")
        return "ok"
    except Exception as exc:
        return f"unavailable: {exc or type(exc).__name__}"


async def _check_redis(state: ApiState) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await state.redis.ping()
        return "ok"
    except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
        return f"unavailable: {exc or type(exc).__name__}"


async def readiness(state: ApiState) -> tuple[bool, dict[str, Any]]:
    """Ready when PostgreSQL and Redis both answer; also what the API's health document says."""
    postgres, redis_state = await asyncio.gather(_check_postgres(state), _check_redis(state))
    # A driver's error text may quote the DSN: no password leaves the process.
    return postgres == "ok" and redis_state == "ok", {
        "postgres": state.scrub(postgres),
        "redis": state.scrub(redis_state),
    }


async def _ready(request: Request) -> tuple[bool, dict[str, Any]]:
    return await readiness(request.app.state.api)


def _registry(request: Request) -> CollectorRegistry:
    # With --workers, every worker's figures merged: whichever worker answers, the same totals.
    registry: CollectorRegistry = request.app.state.api.metrics.exposition()
    return registry


router = ops_router(
    _ready,
    _registry,
    readiness_model=Readiness,
    ready_description="200 when PostgreSQL and Redis both answer, else 503 saying which does not.",
    metrics_description="Request latency by route, WebSocket clients, messages sent, slow-client disconnects, "
    "Redis subscriptions.",
)


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
