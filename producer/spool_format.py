"""The spool's record format: length, CRC-32, then topic, key and value, so a torn write is detected.

::

    u32 body length | u32 CRC-32 of the body | u8 topic length | i32 key length (-1: none) | topic | key | value
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import NamedTuple

#: One Kafka record: topic, key (the symbol), value.
Record = tuple[str, bytes | None, bytes]

FRAME = struct.Struct("<II")  # body length, CRC-32 of the body
BODY = struct.Struct("<Bi")  # topic length, key length (-1: no key)


class Position(NamedTuple):
    """A place in the spool: a segment number and a byte offset in it."""

    segment: int
    offset: int


class Spooled(NamedTuple):
    """A record read back, and the position just after it (commit there once it is in Kafka)."""

    record: Record
    end: Position


def encode_records(records: Iterable[Record]) -> bytes:
    parts: list[bytes] = []
    for topic, key, value in records:
        name = topic.encode()
        body = b"".join((BODY.pack(len(name), -1 if key is None else len(key)), name, key or b"", value))
        parts.append(FRAME.pack(len(body), zlib.crc32(body)))
        parts.append(body)
    return b"".join(parts)


def decode_records(data: bytes, segment: int, offset: int) -> tuple[list[Spooled], int]:
    """Whole records in ``data`` (read at ``offset``); the second value is where the first torn one starts."""
    out: list[Spooled] = []
    pos = 0
    end = len(data)
    while pos + FRAME.size <= end:
        size, crc = FRAME.unpack_from(data, pos)
        start = pos + FRAME.size
        if start + size > end:
            break
        body = data[start : start + size]
        if zlib.crc32(body) != crc or size < BODY.size:
            break
        name_len, key_len = BODY.unpack_from(body)
        cut = BODY.size + name_len
        topic = body[BODY.size : cut].decode()
        key = None if key_len < 0 else body[cut : cut + key_len]
        value = body[cut + max(key_len, 0) :]
        pos = start + size
        out.append(Spooled((topic, key, value), Position(segment, offset + pos)))
    return out, pos
