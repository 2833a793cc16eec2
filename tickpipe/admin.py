"""The small HTTP admin surface every long-running service exposes: health, readiness, metrics.

Each service passes its own readiness check, health document and Prometheus
registry (one registry per service instance, so tests may run several in one
process), and may add routes of its own (the producer's ``/symbols``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
HealthDoc = Callable[[], Awaitable[dict[str, Any]]]


def admin_app(title: str, registry: CollectorRegistry, ready: ReadyCheck, health: HealthDoc) -> FastAPI:
    """/healthz (alive), /readyz (200 or 503 with the reasons), /health (JSON state), /metrics."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ok, detail = await ready()
        return JSONResponse({"ready": ok, **detail}, status_code=200 if ok else 503)

    @app.get("/health")
    async def health_doc() -> dict[str, Any]:
        return await health()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


class EmbeddedUvicorn(uvicorn.Server):
    """uvicorn that leaves signal handling to the service it runs inside (its own would swallow SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AdminServer:
    """uvicorn inside the service's own event loop; ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = EmbeddedUvicorn(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="admin-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        log.info("admin endpoints on %s (/healthz /readyz /health /metrics)", self.url)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sock.close()
