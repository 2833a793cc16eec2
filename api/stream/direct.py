"""Market-data frames written straight to a client's socket, next to uvicorn's own WebSocket protocol.

Why: at 1,000 clients the stream sends tens of thousands of frames a
second, and through ASGI each one costs a task wake-up and five layers of
calls (Starlette, uvicorn, websockets' framing) around a ``transport.write``
of a few hundred bytes; measured, those layers cost twice the system call
itself. Server-to-client frames need no mask and no state, so the stream
frames its event batches itself (one header and one write) and hands them to
the transport directly.

How: :class:`DirectWebSocketProtocol` is uvicorn's websockets (sans-I/O)
protocol with one addition, an ASGI scope extension (``EXTENSION``) holding
a :class:`DirectFrames` for the connection. The stream uses it when present
and when no compression was negotiated (a deflate client gets compressed
frames through ASGI as before); any other server, or uvicorn's other
protocols, simply lack the extension and the stream falls back to ASGI
sends. The handshake, control frames, pings and the close handshake all stay
uvicorn's; writes of both kinds happen on the event loop thread, whole
frames at a time, so they never interleave inside a frame.

Back-pressure is the transport's: above its high-water mark it is paused
(``writable`` is False), the stream stops writing to it and the client's
outbox grows, until it drains (``on_writable`` is called) or the outbox is
full and the client is cut with 407.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

#: The scope extension's name (``scope["extensions"][EXTENSION]`` is a DirectFrames).
EXTENSION: Final = "tickpipe.direct_frames"
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (RFC 6455 section 5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
    return head + payload


class DirectFrames:
    """What the stream may do with one connection's socket besides ASGI (the scope extension)."""

    __slots__ = ("_protocol", "on_writable", "paused")

    def __init__(self, protocol: DirectWebSocketProtocol) -> None:
        self._protocol = protocol
        self.paused = False  # the transport is above its high-water mark
        #: Called when a paused transport can take data again (set by the stream).
        self.on_writable: Callable[[], None] | None = None

    @property
    def compressed(self) -> bool:
        """True when the handshake negotiated an extension (permessage-deflate): use ASGI sends then."""
        return bool(self._protocol.conn.extensions)

    def sink(self, *, binary: bool) -> DirectSink:
        return DirectSink(self._protocol, self, OP_BINARY if binary else OP_TEXT)


class DirectSink:
    """Frames of one opcode written to the socket on the spot; the hot path, so kept to a few lookups."""

    __slots__ = ("_direct", "_opcode", "_protocol", "_transport")

    def __init__(self, protocol: DirectWebSocketProtocol, direct: DirectFrames, opcode: int) -> None:
        self._protocol = protocol
        self._direct = direct
        self._transport = protocol.transport
        self._opcode = opcode

    @property
    def writable(self) -> bool:
        """Open, not closing, and the transport below its high-water mark."""
        p = self._protocol
        return not (self._direct.paused or p.close_sent or p.disconnected or self._transport.is_closing())

    def write(self, payload: bytes) -> None:
        """Frame ``payload`` and hand it to the transport; the caller checked ``writable``."""
        self._transport.write(frame(self._opcode, payload))


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, offering :class:`DirectFrames` in the scope."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direct = DirectFrames(self)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:  # the app's task is created but has not run yet
            scope["extensions"][EXTENSION] = self.direct

    def pause_writing(self) -> None:
        super().pause_writing()
        self.direct.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.direct.paused = False
        if self.direct.on_writable is not None:
            self.direct.on_writable()
