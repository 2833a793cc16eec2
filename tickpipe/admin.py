"""The one admin surface: ``/healthz``, ``/readyz``, ``/health`` and ``/metrics``, and who may change state.

The producer and the consumers serve it on their admin port (:func:`admin_app`
under :class:`AdminServer`); the API serves the same routes on its own port
(:func:`ops_router`, included by ``api/routes/ops.py``). One set of routes, so
a probe, a scraper or a person finds the same answers everywhere.

A route that changes state (any method but GET and HEAD: the producer's
``POST /symbols``) needs ``Authorization: Bearer <TICKPIPE_ADMIN_TOKEN>``
(:class:`AdminGuard`). With no token set, such routes answer only on a surface
bound to the loopback, where only this machine's users reach them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from tickpipe.service import Uvicorn, bind

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
HealthDoc = Callable[[], Awaitable[dict[str, Any]]]
#: The same, for a surface whose checks need the request (the API reaches its state through the app).
ReadyOf = Callable[[Request], Awaitable[tuple[bool, dict[str, Any]]]]
RegistryOf = Callable[[Request], CollectorRegistry]
HealthOf = Callable[[Request], Awaitable[dict[str, Any]]]

#: Methods that only read: everything else changes state and needs the token.
READ_METHODS: Final = frozenset({"GET", "HEAD"})


class Alive(BaseModel):
    status: str


def ops_router(
    ready: ReadyOf,
    registry: RegistryOf,
    health: HealthOf | None = None,
    *,
    readiness_model: type[BaseModel] | None = None,
    ready_description: str = "200 when the service can do its work, else 503 saying why not.",
    metrics_description: str = "This process's counters, gauges and histograms, in Prometheus' text format.",
    tags: list[str] | None = None,
) -> APIRouter:
    """/healthz (alive), /readyz (200 or 503 with the reasons), /metrics, and /health when given."""
    router = APIRouter(tags=list(tags or ["operations"]))

    @router.get("/healthz", response_model=Alive, summary="Liveness", description="200 while the process serves.")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get(
        "/readyz",
        response_model=readiness_model,
        summary="Readiness",
        description=ready_description,
        responses={503: {"model": readiness_model, "description": "Not ready: the body says why"}}
        if readiness_model
        else None,
    )
    async def readyz(request: Request) -> JSONResponse:
        ok, detail = await ready(request)
        return JSONResponse({"ready": ok, **detail}, status_code=200 if ok else 503)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        description=metrics_description,
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"example": "# HELP ...\n"}}}},
    )
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry(request)), media_type=CONTENT_TYPE_LATEST)

    if health is not None:
        health_of = health

        @router.get("/health", summary="Health document", description="This process's state, as JSON.")
        async def health_doc(request: Request) -> dict[str, Any]:
            return await health_of(request)

    return router


def admin_app(title: str, registry: CollectorRegistry, ready: ReadyCheck, health: HealthDoc) -> FastAPI:
    """The admin surface of a service: :func:`ops_router` over its own checks; it may add routes."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    async def ready_of(_: Request) -> tuple[bool, dict[str, Any]]:
        return await ready()

    async def health_of(_: Request) -> dict[str, Any]:
        return await health()

    app.include_router(ops_router(ready_of, lambda _: registry, health_of))
    return app


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost`` (host names are case-insensitive); a bind-all or named
    address is not."""
    if host.lower() == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    return False


def refusal(status: int, detail: str) -> bytes:
    return orjson.dumps({"detail": detail, "status": status})


class AdminGuard:
    """ASGI middleware: reads pass; a state change needs the bearer token, or a loopback-only surface.

    Why a middleware and not a dependency: routes are added by each service (the producer's
    ``/symbols``); a guard in front of the whole app cannot be forgotten on a new one.
    """

    def __init__(self, app: ASGIApp, token: str | None, host: str) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        status, detail = self.check(dict(scope["headers"]).get(b"authorization"))
        if status == 200:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json")]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="tickpipe admin"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": refusal(status, detail)})

    def check(self, authorization: bytes | None) -> tuple[int, str]:
        if self.token is None:
            if is_loopback(self.host):
                return 200, ""
            return 403, (
                f"this admin route changes state and the admin surface listens on {self.host}, beyond the "
                "loopback: set TICKPIPE_ADMIN_TOKEN and send it as 'Authorization: Bearer <token>'"
            )
        if authorization is None:
            return 401, "this admin route changes state: send 'Authorization: Bearer <TICKPIPE_ADMIN_TOKEN>'"
        scheme, _, given = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            return 403, "the bearer token is not TICKPIPE_ADMIN_TOKEN"
        return 200, ""


def token_value(token: SecretStr | str | None) -> str | None:
    return token.get_secret_value() if isinstance(token, SecretStr) else token


class AdminServer:
    """The admin surface under uvicorn inside the service's own loop; ``port=0`` picks a free port.

    ``setting`` names the variable a port that cannot be bound is reported under; ``token`` is
    TICKPIPE_ADMIN_TOKEN (see :class:`AdminGuard`).
    """

    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        *,
        setting: str = "admin port",
        token: SecretStr | str | None = None,
    ) -> None:
        self._sock = bind(host, port, setting)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        guarded = AdminGuard(app, token_value(token), host)
        config = uvicorn.Config(guarded, log_level="warning", access_log=False, lifespan="off")
        self._server = Uvicorn(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="admin-http")
        await self._server.wait_started(self._task)
        log.info("admin endpoints on %s (/healthz /readyz /health /metrics)", self.url)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sock.close()
