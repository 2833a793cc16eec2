"""``tickpipe consume <table>|all [--burst]``: write Kafka topics into PostgreSQL (all: the tables of ALPACA_FEEDS).

Runs until SIGTERM or SIGINT, then finishes (or, if PostgreSQL is down,
abandons) the batch in flight, leaves the group and exits 0. With ``--burst``
it stops by itself once every partition of its topics is drained by its group
(not only those assigned to it: a member killed a moment ago may still hold
some) and prints one JSON line of what it did; if partitions held by others
stay behind for ``--burst-wait`` seconds it exits 1 naming them.
Settings come from the environment (``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL``, ``BATCH_SIZE``, ``BATCH_MAX_WAIT_MS``, ``CONSUMER_ADMIN_*``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import asdict

import orjson

from consumers.service import TABLES, ConsumerService, tables_for
from tickpipe.health import Read, Reading, add, publishers, total
from tickpipe.logs import setup_logging
from tickpipe.service import run
from tickpipe.settings import Settings, get_settings

log = logging.getLogger("tickpipe.consume")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickpipe consume", description=__doc__.split("\n\n")[0])
    p.add_argument("table", choices=[*TABLES, "all"], help="which table's topic to consume")
    p.add_argument("--burst", action="store_true", help="stop when caught up (tests, backfills, benchmarks)")
    p.add_argument(
        "--burst-wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="with --burst: once its own partitions are done, how long to wait for the group to drain the "
        "others (a dead member's partitions move when its session expires) before exiting 1 (default 120)",
    )
    p.add_argument("--group", default=None,
                   help="consumer group (default <KAFKA_TOPIC_PREFIX>writer.<table>; with 'all', .<table> is "
                        "appended to the name given)")  # fmt: skip
    p.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="port of /healthz /readyz /metrics (default CONSUMER_ADMIN_PORT; 0 = any free port)",
    )
    p.add_argument("--no-admin", action="store_true", help="serve no admin endpoints")
    return p


def reader(service: ConsumerService) -> Read:
    """This process's health in the shared terms: rows written (the rate), lag summed, the last Kafka error."""

    async def read() -> Reading:
        ready, _ = await service.ready()
        doc = await service.health()
        workers = doc["workers"].values()
        errors = [f"{table}: {w['kafka_error']}" for table, w in doc["workers"].items() if w.get("kafka_error")]
        errors += [f"{table}: PostgreSQL down" for table, w in doc["workers"].items() if not w.get("database_up")]
        rows_written = add(*(w["stats"].get("rows_written") for w in workers))
        return Reading(
            ready=ready,
            count=rows_written,
            lag=add(*(total(w["lag"]) for w in workers if w.get("lag") is not None)),
            last_error="; ".join(errors) or None,
            figures={
                "tables": list(doc["workers"]),
                "rows_written": rows_written,
                "dead_letters": add(*(w["stats"].get("dead_letters") for w in workers)),
            },
        )

    return read


async def serve(settings: Settings, args: argparse.Namespace) -> int:
    service = ConsumerService(
        settings, tables_for(args.table, settings.feeds), burst=args.burst, group=args.group, admin=not args.no_admin,
        admin_port=args.admin_port, worker_options={"burst_wait_s": args.burst_wait},
    )  # fmt: skip
    if service.admin is not None:
        log.info("admin endpoints at %s", service.admin.url)
    sidecars = publishers(settings, "consumers", reader(service), rate_unit="rows/s")
    # Each record makes a few short-lived objects: collecting the young less often saves about a
    # quarter of the CPU per record, measured.
    stats = await run(service.run(), service.stop, sidecars=sidecars, young_threshold=10_000)
    if args.burst:
        print(orjson.dumps({table: asdict(s) for table, s in stats.items()}).decode(), flush=True)
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    return asyncio.run(serve(settings, args))
