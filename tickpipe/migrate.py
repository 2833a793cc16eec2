"""``tickpipe migrate``: bring the schema to head (or a revision), then create partitions ahead and apply retention."""

from __future__ import annotations

import argparse
import asyncio
import logging

import asyncpg

from tickpipe import db
from tickpipe.errors import SettingsError
from tickpipe.logs import setup_logging
from tickpipe.settings import get_settings

log = logging.getLogger("tickpipe.migrate")

#: What --help says (plain text: argparse shows it as written).
DESCRIPTION = (
    "Bring the PostgreSQL schema of DATABASE_URL to the latest revision (or --revision): tables, the view "
    "trades_corrected, a description on every table and column (\\d+ in psql) and the read-only role "
    "tickpipe_reader; then create the daily partitions ahead and drop those past retention. "
    "Give an analyst's login role read access with: GRANT tickpipe_reader TO <role>;"
)


async def _maintain(url: str, ahead_days: int, retention_days: int) -> None:
    with db.connection_errors(url):
        conn = await asyncpg.connect(db.asyncpg_dsn(url))
    try:
        await db.maintain_partitions(conn, ahead_days, retention_days)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tickpipe migrate", description=DESCRIPTION)
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    parser.add_argument("--downgrade", action="store_true", help="downgrade to --revision (default: base)")
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    if not settings.database_url:
        raise SettingsError("DATABASE_URL: expected a postgresql:// URL for the database to migrate")
    if args.downgrade:
        target = "base" if args.revision == "head" else args.revision
        db.downgrade(settings.database_url, target)
        log.info("schema downgraded to %s", target)
        return 0
    db.upgrade(settings.database_url, args.revision)
    asyncio.run(_maintain(settings.database_url, settings.partitions_ahead_days, settings.retention_days))
    log.info(
        "schema at %s; partitions %d days ahead, retention %d days",
        args.revision,
        settings.partitions_ahead_days,
        settings.retention_days,
    )
    return 0
