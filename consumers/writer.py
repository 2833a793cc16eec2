"""One batch into PostgreSQL in one transaction: COPY into a staging table, then one upsert.

The staging table is a ``TEMP`` table (no WAL, private to the connection,
emptied by ``ON COMMIT DELETE ROWS``), so the batch is either wholly in the
table or not at all. Quotes and trades first try a plain ``INSERT ... SELECT``
(no speculative insertion per row: PostgreSQL does a third less work); only a
batch holding a key already stored, which means a redelivery, fails it and is
written again with ``ON CONFLICT DO NOTHING``. Bars always upsert.

Rows PostgreSQL refuses (class 22 data errors, class 23 constraint violations)
are found by bisecting the batch, each half in its own transaction, and handed
back as refused. Everything else that goes wrong (connection lost, server
restarting, timeouts) raises :class:`WriteError` after dropping the
connection, and the caller retries the whole batch later: the upsert makes a
repeated write a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg

from consumers.batch import Batch
from consumers.tables import spec
from tickpipe import db
from tickpipe.errors import TickpipeError

log = logging.getLogger(__name__)

#: What a single row can cause: bad data (22), a constraint (23), a key twice in one upsert (21);
#: and asyncpg's own encoding errors, raised before anything reaches the server.
REFUSED = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.CardinalityViolationError,
    OverflowError,
    TypeError,
    ValueError,
)


class WriteError(TickpipeError):
    """PostgreSQL could not take the batch now (unreachable, restarting, timed out); retry it later."""


@dataclass
class WriteResult:
    #: Rows inserted or updated (a redelivered row counts 0).
    inserted: int = 0
    #: (row index in the batch, reason) of each row PostgreSQL refused.
    refused: list[tuple[int, str]] = field(default_factory=list)


def describe(exc: BaseException) -> str:
    """An error as a dead letter's reason: the SQLSTATE when there is one, and the message."""
    state = getattr(exc, "sqlstate", None)
    return f"refused by PostgreSQL ({state}): {exc}" if state else f"refused by PostgreSQL: {type(exc).__name__}: {exc}"


class Writer:
    """Writes batches of one table over one connection, reconnecting when needed."""

    def __init__(
        self, database_url: str, table: str, *, command_timeout: float = 60.0, connect_timeout: float = 10.0
    ) -> None:
        self.dsn = db.asyncpg_dsn(database_url)
        self.spec = spec(table)
        self.table = table
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self._conn: asyncpg.Connection | None = None
        self._columns = self.spec.stage_columns
        self._upsert_sql = self.spec.insert_sql()
        self._plain_sql = self.spec.insert_sql(on_conflict=False) if self.spec.optimistic else None
        self._days: set[date] = set()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
            server_settings={"application_name": f"tickpipe-consumer-{self.table}"},
        )
        try:
            await conn.execute(self.spec.create_stage_sql())
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def ping(self) -> None:
        """Raise WriteError unless the database answers now."""
        await self._guard(self._ping())

    async def _ping(self) -> None:
        conn = await self._connection()
        await conn.fetchval("SELECT 1")

    async def write(self, batch: Batch) -> WriteResult:
        """Store the batch's rows; refused rows come back by index, anything else raises WriteError."""
        return await self._guard(self._write(batch))

    async def _guard(self, work: Any) -> Any:
        try:
            return await work
        except Exception as exc:  # refused rows were handled inside; whatever is left is not a row's fault
            self._drop()
            raise WriteError(f"PostgreSQL did not take the write: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._drop()  # cancelled mid-statement: the connection's state is unknown
            raise

    async def _write(self, batch: Batch) -> WriteResult:
        if not batch.rows:
            return WriteResult()
        conn = await self._connection()
        days = batch.days
        await self._ensure_days(conn, days)
        try:
            return WriteResult(await self._insert(conn, batch.rows))
        except asyncpg.CheckViolationError as exc:
            if "no partition" not in str(exc):
                return await self._bisect(conn, batch.rows)
            log.warning("%s: a partition went missing (%s); creating it again", self.table, exc)
            self._days.clear()
            await self._ensure_days(conn, days)
            try:
                return WriteResult(await self._insert(conn, batch.rows))
            except REFUSED:
                return await self._bisect(conn, batch.rows)
        except REFUSED:
            return await self._bisect(conn, batch.rows)

    async def _ensure_days(self, conn: asyncpg.Connection, days: Sequence[date]) -> None:
        """Create the daily partitions of days not seen yet (outside the batch's transaction)."""
        missing = [day for day in days if day not in self._days]
        if missing:
            created = await db.ensure_partitions(conn, missing, [self.table])
            if created:
                log.info("%s: created %d daily partitions for %s", self.table, created, missing)
            self._days.update(missing)

    async def _insert(self, conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
        """Rows into the table in one transaction; a plain INSERT first where the spec allows it."""
        if self._plain_sql is not None:
            try:
                return await self._move(conn, rows, self._plain_sql)
            except asyncpg.UniqueViolationError:
                pass  # a key already stored (a redelivery) or twice in the batch: ON CONFLICT skips it
        return await self._move(conn, rows, self._upsert_sql)

    async def _move(self, conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]], sql: str) -> int:
        async with conn.transaction():
            await conn.copy_records_to_table(self.spec.stage_table, records=rows, columns=self._columns)
            status: str = await conn.execute(sql)
        return int(status.rsplit(" ", 1)[-1])

    async def _bisect(self, conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> WriteResult:
        """Write what PostgreSQL accepts, in halves, and name each row it refuses (in order)."""
        result = WriteResult()
        pending: list[tuple[int, int]] = [(0, len(rows))]
        while pending:
            start, stop = pending.pop(0)
            try:
                result.inserted += await self._insert(conn, rows[start:stop])
            except REFUSED as exc:
                if stop - start == 1:
                    result.refused.append((start, describe(exc)))
                else:
                    middle = (start + stop) // 2
                    pending[:0] = [(start, middle), (middle, stop)]
        if result.refused:
            log.warning("%s: PostgreSQL refused %d of %d rows", self.table, len(result.refused), len(rows))
        return result
