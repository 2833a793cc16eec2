"""One batch stored for good: its rows until PostgreSQL takes them, its dead letters until the broker has them.

Only then may the worker commit the batch's offsets. Retries use capped
exponential backoff with jitter and go on for as long as it takes: an outage
ends when the service comes back, not when the consumer gives up. Rows
PostgreSQL refused become dead letters too, with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from aiokafka.errors import KafkaError

from consumers.batch import Batch, letter_for
from consumers.dlq import DeadLetterSink
from consumers.writer import WriteError, Writer, WriteResult

log = logging.getLogger(__name__)


def backoff(attempt: int, cap_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): 0.1 s doubling up to ``cap_s``, jittered."""
    return min(cap_s, 0.05 * 2 ** min(attempt, 16)) * random.uniform(0.5, 1.0)


async def store_batch(
    batch: Batch,
    writer: Writer,
    sink: DeadLetterSink,
    *,
    retry_max_s: float,
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
            await asyncio.sleep(backoff(attempt, retry_max_s))
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
            await asyncio.sleep(backoff(attempt, retry_max_s))
