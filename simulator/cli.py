"""``tickpipe simulate``: serve the simulated Alpaca stream until SIGINT or SIGTERM.

The encoding needs no flag: like Alpaca, the server speaks msgpack to clients
that send ``Content-Type: application/msgpack`` (alpaca-py does) and JSON to
the rest. The first line on stdout is ``listening on ws://HOST:PORT/v2/FEED``,
so a script that passes ``--port 0`` can read the port it got; the same port
serves Alpaca's historical REST API at ``http://HOST:PORT`` (the line names it too).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from simulator.config import STREAMS, Faults, SimulatorConfig
from simulator.server import Simulator
from simulator.symbols import DEFAULT_SYMBOLS, synthetic_symbols
from tickpipe.errors import TickpipeError
from tickpipe.health import Publisher, Read, Reading, publishers
from tickpipe.service import bind_error, run
from tickpipe.settings import get_settings


def parse_symbols(value: str) -> tuple[str, ...]:
    """``25`` -> 25 synthetic tickers; ``AAPL,MSFT`` -> those two."""
    if value.isdigit():
        return synthetic_symbols(int(value))
    symbols = tuple(s.strip() for s in value.split(",") if s.strip())
    if not symbols:
        raise argparse.ArgumentTypeError(f"expected a count or comma-separated tickers, got {value!r}")
    return symbols


def _feeds(value: str) -> tuple[str, ...]:
    feeds = tuple(f.strip() for f in value.split(",") if f.strip())
    unknown = [f for f in feeds if f not in STREAMS]
    if unknown:
        raise argparse.ArgumentTypeError(f"expected feeds among {tuple(STREAMS)}, got {unknown}")
    return feeds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tickpipe simulate",
        description="Serve a simulated Alpaca market-data stream (stream v2, JSON or msgpack) and its "
        "historical REST API on one port, until SIGINT or SIGTERM. The first line on stdout names "
        "the URLs, so with --port 0 a script can read the port it got.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    p.add_argument(
        "--symbols",
        type=parse_symbols,
        default=DEFAULT_SYMBOLS,
        help="N synthetic tickers, or a comma-separated list (default: ~50 US names)",
    )
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate", type=float, default=1000.0, help="quotes and trades per second, like a live market (default 1000)"
    )
    pace.add_argument("--burst", action="store_true", help="as fast as the client reads")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same market (default 0)")
    p.add_argument(
        "--news-rate", type=float, default=2.0,
        help="news stories (and updates of them) a second on /v1beta1/news, over the stock symbols (default 2)",
    )  # fmt: skip
    p.add_argument(
        "--order-rate", type=float, default=5.0,
        help="order updates a second on the trading stream /stream (new, fills, cancels, replacements; default 5)",
    )  # fmt: skip
    p.add_argument("--count", type=int, default=None, metavar="N", help="produce N market events in all, then go quiet")
    p.add_argument("--batch-size", type=int, default=1000, help="most data messages per frame")
    p.add_argument("--key", default=None, help="API key to require (default: accept any)")
    p.add_argument("--secret", default=None, help="API secret to require with --key (default: accept any)")
    p.add_argument("--feed", choices=tuple(STREAMS), default="iex", help="feed of the printed URL")
    p.add_argument(
        "--entitled-feeds",
        type=_feeds,
        default=tuple(STREAMS),
        help="feeds the key may use; others answer 409 (default: every feed served)",
    )
    p.add_argument(
        "--connection-limit",
        type=int,
        default=None,
        help="authenticated connections allowed per feed at once; more answer 406 (default: no limit)",
    )
    p.add_argument(
        "--symbol-limit",
        type=int,
        default=None,
        help="most distinct symbols one connection may subscribe; more answer 405 (default: no limit)",
    )
    p.add_argument(
        "--auth-timeout",
        type=float,
        default=10.0,
        help="seconds a connection may wait before authenticating; then 404 and closed (default 10)",
    )
    p.add_argument(
        "--send-buffer", type=int, default=100_000, help="paced: messages queued for a client before 407 slow client"
    )
    p.add_argument(
        "--history-seconds",
        type=int,
        default=3600,
        help="paced: market seconds of history the REST API serves (default 3600)",
    )
    p.add_argument(
        "--history-max-events",
        type=int,
        default=8_000_000,
        help="paced: most quotes and trades kept per feed for the REST API (about 40 bytes each; default 8,000,000)",
    )
    p.add_argument(
        "--rest-rate-limit", type=int, default=200, help="REST requests per key and minute before 429 (default 200)"
    )
    p.add_argument("--deflate", action="store_true", help="offer permessage-deflate, as Alpaca does")
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR (default WARNING)")
    f = p.add_argument_group("faults")
    f.add_argument("--close-after", type=int, metavar="N", help="close after N data messages")
    f.add_argument("--refuse", type=int, default=0, metavar="N", help="answer N auth attempts with 406 (-1: all)")
    f.add_argument("--never-auth", action="store_true", help="never answer auth (404 at timeout)")
    f.add_argument("--malformed-after", type=int, metavar="N", help="one bad frame after N messages")
    f.add_argument("--silent-after", type=int, metavar="N", help="no data after N messages")
    f.add_argument(
        "--read-delay", type=float, default=0.0, metavar="S", help="wait S seconds before handling each client message"
    )
    return p


def config_from(args: argparse.Namespace) -> SimulatorConfig:
    """The SimulatorConfig these parsed arguments describe (ValueError if inconsistent)."""
    faults = Faults(
        close_after=args.close_after,
        refuse_connections=args.refuse,
        never_authenticate=args.never_auth,
        malformed_after=args.malformed_after,
        silent_after=args.silent_after,
        read_delay=args.read_delay,
    )
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        symbols=args.symbols,
        rate=None if args.burst else args.rate,
        seed=args.seed,
        news_rate=args.news_rate,
        order_rate=args.order_rate,
        key=args.key,
        secret=args.secret,
        feed=args.feed,
        entitled_feeds=args.entitled_feeds,
        batch_size=args.batch_size,
        max_events=args.count,
        auth_timeout=args.auth_timeout,
        connection_limit=args.connection_limit,
        symbol_limit=args.symbol_limit,
        send_buffer=args.send_buffer,
        history_seconds=args.history_seconds,
        history_max_events=args.history_max_events,
        rest_rate_limit=args.rest_rate_limit,
        compression=args.deflate,
        faults=faults,
    )


def reader(sim: Simulator) -> Read:
    """The simulator's health in the shared terms: serving, market events produced, clients connected."""

    async def read() -> Reading:
        return Reading(ready=True, count=sim.produced, figures={"clients": len(sim.sessions)})

    return read


