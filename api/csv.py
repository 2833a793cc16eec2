"""History as streamed CSV: PostgreSQL's own ``COPY ... TO STDOUT`` piped to the HTTP body.

The server never holds more than a few chunks: the COPY output goes through a
small bounded queue, so a client reading slowly makes asyncpg stop reading,
and PostgreSQL stop sending, instead of the API buffering a day of quotes.
With a ``limit``, the next-page token is computed first, in the same
repeatable-read snapshot as the COPY, and sent as the ``Next-Page-Token``
header. Errors before the first byte become a proper status; after it, the
response is cut short (no final chunk), which every HTTP client reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import asyncpg
from starlette.responses import StreamingResponse

from api.pages import PageRequest, fetch_page

#: Chunks of COPY output buffered between PostgreSQL and the client.
QUEUE_CHUNKS: Final = 16


async def csv_response(pool: asyncpg.Pool, request: PageRequest) -> StreamingResponse:
    """A streamed ``text/csv`` response with a header row; raises if the database fails before streaming."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
    token: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    failure: list[BaseException] = []

    async def sink(data: bytes | bytearray) -> None:
        await queue.put(bytes(data))  # asyncpg hands over a reused bytearray

    async def export() -> None:
        try:
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                next_token = None
                if request.limit is not None:
                    next_token = (await fetch_page(conn, request)).next_token
                token.set_result(next_token)
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
        await _finish(task)
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            if failure:
                raise failure[0]
        finally:
            await _finish(task)

    headers = {"Content-Disposition": f'attachment; filename="{request.symbol}-{request.scope}.csv"'.replace(":", "-")}
    if next_token is not None:
        headers["Next-Page-Token"] = next_token
    return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers=headers)


async def _finish(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
