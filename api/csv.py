"""History as streamed CSV: PostgreSQL's own ``COPY ... TO STDOUT`` piped to the HTTP body.

The server never holds more than a few chunks: the COPY output goes through a
small bounded queue, so a client reading slowly makes asyncpg stop reading,
and PostgreSQL stop sending, instead of the API buffering a day of quotes.
The next-page token is computed first, in the same repeatable-read snapshot
as the COPY, and sent as the ``Next-Page-Token`` header: after ``limit``
rows, or without one after API_CSV_MAX_ROWS rows (an export is never
unbounded; the token continues it). Everything a client sent was checked
before (:mod:`api.tokens`), so what fails after the first byte is the
database itself: the response is then cut short (no final chunk), which
every HTTP client reports.

Each export holds a pooled connection for as long as its client reads, so at
most API_CSV_EXPORTS_MAX run at once per instance; one more is refused at
once with :class:`ExportsBusy` (503 and ``Retry-After``), and JSON pages keep
the rest of the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Final

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.pages import PageRequest, token_after
from api.pool import BoundedPool
from api.state import Slots

#: Chunks of COPY output buffered between PostgreSQL and the client.
QUEUE_CHUNKS: Final = 16
#: Seconds a client refused for too many exports is told to wait.
RETRY_AFTER_S: Final = 1


class ExportsBusy(Exception):
    """API_CSV_EXPORTS_MAX exports are streaming already (503, the client may retry)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"this API instance streams at most {limit} CSV exports at once; retry shortly")


class CsvResponse(StreamingResponse):
    """A streamed response that always runs ``on_close`` when it ends, even if its body was never read
    (a client gone before the first chunk), so the export's connection and slot are always given back."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]], **kwargs: object) -> None:
        super().__init__(body, **kwargs)  # type: ignore[arg-type]
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


async def csv_response(pool: BoundedPool, slots: Slots, max_rows: int, request: PageRequest) -> StreamingResponse:
    """A streamed ``text/csv`` response with a header row; raises if the database fails before streaming.

    Raises :class:`ExportsBusy` when every export slot is taken; at most
    ``max_rows`` rows when the request has no limit.
    """
    if not slots.take():
        raise ExportsBusy(slots.limit)

    async def give_back() -> None:  # once: if the token fails, else when the response ends
        slots.give()
        await _finish(task)

    if request.limit is None:
        request = replace(request, limit=max_rows)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
    token: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    failure: list[BaseException] = []

    async def sink(data: bytes | bytearray) -> None:
        await queue.put(bytes(data))  # asyncpg hands over a reused bytearray

    async def export() -> None:
        try:
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                # The key of the page's last row, found by PostgreSQL (OFFSET): no row before it comes back.
                token.set_result(await token_after(conn, request))
                sql, args = request.sql(csv=True)  # an empty range still gives the header row
                await conn.copy_from_query(sql, *args, output=sink, format="csv", header=True)
        except Exception as exc:
            if not token.done():
                token.set_exception(exc)
            failure.append(exc)
        await queue.put(None)

    task = asyncio.create_task(export(), name=f"csv-{request.table}-{request.symbol}")
    try:
        next_token = await token
    except BaseException:
        await give_back()
        raise

    async def body() -> AsyncIterator[bytes]:
        while (chunk := await queue.get()) is not None:
            yield chunk
        if failure:
            raise failure[0]

    # A file name has no ':' and no '/': AAPL-bars-5Min.csv, BTC-USD-crypto_trades.csv.
    name = f"{request.symbol}-{request.scope}".replace(":", "-").replace("/", "-")
    headers = {"Content-Disposition": f'attachment; filename="{name}.csv"'}
    if next_token is not None:
        headers["Next-Page-Token"] = next_token
    return CsvResponse(body(), give_back, media_type="text/csv; charset=utf-8", headers=headers)


async def _finish(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
