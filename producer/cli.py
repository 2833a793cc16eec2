"""``tickpipe producer``: hold the one upstream connection and fan it out to Redis and Kafka.

One process per feed: ``--feed stocks`` (the default), ``--feed crypto`` or ``--feed options``;
``tickpipe up`` runs one for each of ALPACA_FEEDS.

Configuration comes from the environment (see ``.env.example``); the options
here only override a few of it. SIGTERM or SIGINT stops reading, flushes both
sinks (spooling to disk what Kafka did not take) and exits 0 within
``PRODUCER_SHUTDOWN_TIMEOUT_S``. A refused login (402) exits 1 at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from producer.service import ProducerService
from tickpipe.errors import ServiceStartError, TickpipeError, UpstreamAuthError
from tickpipe.feeds import STOCK, Feed
from tickpipe.health import Read, Reading, instance_id, publishers, total
from tickpipe.logs import setup_logging
from tickpipe.service import run
from tickpipe.settings import FEED_NAMES, FEED_SETTINGS, Settings, get_settings, load_settings

log = logging.getLogger("producer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickpipe producer", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--feed",
        default="stocks",
        metavar="FEED",
        help="the feed it carries: stocks (default), crypto, options or news",
    )
    parser.add_argument(
        "--upstream-url",
        help="stream URL, overriding ALPACA_STREAM_URL / ALPACA_FEED (with --feed crypto: ALPACA_CRYPTO_STREAM_URL,"
        " options: ALPACA_OPTIONS_STREAM_URL, news: ALPACA_NEWS_STREAM_URL)",
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        help="port of /healthz /readyz /health /metrics /symbols (PRODUCER_ADMIN_PORT,"
        " CRYPTO_/OPTIONS_/NEWS_PRODUCER_...)",
    )
    parser.add_argument("--spool-dir", type=Path, help="disk spool folder (SPOOL_DIR)")
    parser.add_argument(
        "--max-events", type=int, metavar="N", help="drain mode: stop after N events, flush, exit (benchmarks, tests)"
    )
    return parser


def feed_of(name: str) -> Feed | None:
    """``--feed``'s feed (``stocks``, ``stock``, ``crypto``, ``options``), None for another name."""
    return FEED_NAMES.get(name.strip().lower())


def settings_from(args: argparse.Namespace, feed: Feed = STOCK) -> Settings:
    """The process settings, with the command line's overrides validated like the environment."""
    own = FEED_SETTINGS[feed.name]
    changes = {
        own.stream_url: args.upstream_url,
        own.admin_port: args.admin_port,
        "spool_dir": args.spool_dir,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    return load_settings(**changes) if changes else get_settings()


def dig(doc: Any, *path: str) -> Any:
    """``doc[path[0]][path[1]]...``, None where a step is missing (the /health document may grow)."""
    for name in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(name)
    return doc


def reader(service: ProducerService) -> Read:
    """The producer's health in the shared terms: events read (the rate), the sinks' errors, drops, spool."""

    async def read() -> Reading:
        ready, _ = await service.ready()
        doc = await service.health()
        errors = [
            f"{part}: {error}"
            for part, error in (
                ("upstream", dig(doc, "upstream", "last_error")),
                (
                    "kafka",
                    dig(doc, "kafka", "task_error")
                    or dig(doc, "kafka", "fatal_error")
                    or dig(doc, "kafka", "last_error"),
                ),
                ("spool", dig(doc, "spool", "error")),
                ("redis", dig(doc, "redis", "last_error")),
            )
            if error
        ]
        return Reading(
            ready=ready,
            count=dig(doc, "upstream", "events"),
            last_error="; ".join(errors) or None,
            figures={
                "upstream": dig(doc, "upstream", "state"),
                "drops": total(dig(doc, "redis", "dropped")) + total(dig(doc, "kafka", "dropped")),
                "spool_depth": dig(doc, "spool", "depth"),
                "dead_letters": dig(doc, "dead_letters"),
            },
        )

    return read


async def serve(settings: Settings, max_events: int | None = None, feed: Feed = STOCK) -> int:
    """Run the producer of ``feed`` until SIGTERM/SIGINT (or ``max_events``); the process exit status."""
    try:
        service = ProducerService(settings, feed=feed)
    except TickpipeError as exc:
        log.error("producer: %s", exc)
        return 1
    # A non-stock feed's producer is its own health instance, named by its feed (crypto-<host>-<pid>).
    instance = None if feed is STOCK else f"{feed.name}-{instance_id()}"
    sidecars = publishers(settings, "producer", reader(service), instance=instance)
    try:
        await run(service.run(max_events), service.stop, sidecars=sidecars)
    except (UpstreamAuthError, ServiceStartError) as exc:
        log.error("producer: %s", exc)
        return 1
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    feed = feed_of(args.feed)
    if feed is None:
        print(f"tickpipe producer: --feed: expected stocks, crypto or options, got {args.feed!r}", file=sys.stderr)
        return 2
    try:
        settings = settings_from(args, feed)
    except TickpipeError as exc:
        print(f"tickpipe producer: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    if args.max_events is not None and args.max_events < 1:
        log.error("--max-events: expected a positive count, got %d", args.max_events)
        return 2
    return asyncio.run(serve(settings, args.max_events, feed))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
