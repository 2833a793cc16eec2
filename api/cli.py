"""``tickpipe api``: serve history over HTTP and the live stream over WebSocket (uvicorn).

Runs until SIGTERM or SIGINT, then stops accepting, closes WebSocket clients
(1012, "service restart", so Alpaca clients reconnect elsewhere), finishes the
requests in flight and exits 0. Settings come from the environment
(``DATABASE_URL`` and ``REDIS_URL`` required; ``API_HOST``, ``API_PORT``,
``TICKPIPE_API_KEYS``, ``WS_CLIENT_QUEUE_SIZE``, ``WS_MAX_SYMBOLS`` ...).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
from types import FrameType

import uvicorn

from api.main import create_app
from api.stream.direct import DirectWebSocketProtocol
from tickpipe.errors import SettingsError
from tickpipe.logs import setup_logging
from tickpipe.settings import get_settings

log = logging.getLogger("tickpipe.api")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickpipe api", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--host", default=None, help="address to listen on (default API_HOST)")
    p.add_argument("--port", type=int, default=None, help="port to listen on (default API_PORT; 0 = any free port)")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument(
        "--ws-deflate",
        action="store_true",
        help="offer permessage-deflate to WebSocket clients (less bandwidth, much more CPU per frame)",
    )
    return p


class Server(uvicorn.Server):
    """uvicorn's server, but a SIGTERM/SIGINT shutdown ends in exit code 0.

    uvicorn re-raises the captured signal once shut down (the process then
    dies of it); tickpipe services report a graceful stop as 0, as the
    process managers of ``tickpipe up`` and compose expect.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for connections
        self.should_exit = True


def listen(host: str, port: int) -> socket.socket:
    """Bind before starting, so a taken port is a clear error naming the setting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SettingsError(f"API_HOST/API_PORT: cannot listen on {host}:{port} ({exc}); choose another") from None
    return sock


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    host = args.host or settings.api_host
    sock = listen(host, settings.api_port if args.port is None else args.port)
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
    server = Server(config)
    log.info("tickpipe api on http://%s:%d (docs at /docs, stream at /v2/stream)", host, sock.getsockname()[1])
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1
