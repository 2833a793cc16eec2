"""The disk spool: append-only segments, read from a committed cursor, slots that sort first."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from producer.spool import Position, Record, Spool, SpoolFull
from tests.helpers.producer import Disk


def records(n: int, start: int = 0, topic: str = "tickpipe.quotes") -> list[Record]:
    return [(topic, f"S{i % 7}".encode(), f"value-{i}".encode() * 3) for i in range(start, start + n)]


def drain(spool: Spool, max_records: int = 1000) -> list[Record]:
    out: list[Record] = []
    while spool.depth:
        chunk = spool.read(max_records)
        assert chunk, "depth says more, read gives none"
        out.extend(r.record for r in chunk)
        spool.commit(chunk[-1].end, len(chunk))
    return out


def test_append_then_read_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096).open()
    written = records(500)
    for i in range(0, 500, 50):
        spool.append(written[i : i + 50])
    assert spool.depth == 500
    assert len(list(tmp_path.glob("*.seg"))) > 1
    assert drain(spool, max_records=77) == written
    assert spool.depth == 0
    assert list(tmp_path.glob("*.seg")) == []  # drained: nothing left on disk


def test_reading_does_not_consume_until_committed(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    spool.append(records(10))
    first = spool.read(4)
    again = spool.read(4)
    assert [r.record for r in first] == [r.record for r in again]
    spool.commit(first[-1].end, 4)
    assert [r.record for r in spool.read(100)] == records(10)[4:]


def test_keys_may_be_absent_and_values_empty(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    odd: list[Record] = [("tickpipe.dlq", None, b""), ("t", b"", b"x"), ("t" * 200, b"k" * 300, b"v" * 70_000)]
    spool.append(odd)
    assert drain(spool) == odd


def test_a_restart_resumes_at_the_committed_cursor(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096).open()
    written = records(300)
    spool.append(written)
    chunk = spool.read(120)
    spool.commit(chunk[-1].end, 120)
    spool.append(records(5, start=300))
    spool.close()

    reopened = Spool(tmp_path, segment_bytes=4096).open()
    assert reopened.depth == 185
    assert drain(reopened) == written[120:] + records(5, start=300)


def test_a_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path).open()
    spool.append(records(20))
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    with open(segment, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x01\x02\x03")  # a record header whose body never made it
    reopened = Spool(tmp_path).open()
    assert reopened.depth == 20
    assert "cut 7 bytes" in caplog.text
    assert drain(reopened) == records(20)


def test_a_corrupt_record_stops_the_segment_there(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    spool.append(records(3))
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # last record's body no longer matches its CRC
    segment.write_bytes(bytes(data))
    assert drain(Spool(tmp_path).open()) == records(2)


def test_a_filled_slot_is_read_before_what_was_appended_after_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    spool.append(records(3, start=0))
    slot = spool.reserve()
    spool.append(records(3, start=10))
    assert [r.record for r in spool.read(100)] == records(3)  # stops before the pending slot
    spool.fill(slot, records(3, start=5))
    assert drain(spool) == records(3) + records(3, start=5) + records(3, start=10)


def test_a_released_slot_leaves_no_gap(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    slot = spool.reserve()
    spool.append(records(4))
    assert spool.read(10) == []
    spool.release(slot)
    assert drain(spool) == records(4)


def test_records_a_partly_failed_round_sent_are_known_by_position_after_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096).open()
    for start in range(0, 100, 10):
        spool.append(records(10, start))
    chunk = spool.read(100)
    assert len({r.end.segment for r in chunk}) > 1, "the note spans segments"
    sent = [r.end for r in chunk[1::3]]
    spool.mark_sent(sent)
    spool.close()
    reopened = Spool(tmp_path, segment_bytes=4096).open()
    assert [reopened.already_sent(r.end) for r in chunk] == [r.end in set(sent) for r in chunk]
    reopened.commit(chunk[49].end, 50)
    assert reopened.sent == {end for end in sent if end > chunk[49].end}, "what the cursor passed is forgotten"
    reopened.commit(chunk[-1].end, 50)
    assert reopened.sent == set()


def test_an_old_cursor_noting_partitions_sends_those_records_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A partition number cannot name a record once the count may have changed: send again rather than skip.
    spool = Spool(tmp_path).open()
    spool.append(records(10))
    until = spool.read(10)[-1].end
    spool.close()
    (tmp_path / "cursor.json").write_text(
        json.dumps({"segment": 0, "offset": 0, "partial": [[list(until), [["tickpipe.quotes", 1]]]]})
    )
    reopened = Spool(tmp_path).open()
    assert "sent again in full" in caplog.text
    assert drain(reopened) == records(10)


def test_positions_order_segments_before_offsets() -> None:
    assert Position(1, 900) < Position(2, 0)
    assert Position(2, 5) <= Position(2, 5)


def test_appended_data_is_on_disk_without_close(tmp_path: Path) -> None:
    # A crash after append keeps the records: each append is one write() to the file.
    spool = Spool(tmp_path).open()
    spool.append(records(8))
    assert Spool(tmp_path).open().depth == 8  # another reader, while the writer is still open
    spool.close()


# --- a disk that refuses writes (issue #13) -----------------------------------------------------------


def test_short_writes_are_written_whole(tmp_path: Path) -> None:
    disk = Disk(most=7)
    spool = Spool(tmp_path, segment_bytes=4096, write=disk).open()
    written = records(300)
    for i in range(0, 300, 30):
        spool.append(written[i : i + 30])
    spool.commit(spool.read(10)[-1].end, 10)  # the cursor file, short-written too
    spool.close()
    assert disk.calls > 300 * 7
    assert drain(Spool(tmp_path, segment_bytes=4096).open()) == written[10:]


def test_a_write_that_writes_nothing_is_an_error_not_a_loop(tmp_path: Path) -> None:
    spool = Spool(tmp_path, write=lambda fd, data: 0).open()
    with pytest.raises(OSError, match="write returned 0"):
        spool.append(records(3))
    assert spool.depth == 0


def test_a_full_disk_refuses_an_append_whole_and_the_next_one_is_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = Disk()
    spool = Spool(tmp_path, write=disk).open()
    spool.append(records(5))
    size = spool.disk_bytes
    disk.full = True
    with pytest.raises(OSError) as refused:
        spool.append(records(5, 5))
    assert refused.value.errno == errno.ENOSPC
    assert (spool.depth, spool.disk_bytes) == (5, size), "nothing counted"
    assert sum(p.stat().st_size for p in tmp_path.glob("*.seg")) == size, "nothing left on disk"
    disk.full = False
    spool.append(records(5, 10))
    spool.close()
    assert drain(Spool(tmp_path).open()) == records(5) + records(5, 10)
    assert "torn" not in caplog.text


def test_the_size_cap_refuses_as_a_full_disk_does_until_records_are_committed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096, max_bytes=8192).open()
    taken = 0
    with pytest.raises(SpoolFull) as refused:
        for i in range(1000):
            spool.append(records(10, i * 10))
            taken += 10
    assert refused.value.errno == errno.ENOSPC and "8192" in str(refused.value)
    assert 0 < spool.disk_bytes <= 8192 and spool.depth == taken
    assert drain(spool) == records(taken)  # committed: the segments are gone, and so is the cap's count
    spool.append(records(10))
    assert spool.depth == 10


def test_a_slot_the_disk_refuses_stays_reserved_and_nothing_past_it_is_read(tmp_path: Path) -> None:
    disk = Disk()
    spool = Spool(tmp_path, write=disk).open()
    slot = spool.reserve()
    spool.append(records(5, 100))
    disk.full = True
    with pytest.raises(OSError):
        spool.fill(slot, records(3))
    assert spool.read(100) == [], "the slot's records come first: nothing is read past it"
    assert not (tmp_path / f"{slot:012d}.seg").exists()
    disk.full = False
    spool.fill(slot, records(3))
    assert drain(spool) == records(3) + records(5, 100)


def test_a_cursor_that_cannot_be_saved_is_saved_at_the_next_sync(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = Disk()
    spool = Spool(tmp_path, write=disk).open()
    spool.append(records(20))
    spool.sync()
    disk.full = True
    chunk = spool.read(8)
    spool.commit(chunk[-1].end, 8)
    assert [r for r in caplog.records if r.levelname == "ERROR" and "cursor could not be saved" in r.getMessage()]
    assert Spool(tmp_path).open().depth == 20, "the old cursor: a restart would send the 8 again, never lose them"
    disk.full = False
    spool.sync()
    assert json.loads((tmp_path / "cursor.json").read_text())["offset"] == chunk[-1].end.offset
    assert drain(Spool(tmp_path).open()) == records(20)[8:]
