"""alpaca-py's ``TradingStream`` on a thread of its own, against the simulator's or the API's ``/stream``."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.trading.stream import TradingStream


class TradingThread:
    """``TradingStream(key, secret, url_override=url)`` subscribed to trade updates, run as ``run()`` runs it."""

    def __init__(self, url: str, key: str = "key", secret: str = "secret", raw_data: bool = False) -> None:
        self.stream = TradingStream(key, secret, raw_data=raw_data, url_override=url)
        self.stream._reconnect_min_backoff = 0.05  # reconnect fast in tests
        self.stream._reconnect_max_backoff = 0.5
        self.received: list[Any] = []
        self.stream.subscribe_trade_updates(self.handler)
        self.thread = threading.Thread(target=self.stream.run, name="alpaca-trading-stream", daemon=True)

    async def handler(self, update: Any) -> None:
        self.received.append(update)

    def start(self) -> None:
        self.thread.start()

    async def stop(self) -> None:
        """Ask the stream to stop; it notices within the 5 s its receive loop waits at most."""
        if self.stream._loop is not None and self.thread.is_alive():
            await asyncio.to_thread(self.stream.stop)
        await asyncio.to_thread(self.thread.join, 20)
        assert not self.thread.is_alive(), "expected the alpaca-py trading stream thread to end"
