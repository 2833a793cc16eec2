"""One batch stored for good: its rows until PostgreSQL takes them, its dead letters until the broker has them.

Only then may the worker commit the batch's offsets. Retries wait on the
project's one retry curve, :class:`tickpipe.backoff.EqualJitterBackoff`
(0.1 s doubling up to ``CONSUMER_RETRY_MAX_S``, equal jitter), and go on for as
long as it takes: an outage ends when the service comes back, not when the
consumer gives up. Rows PostgreSQL refused become dead letters too, with its reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from aiokafka.errors import KafkaError

from consumers.batch import Batch, letter_for
from consumers.dlq import DeadLetterSink
from consumers.writer import WriteError, Writer, WriteResult
from tickpipe.backoff import EqualJitterBackoff

log = logging.getLogger(__name__)

#: The first retry's longest wait; each failure in a row doubles it, up to ``CONSUMER_RETRY_MAX_S``.
RETRY_BASE_S: Final = 0.1


def retry_backoff(retry_max_s: float) -> EqualJitterBackoff:
    """The curve of a batch's retries: :data:`RETRY_BASE_S` doubling up to ``retry_max_s`` (the cap)."""
    return EqualJitterBackoff.up_to(retry_max_s, base=RETRY_BASE_S)


async def store_batch(
    batch: Batch,
    writer: Writer,
    sink: DeadLetterSink,
    *,
    backoff: EqualJitterBackoff,
    on_write_failure: Callable[[int, WriteError], None],
) -> WriteResult:
    """Write the rows, then send every dead letter (decode, range, refused); retry each step until done."""
    attempt = 0
    while True:
        try:
            result = await writer.write(batch)
            break
        except WriteError as exc:
            attempt += 1
            on_write_failure(attempt, exc)
            await asyncio.sleep(backoff.compute(attempt))
    letters = list(batch.dead)
    letters += [letter_for(batch.sources[index], "$", reason) for index, reason in result.refused]
    batch.dead_kinds["refused"] += len(result.refused)
    attempt = 0
    while True:
        try:
            await sink.send(letters)
            return result
        except KafkaError as exc:
            attempt += 1
            if attempt == 1 or attempt % 20 == 0:
                log.warning("%s: dead letters not sent (attempt %d), retrying: %s", batch.table, attempt, exc)
            await asyncio.sleep(backoff.compute(attempt))
