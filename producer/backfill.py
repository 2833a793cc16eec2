"""Filling a gap: REST pages to Kafka records marked as backfilled, resumable page by page.

A REST item becomes exactly the event the stream would have carried (same
fields, same nanoseconds, same float64), so the consumers key it as they key
the streamed one: trades by (symbol, time, exchange, id), minute bars by
(symbol, 1Min, minute), quotes (and option trades) by a hash of their
content, news stories by (id, ``created_at``), the newest ``updated_at``
kept. The Kafka value is the usual msgpack map plus ``_b: 1`` (an item of
another feed becomes that feed's event, of its registry, in its topic: a
crypto trade in ``tickpipe.crypto.trades``, an option trade in
``tickpipe.options.trades``, a story in ``tickpipe.news``, keyed by its id as
the streamed one); readers that do not know ``_b`` ignore it (msgspec skips
unknown fields), so the wire format stays compatible.

Backfilled records go to Kafka only, never to the live Redis channels: a
subscriber of ``trades:AAPL`` wants what happens now, not ten seconds of the
past replayed at once.

Where records go is a seam (:class:`RecordSink`): the producer's durable sink
(behind which the spool waits), or ``tickpipe backfill``'s own Kafka producer.
After each page, :attr:`Gap.progress` names the next page's token, so an
interrupted fill resumes at the page it stopped at.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import msgspec

from producer.gaps import DONE, Gap, chunks
from producer.history_client import HistoryClient, Page, history_families, kinds
from producer.spool import Record
from producer.transcode import feed_transcoder
from tickpipe.codecs import decode_message, encode_kafka, parse_rfc3339_ns, time_fields
from tickpipe.errors import DecodeError
from tickpipe.feeds import STOCK, Feed

log = logging.getLogger(__name__)

#: The msgpack map entry that marks a backfilled record: ``"_b": 1``.
BACKFILLED_ENTRY: Final = b"\xa2_b\x01"


class RecordSink(Protocol):
    """Takes a page's records; returns once it may be given the next page (backpressure)."""

    async def put(self, records: list[Record]) -> None: ...


def mark_backfilled(kafka_value: bytes) -> bytes:
    """An encoded event with ``_b: 1`` added to its map (a fixmap: events have at most 14 fields)."""
    head = kafka_value[0]
    if 0x80 <= head < 0x8F:
        return bytes((head + 1,)) + kafka_value[1:] + BACKFILLED_ENTRY
    data = msgspec.msgpack.decode(kafka_value)
    data["_b"] = 1
    return msgspec.msgpack.encode(data)


def is_backfilled(kafka_value: bytes) -> bool:
    """Whether a Kafka record value was marked by :func:`mark_backfilled`."""
    if kafka_value.endswith(BACKFILLED_ENTRY):
        return True
    data = msgspec.msgpack.decode(kafka_value)
    return isinstance(data, dict) and data.get("_b") == 1


def to_records(
    resource: str,
    items: Mapping[str, list[dict[str, Any]]],
    topics: Mapping[str, str],
    received_at: int,
    feed: Feed = STOCK,
) -> tuple[list[Record], int]:
    """A page's items as Kafka records, and how many items could not be read; each item the event of
    ``feed``'s registry its resource stands for (a crypto trade: ``CryptoTrade``, an option trade:
    ``OptionTrade``, a story: ``NewsStory``), keyed as the stream's records of its family (``Family.key``:
    the symbol, or a story's id)."""
    code = kinds(feed)[resource]
    family = history_families(feed)[resource]
    types = feed_transcoder(feed).types
    topic = topics[code]
    records: list[Record] = []
    bad = 0
    for symbol, rows in items.items():
        key = symbol.encode()
        named = {"T": code, "S": symbol} if family.by_symbol else {"T": code}
        for row in rows:
            try:
                event = decode_message({**row, **named}, received_at, types)
            except DecodeError as exc:
                bad += 1
                log.warning("backfill: %s item of %s not readable (%s): %r", resource, symbol or "-", exc, row)
                continue
            if not family.by_symbol:
                key = str(getattr(event, family.key)).encode()
            records.append((topic, key, mark_backfilled(encode_kafka(event))))
    return records, bad


class Backfiller:
    """Fills gaps through a :class:`HistoryClient` into a :class:`RecordSink`."""

    def __init__(
        self,
        client: HistoryClient,
        sink: RecordSink,
        topics: Mapping[str, str],
        resources: Sequence[str],
        *,
        bar_lead_ns: int = 0,
        feed: Feed = STOCK,
    ) -> None:
        self.client = client
        self.feed = feed
        self.sink = sink
        self.topics = dict(topics)
        self.resources = tuple(resources)
        #: Bars start this much earlier than the gap: a bar is stamped with its minute's start, so the
        #: bar of the minute the stream broke in (sent a minute later) is stamped before the gap.
        self.bar_lead_ns = bar_lead_ns
        types = feed_transcoder(feed).types
        #: Resource -> the item field holding its time (``t``; a story's ``created_at``), for ``reached``.
        self.time_field = {resource: time_fields(types[code])[0] for resource, code in kinds(feed).items()}
        self.events: Counter[str] = Counter()  # backfilled events by resource
        self.unreadable = 0
        self.last_error: str | None = None

    async def fill(self, gap: Gap, on_page: Callable[[Gap, str, Page], None] | None = None) -> None:
        """Fetch every resource of the gap not yet done, from where its progress says."""
        groups = chunks(gap.symbols)
        for resource in self.resources:
            for index, symbols in enumerate(groups):
                slot = f"{resource}/{index}"
                state = gap.progress.get(slot)
                if state == DONE or not symbols:
                    gap.progress[slot] = DONE
                    continue
                start, end = gap.start_ns, gap.end_ns
                if resource == "bars":
                    start -= self.bar_lead_ns
                    end = gap.resume_ns - 60 * 1_000_000_000 if gap.resume_ns else end
                if end < start:
                    gap.progress[slot] = DONE
                    continue
                pages = self.client.pages(resource, symbols, start, end, token=state)
                async for page in pages:
                    records, bad = to_records(resource, page.items, self.topics, time.time_ns(), self.feed)
                    await self.sink.put(records)
                    self.unreadable += bad
                    self.events[resource] += len(records)
                    stamp = self.time_field[resource]
                    newest = max((rows[-1][stamp] for rows in page.items.values() if rows), default=None)
                    if newest is not None:
                        gap.reached[resource] = max(gap.reached.get(resource, 0), parse_rfc3339_ns(newest))
                    gap.progress[slot] = page.next_token or DONE
                    if on_page is not None:
                        on_page(gap, resource, page)
