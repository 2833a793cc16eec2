"""The durable path's disk spool: Kafka records that Kafka has not taken yet, in arrival order.

Append-only segment files (``000000000001.seg`` ...) of framed records
(length, CRC-32, body), read from a committed cursor kept in ``cursor.json``.
Reading never consumes: the durable sink reads a chunk at the cursor, sends
it, and commits past it only once Kafka has acknowledged it, so a failed
replay is retried from the same place and a crash replays at most the chunk
in flight.

A *slot* is a segment number reserved ahead of the records appended after it:
while a batch is in flight to Kafka, newer events may already have to go to
disk; if the batch then fails, it fills the slot and so is replayed first.

A torn record at the end of a segment (the process died mid-write) is cut
off on open and logged with its size; everything before it is kept.

A full disk (``ENOSPC``), the size cap ``max_bytes`` (:class:`SpoolFull`) or
any other refused write raises :class:`OSError` with nothing written: a short
or failed append is cut back to where it began, a slot that cannot be filled
stays reserved (and empty) so it is filled later, still ahead of what follows.
Every write checks how much went out. The cursor file is written to a temporary
file, fsynced, renamed over the old one, and the folder fsynced (as it is when
a segment is created); a cursor that cannot be saved is logged and saved at the
next :meth:`Spool.sync` (until then a restart replays a little more: duplicates,
never losses).

A replayed round that Kafka took for some partitions only leaves records
past the cursor that are already in Kafka. The cursor file names them by
their *position* in the spool (segment and end offset), never by the
partition they went to: the partition of a record depends on the topic's
partition count at the time, which may differ when the chunk is sent again
(a broker that came back with the topic re-created), and a partition-keyed
note would then skip records that never reached Kafka.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from producer.spool_format import FRAME, Position, Record, Spooled, decode_records, encode_records

log = logging.getLogger(__name__)

_CURSOR = "cursor.json"
__all__ = ["Position", "Record", "Spool", "SpoolFull", "Spooled", "decode_records", "encode_records"]

#: ``os.write``'s shape: bytes out of what was given (fewer on a short write), or OSError.
Write = Callable[[int, memoryview], int]


class SpoolFull(OSError):
    """The spool is at its size cap (``SPOOL_MAX_BYTES``): an ``ENOSPC`` of its own."""

    def __init__(self, cap: int, size: int, more: int) -> None:
        super().__init__(errno.ENOSPC, f"spool at its cap of {cap} bytes ({size} used, {more} more asked)")


class Spool:
    """Append-only segments in ``directory``; see the module docstring.

    ``write`` is the one call that puts bytes in a file (``os.write``); a test may pass one that
    fails as a full disk does, the rest of the file layer staying real.
    """

    def __init__(
        self,
        directory: Path,
        segment_bytes: int = 64 * 1024 * 1024,
        max_bytes: int | None = None,
        *,
        write: Write = os.write,
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes  # None: no cap but the disk's
        self._write = write
        self._cursor_saved = True
        self.depth = 0  # records not yet committed
        self.cursor = Position(0, 0)
        #: Records past the cursor that reached Kafka in partly failed rounds, by where each ends.
        self.sent: set[Position] = set()
        self._segments: dict[int, int] = {}  # number -> size in bytes
        self._slots: set[int] = set()
        self._next = 1
        self._fd: int | None = None  # the segment being appended to
        self._open_no: int | None = None
        self._dirty = False
        self._ahead: deque[Spooled] = deque()  # read from disk, not yet committed
        self._ahead_end = Position(0, 0)

    # --- lifecycle ------------------------------------------------------------------------
    def open(self) -> Spool:
        """Find the segments, cut torn tails, load the cursor and count what is left to send."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load_cursor()
        for path in sorted(self.directory.glob("*.seg")):
            number = int(path.stem)
            if number < self.cursor.segment:
                path.unlink()
                continue
            data = path.read_bytes()
            start = self.cursor.offset if number == self.cursor.segment else 0
            records, good = decode_records(data[start:], number, start)
            if start + good < len(data):
                log.error(
                    "spool segment %s: cut %d bytes of a torn or corrupt record at offset %d",
                    path, len(data) - start - good, start + good,
                )  # fmt: skip
                os.truncate(path, start + good)
            self._segments[number] = start + good
            self.depth += len(records)
            self._next = max(self._next, number + 1)
        self._next = max(self._next, self.cursor.segment + 1)
        self._forget_ahead()
        if self.depth:
            log.info("spool %s holds %d records not yet in Kafka", self.directory, self.depth)
        return self

    def close(self) -> None:
        self.sync()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._open_no = None

    def sync(self) -> None:
        """fsync what was appended (process crashes lose nothing without it; power cuts would), and save
        the cursor if saving it failed before."""
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        if not self._cursor_saved:
            self._save_cursor()

    @property
    def size_bytes(self) -> int:
        """Bytes of records not yet committed."""
        return self.disk_bytes - (self.cursor.offset if self.cursor.segment in self._segments else 0)

    @property
    def disk_bytes(self) -> int:
        """Bytes the segments take on disk (what ``max_bytes`` caps)."""
        return sum(self._segments.values())

    # --- writing --------------------------------------------------------------------------
    def append(self, records: Sequence[Record]) -> None:
        """Write ``records`` at the end, all or none: OSError (disk full, :class:`SpoolFull`) leaves nothing."""
        if not records:
            return
        data = encode_records(records)
        self._room_for(len(data))
        if self._fd is None or self._segments[self._open_no or 0] >= self.segment_bytes:
            self._roll()
        assert self._fd is not None and self._open_no is not None
        start = self._segments[self._open_no]
        try:
            self._write_all(self._fd, data)
        except OSError:
            os.ftruncate(self._fd, start)  # no torn record left for the next append to follow
            raise
        self._segments[self._open_no] += len(data)
        self.depth += len(records)
        self._dirty = True

    def reserve(self) -> int:
        """A segment number that sorts before everything appended from now on."""
        self._seal()
        slot = self._next
        self._next += 1
        self._slots.add(slot)
        return slot

    def fill(self, slot: int, records: Sequence[Record]) -> None:
        """Write a reserved slot's records (whole, synced), or nothing if there are none.

        On OSError the slot stays reserved and empty (nothing past it is read): fill it again later.
        """
        if not records:
            self._slots.discard(slot)
            self._forget_ahead()
            return
        path = self._path(slot)
        data = encode_records(records)
        self._room_for(len(data))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self._write_all(fd, data)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        self._sync_directory()
        self._slots.discard(slot)
        self._forget_ahead()
        self._segments[slot] = len(data)
        self.depth += len(records)

    def release(self, slot: int) -> None:
        """The slot stays empty: what it was reserved for reached Kafka."""
        self._slots.discard(slot)

    # --- reading --------------------------------------------------------------------------
    def read(self, max_records: int, max_bytes: int = 4 * 1024 * 1024) -> list[Spooled]:
        """Up to ``max_records`` records from the cursor on, across segments; never past a pending slot.

        Records read ahead stay in memory until committed, so a replay that
        takes a few records at a time does not re-read the segment each time.
        """
        ahead = self._ahead
        while len(ahead) < max_records:
            more = self._read_disk(self._ahead_end, max_records - len(ahead), max_bytes)
            if not more:
                break
            ahead.extend(more)
            self._ahead_end = more[-1].end
        return list(itertools.islice(ahead, max_records))

    def _read_disk(self, position: Position, max_records: int, max_bytes: int) -> list[Spooled]:
        while True:
            number = self._next_readable(position.segment)
            if number is None:
                return []
            if number != position.segment:
                position = Position(number, 0)
            if position.offset < self._segments[number]:
                break
            if number == self._open_no:
                return []
            position = Position(number + 1, 0)
        with open(self._path(number), "rb") as segment:
            segment.seek(position.offset)
            data = segment.read(max(max_bytes, FRAME.size))
            if len(data) >= FRAME.size:
                need = FRAME.size + FRAME.unpack_from(data)[0]
                if need > len(data):  # a record bigger than max_bytes: read it whole
                    data += segment.read(need - len(data))
        return decode_records(data, number, position.offset)[0][:max_records]

    def commit(self, end: Position, count: int) -> None:
        """``count`` records up to ``end`` are in Kafka: move the cursor and drop finished segments."""
        self.cursor = end
        self.depth -= count
        ahead = self._ahead
        while ahead and ahead[0].end <= end:
            ahead.popleft()
        self._ahead_end = max(self._ahead_end, end)
        self.sent = {position for position in self.sent if position > end}
        for number in [n for n in self._segments if n < end.segment]:
            self._drop(number)
        if self.depth == 0 and not self._slots:
            self._reset()
        self._save_cursor()

    def mark_sent(self, ends: Iterable[Position]) -> None:
        """The records ending at ``ends`` (past the cursor) are in Kafka: skip them when their chunk is sent again.

        Kept by position so the note holds whatever the partition count is when
        the chunk is replayed; saved at once, so a restart does not send them twice.
        """
        before = len(self.sent)
        self.sent.update(end for end in ends if end > self.cursor)
        if len(self.sent) != before:
            self._save_cursor()

    def already_sent(self, end: Position) -> bool:
        """Whether the record ending at ``end`` reached Kafka in a partly failed round."""
        return end in self.sent

    # --- internals ------------------------------------------------------------------------
    def _path(self, number: int) -> Path:
        return self.directory / f"{number:012d}.seg"

    def _next_readable(self, at_least: int) -> int | None:
        candidates = [n for n in self._segments if n >= at_least]
        first = min(candidates, default=None)
        if first is None:
            return None
        if any(at_least <= slot < first for slot in self._slots):
            return None
        return first

    def _room_for(self, size: int) -> None:
        if self.max_bytes is not None and self.disk_bytes + size > self.max_bytes:
            raise SpoolFull(self.max_bytes, self.disk_bytes, size)

    def _write_all(self, fd: int, data: bytes) -> None:
        """Every byte of ``data``, however many calls it takes; OSError if a call writes nothing."""
        view, done = memoryview(data), 0
        while done < len(data):
            written = self._write(fd, view[done:])
            if written <= 0:
                raise OSError(errno.EIO, f"write returned {written} with {len(data) - done} bytes left")
            done += written

    def _sync_directory(self) -> None:
        """fsync the folder, so a created or renamed file's name survives a power cut too."""
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _roll(self) -> None:
        self._seal()
        number = self._next
        self._fd = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._next += 1
        self._open_no = number
        self._segments[number] = 0
        self._sync_directory()

    def _seal(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = self._open_no = None

    def _drop(self, number: int) -> None:
        if number == self._open_no:
            self._seal()
        self._segments.pop(number, None)
        self._path(number).unlink(missing_ok=True)

    def _reset(self) -> None:
        """Everything is in Kafka: remove the segments and start the next one afresh."""
        for number in list(self._segments):
            self._drop(number)
        self.cursor = Position(self._next, 0)
        self.sent = set()
        self._forget_ahead()

    def _forget_ahead(self) -> None:
        self._ahead.clear()
        self._ahead_end = self.cursor

    def _load_cursor(self) -> None:
        try:
            data = json.loads((self.directory / _CURSOR).read_text())
        except FileNotFoundError:
            return
        self.cursor = Position(int(data["segment"]), int(data["offset"]))
        for segment, deltas in data.get("sent", {}).items():
            self.sent.update(Position(int(segment), offset) for offset in itertools.accumulate(deltas))
        if data.get("partial"):
            # An older cursor named sent records by partition, which cannot be trusted under another
            # partition count: send those records again (Kafka may hold them twice; never lose them).
            log.warning("spool %s: an old cursor's partly sent rounds are sent again in full", self.directory)

    def _save_cursor(self) -> None:
        sent: dict[str, list[int]] = {}  # end offsets of records already in Kafka, each as the step from the last
        last: dict[str, int] = {}
        for segment, offset in sorted(self.sent):
            key = str(segment)
            sent.setdefault(key, []).append(offset - last.get(key, 0))
            last[key] = offset
        data = {
            "segment": self.cursor.segment,
            "offset": self.cursor.offset,
            "sent": sent,
        }
        tmp = self.directory / f"{_CURSOR}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                self._write_all(fd, json.dumps(data).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.directory / _CURSOR)
            self._sync_directory()
        except OSError as exc:
            if self._cursor_saved:
                log.error(
                    "spool %s: the cursor could not be saved (%s); trying again at the next sync (a restart "
                    "meanwhile sends some records again: Kafka may hold them twice)", self.directory, exc,
                )  # fmt: skip
            self._cursor_saved = False
            return
        if not self._cursor_saved:
            log.info("spool %s: the cursor is saved again", self.directory)
        self._cursor_saved = True
