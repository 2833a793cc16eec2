"""The FastAPI app: ``create_app(settings)``. Routers live in ``api/routes``, the stream in ``api/stream``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry

from api.auth import Denied, check_exposure, count_keys
from api.csv import RETRY_AFTER_S, ExportsBusy
from api.deps import api_key
from api.metrics import ApiMetrics, RequestTimer
from api.models import AUTH_RESPONSES
from api.pool import PoolBusy
from api.routes import history, latest, news, ops, status, symbols, trade_updates
from api.state import STATIC_DIR, open_state, required_urls, scrub
from api.stream.handler import endpoint_for
from api.stream.protocol import FEED_CHANNELS, STOCK_CHANNELS
from api.stream.trading import trading_endpoint
from tickpipe.admin import is_loopback
from tickpipe.feeds import TRADE_UPDATES_FEED
from tickpipe.settings import Settings

DESCRIPTION = """History of quotes, trades and bars from PostgreSQL, and the live stream from Redis
at `WS /v2/stream` (stocks), `WS /v1beta3/crypto/us` (crypto) and `WS /v1beta1/opra` or
`/v1beta1/indicative` (options, msgpack only), each other feed when ALPACA_FEEDS names it, speaking
Alpaca's market-data stream protocol (JSON, or msgpack with the `Content-Type: application/msgpack`
handshake header), so any Alpaca client can point here. The account's order updates at `WS /stream`
(the trading stream's protocol) and `GET /trade_updates`, only to keys allowed to see them."""

#: Net new container objects before a young collection: above the objects of the pages in flight.
YOUNG_GC_THRESHOLD = 20_000

#: Failures that mean "PostgreSQL does not answer": a 503 the client may retry, not a 500.
DATABASE_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def create_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    static_dir: Path = STATIC_DIR,
    host: str | None = None,
) -> FastAPI:
    """The API of one instance; PostgreSQL and Redis are opened by its lifespan (uvicorn or a test).

    ``host``: the address it will listen on (API_HOST unless given). Beyond loopback, keys are required
    and, with none in the database, the app is refused here (SettingsError) unless TICKPIPE_API_AUTH=off.
    """
    database_url, _ = required_urls(settings)
    host = host or settings.api_host
    check_exposure(settings, host, lambda: count_keys(database_url))
    metrics = ApiMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_state(settings, metrics, static_dir, exposed=not is_loopback(host)) as state:
            app.state.api = state
            gc.freeze()  # what start-up made lives as long as the app: keep it out of every collection
            # A history page holds ~2,000 tracked objects (records, condition lists) while it is built; at the
            # default threshold (700) every page set off young collections that promoted them all to older
            # generations for nothing. Measured on bench/api.py: 4,579 young collections (475 ms) down to 250.
            gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
            yield

    # /docs and /redoc load Swagger UI and ReDoc from this app (fastapi-offline's copies, under
    # /static-offline-docs), not from a CDN: the docs of a pipeline on a laptop must work offline.
    app = FastAPIOffline(title="tickpipe API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.add_middleware(RequestTimer, metrics=metrics)
    for failure in DATABASE_DOWN:
        app.add_exception_handler(failure, database_down)
    app.add_exception_handler(PoolBusy, busy)
    app.add_exception_handler(ExportsBusy, busy)
    app.add_exception_handler(Denied, denied)
    for router in (latest.router, history.router, news.router, symbols.router, trade_updates.router):  # latest first
        # Data routes: a key first (api.auth), before anything of the request is looked at.
        app.include_router(router, dependencies=[Depends(api_key)], responses=AUTH_RESPONSES)
    for router in (ops.router, status.router):
        app.include_router(router)
    for channels in FEED_CHANNELS.values():
        # Every feed's paths, configured or not: one ALPACA_FEEDS does not name says so (409) and closes.
        name = "stream" if channels is STOCK_CHANNELS else f"{channels.feed.name}_stream"
        for n, path in enumerate(channels.paths):  # options: /v1beta1/opra, then /v1beta1/indicative
            app.add_api_websocket_route(path, endpoint_for(channels), name=name if n == 0 else f"{name}_{n}")
    # The account's order updates, in the trading stream's dialect, only to keys allowed to see them.
    app.add_api_websocket_route(TRADE_UPDATES_FEED.stream_path, trading_endpoint, name="trade_updates_stream")
    if static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=static_dir), name="static")
    return app


async def database_down(request: Request, exc: Exception) -> JSONResponse:
    """503: PostgreSQL does not answer. The driver's text may quote the DSN: its password is scrubbed."""
    text = scrub(f"PostgreSQL is unavailable: {exc or type(exc).__name__}", request.app.state.api.settings)
    return JSONResponse({"detail": text}, status_code=503, headers={"Retry-After": "1"})


async def denied(request: Request, exc: Exception) -> JSONResponse:
    """401, 403 or 429 as Alpaca answers them: ``{"code": 40110000, "message": ...}``."""
    assert isinstance(exc, Denied)
    return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status, headers=exc.headers)


async def busy(request: Request, exc: Exception) -> JSONResponse:
    """503: this instance is at a bound (pooled connections, CSV exports); the same request may succeed soon."""
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
