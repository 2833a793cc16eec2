"""Kafka records to staging rows and dead letters: the pure half of the consumer, no I/O.

One bad record never costs its neighbours: a value that does not decode, an
event whose values cannot be stored (a time outside 1970-2200, a negative or
non-finite price, an integer beyond ``bigint``) or an event of another table's
type on this topic becomes a :class:`~tickpipe.dlq.DeadLetter` with the reason,
its topic, partition and offset and the original bytes. Events of types that no
consumer stores (a family declared without a table; today every carried family
has one) are counted as skipped, not dead-lettered: they are valid, just not ours.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final, Protocol

from aiokafka.structs import TopicPartition

from consumers.tables import NOUNS, TYPES, spec
from tickpipe.dlq import DeadLetter
from tickpipe.errors import DecodeError

NS_PER_DAY: Final = 86_400 * 10**9
_EPOCH: Final = date(1970, 1, 1)


class Record(Protocol):
    """What the batch needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass
class Batch:
    """The rows of one batch, where each came from, and what was set aside."""

    table: str
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    #: The record of each row, so a row PostgreSQL refuses can still be dead-lettered whole.
    sources: list[Record] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    #: Dead letters by kind: ``decode``, ``range``, ``misrouted`` (later also ``refused``).
    dead_kinds: Counter[str] = field(default_factory=Counter)
    #: Skipped records by event type code.
    skipped: Counter[str] = field(default_factory=Counter)
    #: The offset to commit per partition: the batch's last offset + 1.
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    #: UTC days (as day numbers since the epoch) the rows fall on; their partitions must exist.
    day_numbers: set[int] = field(default_factory=set)
    records: int = 0
    #: Bars replaced within the batch by a later record of the same key (only the last is written).
    superseded: int = 0
    #: Set by the worker: the assignment generation the records were fetched in.
    epoch: int = 0
    #: Tables whose upsert updates (bars): row index of each key seen, to keep one row per key.
    _latest: dict[tuple[Any, ...], int] = field(default_factory=dict, repr=False)

    @property
    def days(self) -> list[date]:
        return sorted(_EPOCH + timedelta(days=n) for n in self.day_numbers)

    def dead_letter(self, record: Record, kind: str, field_name: str, reason: str) -> None:
        self.dead.append(letter_for(record, field_name, reason))
        self.dead_kinds[kind] += 1

    def add(self, tp: TopicPartition, records: Sequence[Record]) -> None:
        """Decode, check and convert more records of one partition, in offset order.

        A batch grows a fetch at a time, so decoding never holds the event loop
        for long and the write in flight gets its replies promptly.
        """
        if not records:
            return
        table = spec(self.table)
        to_row = table.stage_row
        wanted, nouns, decode = TYPES[self.table], NOUNS[self.table], table.decode
        # One row per key where the upsert updates, or ON CONFLICT DO UPDATE would hit it twice.
        keeps, row_key = table.keeps, table.row_key
        rows, sources, days, latest = self.rows, self.sources, self.day_numbers, self._latest
        self.records += len(records)
        self.offsets[tp] = records[-1].offset + 1
        for record in records:
            value = record.value
            if value is None:
                self.dead_letter(record, "decode", "$", "expected an event, got a record without a value")
                continue
            try:
                event = decode(value)
            except DecodeError as exc:
                self.dead_letter(record, "decode", exc.field, str(exc))
                continue
            code = event.type_code
            if code not in wanted:
                if code in nouns:  # another table's type on this topic: a routing bug upstream
                    expected = " or ".join(nouns[c] for c in sorted(wanted))
                    reason = f"expected a {expected} on {record.topic}, got a {nouns[code]}"
                    self.dead_letter(record, "misrouted", "T", reason)
                else:
                    self.skipped[code] += 1
                continue
            try:
                row = to_row(event)  # checks the values as it goes
            except DecodeError as exc:
                self.dead_letter(record, "range", exc.field, str(exc))
                continue
            if keeps is not None:
                key = row_key(row)
                seen = latest.get(key)
                if seen is not None:
                    self.superseded += 1
                    if not keeps(rows[seen], row):  # the same rule as the upsert's WHERE
                        rows[seen], sources[seen] = row, record
                    continue
                latest[key] = len(rows)
            rows.append(row)
            sources.append(record)
            days.add(event.timestamp // NS_PER_DAY)


def letter_for(record: Record, field_name: str, reason: str) -> DeadLetter:
    """The dead letter of a consumed record: the reason, where it came from and its bytes, untouched."""
    return DeadLetter(
        reason=reason,
        field=field_name,
        stage="consumer",
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key=record.key,
        original=record.value or b"",
    )


def build_batch(table: str, records: Mapping[TopicPartition, Sequence[Record]]) -> Batch:
    """Decode, check and convert the records of one batch (partition order kept within each partition)."""
    batch = Batch(spec(table).table)
    for tp, part in records.items():
        batch.add(tp, part)
    return batch
