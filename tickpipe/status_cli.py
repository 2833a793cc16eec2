"""``tickpipe status [--watch [SECONDS]]``: every instance of the pipeline, from the health documents in Redis.

One row per instance, lost ones included (their health document expired).
The exit status is 1 when any instance is lost or failing, 2 when Redis cannot
be read, else 0, so a script or a cron job can use it. In a terminal ``--watch``
redraws the table in place; elsewhere it prints one table per refresh.
Settings: REDIS_URL (unset: the embedded Redis that ``tickpipe up`` recorded in
DATA_DIR/ports.json), KAFKA_TOPIC_PREFIX, HEALTH_FORGET_S.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, Final, TextIO

import redis.asyncio

from tickpipe.errors import TickpipeError
from tickpipe.health import REDIS_ERRORS, read_instances, summarize, unhealthy
from tickpipe.settings import Settings, get_settings, redact_url

COLUMNS: Final = ("ROLE", "INSTANCE", "STATE", "RATE", "LAG", "SEEN", "VERSION", "LAST ERROR")
#: ANSI colours of states, used only when the output is a terminal.
COLOURS: Final = {"ready": "32", "starting": "33", "stopping": "33", "failing": "31", "lost": "31;1"}
ERROR_WIDTH: Final = 60


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickpipe status", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )
    p.add_argument("--json", action="store_true", help="print the instances as one JSON document instead")
    return p


def number(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.1f}" if isinstance(value, float) and not value.is_integer() else f"{int(value):,}"
    return f"{text} {unit}".rstrip()


def seen(doc: dict[str, Any]) -> str:
    silent = doc.get("silent_s")
    return "-" if silent is None else f"{silent:.0f}s ago" if silent >= 1 else "now"


def row(doc: dict[str, Any]) -> tuple[str, ...]:
    error = str(doc.get("last_error") or "")
    if len(error) > ERROR_WIDTH:
        error = error[: ERROR_WIDTH - 1] + "…"
    return (
        str(doc.get("role", "?")),
        str(doc.get("instance", "?")),
        str(doc.get("state", "?")),
        number(doc.get("rate"), str(doc.get("rate_unit") or "")),
        number(doc.get("lag")),
        seen(doc),
        str(doc.get("version", "?")),
        error,
    )


def table(instances: list[dict[str, Any]], colour: bool) -> str:
    """The instances as an aligned table, a blank line, and a one-line verdict."""
    rows = [COLUMNS, *(row(doc) for doc in instances)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for index, cells in enumerate(rows):
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        if colour and index > 0 and cells[2] in COLOURS:
            padded[2] = f"\033[{COLOURS[cells[2]]}m{padded[2]}\033[0m"
        lines.append("  ".join(padded).rstrip())
    if not instances:
        lines.append("(no instance has reported: is anything running against this Redis?)")
    return "\n".join(lines) + "\n\n" + verdict(instances) + "\n"


def verdict(instances: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for doc in instances:
        counts[str(doc.get("state"))] = counts.get(str(doc.get("state")), 0) + 1
    summary = summarize(instances)
    said = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"
    figures = f"events/s {number(summary['events_per_s'])}, consumer lag {number(summary['consumer_lag'])}"
    return f"{len(instances)} instance{'' if len(instances) == 1 else 's'}: {said}; {figures}"


def redis_url_of(settings: Settings) -> str:
    """REDIS_URL, or the embedded Redis of ``tickpipe up`` in DATA_DIR.

    Why the fallback: on one machine the user runs ``tickpipe up`` in one terminal and this in
    another, where no REDIS_URL is set; the port is kept in DATA_DIR/ports.json for such readers.
    """
    if settings.redis_url:
        return settings.redis_url
    from tickpipe.dev.services import PORTS_FILE, PortBook

    book = settings.data_dir / PORTS_FILE
    port = PortBook(book).read().get("redis")
    if port is None:
        raise TickpipeError(
            f"REDIS_URL is not set and {book.resolve()} names no embedded Redis: set REDIS_URL to the "
            "pipeline's Redis, or run this where `tickpipe up` runs (its DATA_DIR)"
        )
    return f"redis://127.0.0.1:{port}/0"


async def fetch(settings: Settings, url: str) -> list[dict[str, Any]]:
    client = redis.asyncio.Redis.from_url(url, socket_timeout=3.0, socket_connect_timeout=3.0)
    try:
        return await read_instances(client, settings.kafka_topic_prefix, settings.health_forget_s)
    finally:
        await client.aclose()


def show(instances: list[dict[str, Any]], as_json: bool, out: TextIO) -> None:
    if as_json:
        import orjson

        out.write(orjson.dumps(instances, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(table(instances, colour=out.isatty()))
    out.flush()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    url = redis_url_of(settings)
    out = sys.stdout
    while True:
        try:
            instances = asyncio.run(fetch(settings, url))
        except REDIS_ERRORS as exc:
            print(f"tickpipe status: REDIS_URL={redact_url(url)} cannot be read: {exc}", file=sys.stderr)
            return 2
        if args.watch is not None and out.isatty():
            out.write("\033[H\033[2J")  # home, clear: redraw in place
        show(instances, args.json, out)
        if args.watch is None:
            return 1 if unhealthy(instances) else 0
        if not out.isatty():
            out.write("\n")
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 1 if unhealthy(instances) else 0
