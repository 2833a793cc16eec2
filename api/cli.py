"""``tickpipe api``: serve history over HTTP and the live stream over WebSocket (uvicorn).

Runs until SIGTERM or SIGINT, then stops accepting, closes WebSocket clients
(1012, "service restart", so Alpaca clients reconnect elsewhere), finishes the
requests in flight and exits 0. With ``--workers N``, N processes serve the
one port, each an instance with its own health document; each listens on its
own SO_REUSEPORT socket (the kernel spreads connections evenly; see
``--shared-socket``), a worker that dies is replaced, and ``/metrics`` merges
every worker's figures (:mod:`api.metrics`). Settings come from
the environment (``DATABASE_URL`` and ``REDIS_URL`` required; ``API_HOST``,
``API_PORT``, ``TICKPIPE_API_KEYS``, ``WS_CLIENT_QUEUE_SIZE``, ``WS_MAX_SYMBOLS`` ...).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from api.main import create_app
from api.metrics import MetricsSync, use_multiprocess, worker_ended
from api.routes.ops import readiness
from api.stream.direct import DirectWebSocketProtocol
from tickpipe.errors import SettingsError
from tickpipe.health import Read, Reading, publishers
from tickpipe.logs import setup_logging
from tickpipe.service import Sidecar, Uvicorn, bind, run_workers
from tickpipe.settings import get_settings

log = logging.getLogger("tickpipe.api")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickpipe api", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--host", default=None, help="address to listen on (default API_HOST)")
    p.add_argument("--port", type=int, default=None, help="port to listen on (default API_PORT; 0 = any free port)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes serving the one port (default 1); each is an instance of its own in tickpipe status",
    )
    p.add_argument(
        "--shared-socket",
        action="store_true",
        help="with --workers: all accept on one socket rather than one SO_REUSEPORT socket each "
        "(a dying worker's queued connections survive, but one worker tends to take most of them)",
    )
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument(
        "--ws-deflate",
        action="store_true",
        help="offer permessage-deflate to WebSocket clients (less bandwidth, much more CPU per frame)",
    )
    return p


def reader(app: FastAPI) -> Read:
    """This instance's health, in the shared terms: readiness, WebSocket messages sent, clients connected."""

    async def read() -> Reading:
        state = getattr(app.state, "api", None)
        if state is None:  # the lifespan has not opened PostgreSQL and Redis yet
            return Reading(ready=False)
        ready, detail = await readiness(state)
        errors = [f"{name}: {value}" for name, value in detail.items() if value != "ok"]
        return Reading(
            ready=ready,
            count=state.metrics.stream.messages_sent,
            last_error="; ".join(errors) or None,
            figures={"ws_clients": state.metrics.registry.get_sample_value("tickpipe_api_ws_clients")},
        )

    return read


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        raise SettingsError(f"--workers: expected 1 or more, got {args.workers}")
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    host = args.host or settings.api_host
    workers = args.workers
    reuse_port = workers > 1 and not args.shared_socket
    metrics_dir = Path(tempfile.mkdtemp(prefix="tickpipe-api-metrics-")) if workers > 1 else None
    if metrics_dir is not None:
        use_multiprocess(metrics_dir)  # before create_app makes the first metric
    app = create_app(settings, host=host)  # the address decides whether keys are required (api.auth)
    # With SO_REUSEPORT the parent's socket only holds the port (it never listens); each worker binds its own.
    sock = bind(host, settings.api_port if args.port is None else args.port, "API_HOST/API_PORT", reuse_port=reuse_port)
    port = sock.getsockname()[1]
    streams = ", ".join(feed.stream_path for feed in settings.feeds)
    log.info(
        "tickpipe api on http://%s:%d (docs at /docs, streams at %s)%s",
        host, port, streams, f", {workers} workers" if workers > 1 else "",
    )  # fmt: skip

    def serve() -> int:
        config = uvicorn.Config(
            app,
            log_config=None,  # ours, from setup_logging
            access_log=args.access_log,
            ws=DirectWebSocketProtocol,  # uvicorn's websockets protocol, plus direct writes of market data
            ws_per_message_deflate=args.ws_deflate,
            ws_max_size=settings.ws_max_frame_bytes,  # a larger client frame: 1009, refused before it is read whole
            server_header=False,
            lifespan="on",
        )
        sidecars: list[Sidecar] = [*publishers(settings, "api", reader(app), rate_unit="messages/s")]
        if metrics_dir is not None:
            sidecars = [*sidecars, MetricsSync(lambda: app.state.api.metrics)]
        server = Uvicorn(config, owns_signals=True, sidecars=sidecars)
        if reuse_port:
            own = bind(host, port, "API_HOST/API_PORT", reuse_port=True)
            sock.close()  # the parent's: it holds the port, and must not hold it after the parent is gone
            server.run(sockets=[own])
        else:
            server.run(sockets=[sock])
        return 0 if server.started else 1

    try:
        return serve() if workers == 1 else run_workers(workers, serve, on_exit=worker_ended)
    finally:
        sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