def health_of(sim: Simulator) -> list[Publisher]:
    """A health publisher when REDIS_URL is set (``tickpipe up``, compose); standalone, none is needed."""
    try:
        settings = get_settings()
    except TickpipeError:  # the simulator itself needs no settings: a bad unrelated one is not its concern
        return []
    return publishers(settings, "simulator", reader(sim))


async def serve(config: SimulatorConfig) -> None:
    """Run a simulator until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    sim = Simulator(config)
    try:
        await sim.start()
    except OSError as exc:
        raise bind_error("SIMULATOR_PORT (--host/--port)", config.host, config.port, exc) from None

    async def announce_and_wait() -> None:
        # Printed once the stop signals are ours: a script that stops us on reading this line gets exit 0.
        mode = "burst" if config.rate is None else f"{config.rate:g} events/s"
        print(
            f"listening on {sim.url} ({mode}, {len(config.symbols)} symbols, "
            f"seed {config.seed}, feeds {'/'.join(STREAMS)}); REST {sim.rest_url}",
            flush=True,
        )
        await stop.wait()

    try:
        await run(announce_and_wait(), stop.set, sidecars=health_of(sim))
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tickpipe simulate``; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        asyncio.run(serve(config))
    except TickpipeError as exc:
        print(f"tickpipe simulate: {exc}", file=sys.stderr)
        return 1
    return 0
