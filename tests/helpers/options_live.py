"""Option events into Redis exactly as ``tickpipe producer --feed options`` puts them there.

The producer's own code does it (:func:`tests.helpers.crypto_live.crypto_live` with the options feed):
upstream frames (Alpaca's option messages, msgpack with ``t`` a Timestamp) go through the options feed's
transcoder and into a :class:`~producer.live_sink.LiveSink` named by its words, which PUBLISHes each event
on ``options.<family>:<contract>`` and keeps the ``latest:options.*`` hashes.
"""

from __future__ import annotations

import contextlib
import random
import string
from collections.abc import AsyncIterator
from typing import Any

from tests.helpers.crypto_live import CryptoLive, crypto_live
from tickpipe.feeds import OPTIONS

#: The options feed's live path: the same class as the crypto feed's, over the options feed's transcoder.
OptionsLive = CryptoLive


def unique_contract(kind: str = "C") -> str:
    """An OCC contract no other test uses: a 6-letter root, an expiry, ``kind`` and a strike."""
    root = "".join(random.choices(string.ascii_uppercase, k=6))
    return f"{root}{random.randint(240101, 291228)}{kind}{random.randint(0, 99_999_999):08d}"


@contextlib.asynccontextmanager
async def options_live(redis_url: str) -> AsyncIterator[OptionsLive]:
    """The options feed's live sink on ``redis_url``, as the producer's service builds it."""
    async with crypto_live(redis_url, OPTIONS) as live:
        yield live


def option_trade(contract: str, t: int, price: float = 4.2, size: int = 3, condition: str = "I") -> dict[str, Any]:
    return {"T": "t", "S": contract, "t": t, "p": price, "s": size, "x": "C", "c": condition}


def option_quote(contract: str, t: int, bid: float = 4.15, size: int = 12) -> dict[str, Any]:
    return {
        "T": "q", "S": contract, "t": t, "bx": "C", "bp": bid, "bs": size, "ax": "N", "ap": round(bid + 0.1, 2),
        "as": size + 18, "c": "A",
    }  # fmt: skip
