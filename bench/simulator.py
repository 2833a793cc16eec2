"""How fast the simulator's burst mode feeds one raw WebSocket reader.

The simulator runs in its own process (``python -m simulator --burst``) so it
has a core to itself, as in the producer benchmark; the reader, in this
process, counts events from each frame's array header (msgpack) or message
openings (JSON) without decoding them, so it is not the bottleneck. A third
line shows a reader that unpacks every frame as alpaca-py does. The baseline,
measured in the same run, is the same server sending one event per JSON
frame, the naive way.

    .venv/bin/python bench/simulator.py [--events 2000000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.wire import count_messages  # noqa: E402

SUBSCRIBE_ALL = {
    "action": "subscribe",
    "trades": ["*"],
    "quotes": ["*"],
    "bars": ["*"],
    "updatedBars": ["*"],
    "dailyBars": ["*"],
    "statuses": ["*"],
}


class SendStamps:
    """Every frame an in-process simulator hands to a socket while ``recording``, with the time it did."""

    recording: ClassVar[bool] = False
    frames: ClassVar[list[tuple[int, bytes | str]]] = []
    installed: ClassVar[bool] = False

    @classmethod
    def install(cls) -> None:
        """Wrap ``ServerConnection.send`` once (a benchmark may run its simulator several times)."""
        if cls.installed:
            return
        cls.installed = True
        original = ServerConnection.send

        async def send(self: ServerConnection, message: Any, text: bool | None = None) -> None:
            if cls.recording and isinstance(message, bytes | str) and len(message) > 40:
                cls.frames.append((time.time_ns(), message))
            await original(self, message, text=text)

        ServerConnection.send = send  # type: ignore[method-assign,assignment]

    @classmethod
    def take(cls) -> list[tuple[int, bytes | str]]:
        """The frames recorded so far; the record cleared."""
        frames, cls.frames = cls.frames, []
        return frames


def start_simulator(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m simulator`` on a free port; return the process and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", *flags], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"expected 'listening on ws://...' from the simulator, got {line!r}")
    return proc, line.split()[2]


async def read(url: str, events: int, msgpack_wire: bool, decode: bool = False) -> float:
    """Connect, authenticate, subscribe to everything; events/s over the first ``events``.

    With ``decode`` the reader unpacks every frame as alpaca-py does, to show
    what a decoding client can take.
    """
    headers = {"Content-Type": "application/msgpack"} if msgpack_wire else {}
    async with connect(url, additional_headers=headers, compression=None, max_size=2**24, max_queue=64) as ws:
        if msgpack_wire:
            await ws.recv()
            await ws.send(msgpack.packb({"action": "auth", "key": "k", "secret": "s"}))
            await ws.recv()
            await ws.send(msgpack.packb(SUBSCRIBE_ALL))
        else:
            await ws.recv()
            await ws.send(orjson.dumps({"action": "auth", "key": "k", "secret": "s"}).decode())
            await ws.recv()
            await ws.send(orjson.dumps(SUBSCRIBE_ALL).decode())
        await ws.recv()  # the subscription confirmation
        seen = 0
        began = time.perf_counter()
        while seen < events:
            frame = await ws.recv(decode=False)
            if decode:
                seen += len(msgpack.unpackb(frame))
            else:
                seen += count_messages(frame) if msgpack_wire else frame.count(b'{"T":')
        return seen / (time.perf_counter() - began)


def measure(events: int, msgpack_wire: bool, *flags: str, decode: bool = False) -> float:
    proc, url = start_simulator("--burst", *flags)
    try:
        return asyncio.run(read(url, events, msgpack_wire, decode))
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    args = parser.parse_args()
    baseline_events = max(20_000, args.events // 50)
    baseline = measure(baseline_events, False, "--batch-size", "1")
    burst_msgpack = measure(args.events, True)
    burst_json = measure(args.events // 2, False)
    decoded = measure(args.events // 4, True, decode=True)
    print(
        f"simulator burst msgpack: {burst_msgpack:,.0f} events/s  "
        f"(baseline one-event-per-frame JSON: {baseline:,.0f} events/s)"
    )
    print(
        f"simulator burst json: {burst_json:,.0f} events/s  "
        f"(baseline one-event-per-frame JSON: {baseline:,.0f} events/s)"
    )
    print(
        f"simulator burst msgpack, reader decoding every frame like alpaca-py: {decoded:,.0f} events/s  "
        f"(baseline one-event-per-frame JSON: {baseline:,.0f} events/s)"
    )
    print(f"target: >= 250,000 events/s msgpack -> {'met' if burst_msgpack >= 250_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
