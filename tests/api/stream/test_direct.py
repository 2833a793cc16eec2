"""Direct frames: what the fast writer sends parses as websockets reads it."""

from __future__ import annotations

from collections.abc import Generator

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.stream.direct import OP_BINARY, OP_TEXT, frame


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 200_000])
def test_direct_frames_parse_as_websockets_reads_them(size: int) -> None:
    """Every length encoding of RFC 6455 (7 bits, 16, 64), read back by the websockets library's own parser."""
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    reader = StreamReader()
    reader.feed_data(frame(OP_TEXT, payload) + frame(OP_BINARY, b"x"))
    parsed = drive(Frame.parse(reader.read_exact, mask=False))
    assert (parsed.opcode, parsed.data, parsed.fin) == (Opcode.TEXT, payload, True)
    second = drive(Frame.parse(reader.read_exact, mask=False))
    assert (second.opcode, second.data) == (Opcode.BINARY, b"x")


def drive(parser: Generator[None, None, Frame]) -> Frame:
    """Run a websockets sans-I/O parser whose input is all there."""
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("the frame is incomplete")
