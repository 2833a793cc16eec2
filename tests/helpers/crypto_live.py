"""Crypto events into Redis exactly as ``tickpipe producer --feed crypto`` puts them there.

The producer's own code does it: upstream frames (Alpaca's crypto messages, msgpack with ``t`` a
Timestamp) go through the crypto feed's transcoder and into a :class:`~producer.live_sink.LiveSink`
named by the crypto feed's words, which PUBLISHes each event on ``crypto.<family>:<pair>`` and keeps
the ``latest:crypto.*`` hashes (for order books, the pair's whole book).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
from collections.abc import AsyncIterator
from typing import Any

from producer.live_sink import LiveSink
from producer.transcode import transcoder_for
from tests.helpers.waiting import wait_for
from tickpipe.codecs import WIRE_TIME_FIELDS, encode_wire_msgpack, format_rfc3339_ns
from tickpipe.feeds import CRYPTO, Feed


def unique_pair() -> str:
    """A crypto pair no other test uses (8 capital letters, then /USD)."""
    return "".join(random.choices(string.ascii_uppercase, k=8)) + "/USD"


class CryptoLive:
    """The crypto producer's live path on a Redis (or another feed's: ``feed``): :meth:`publish` Alpaca-shaped
    messages (``t``, a news story's ``created_at`` and ``updated_at``, in ns)."""

    def __init__(self, sink: LiveSink, feed: Feed = CRYPTO) -> None:
        self.sink = sink
        self.transcode = transcoder_for(feed)
        self.offered = 0

    async def publish(self, *messages: dict[str, Any]) -> None:
        """One upstream frame of ``messages``, offered to the sink; back once Redis has every event."""
        frame = encode_wire_msgpack(
            [{**m, **{k: format_rfc3339_ns(m[k]) for k in WIRE_TIME_FIELDS if k in m}} for m in messages]
        )
        out = self.transcode(frame, 0)
        assert not out.rejected and len(out.events) == len(messages), out.rejected
        self.sink.offer(out.events)
        self.offered += len(out.events)
        await wait_for(lambda: self.sink.published >= self.offered, what="the live sink to publish")
        assert not self.sink.dropped, self.sink.dropped


@contextlib.asynccontextmanager
async def crypto_live(redis_url: str, feed: Feed = CRYPTO) -> AsyncIterator[CryptoLive]:
    """The crypto feed's (or ``feed``'s) live sink on ``redis_url``, as the producer's service builds it."""
    books = frozenset(code for family in feed.families if family.book for code in family.codes)
    routed = any(family.channels is not None for family in feed.families)
    sink = LiveSink(redis_url, words=feed.word_of, book_codes=books, routed=routed)
    task = asyncio.create_task(sink.run())
    try:
        yield CryptoLive(sink, feed)
    finally:
        sink.stop()
        await task


def crypto_quote(pair: str, t: int, bid: float = 100.0) -> dict[str, Any]:
    return {"T": "q", "S": pair, "bp": bid, "bs": 0.5, "ap": bid + 0.25, "as": 0.75, "t": t}


def crypto_trade(pair: str, t: int, trade_id: int, price: float = 100.0) -> dict[str, Any]:
    return {"T": "t", "S": pair, "p": price, "s": 0.0125, "t": t, "i": trade_id, "tks": "B" if trade_id % 2 else "S"}


def crypto_bar(pair: str, t: int, kind: str = "b", close: float = 100.0) -> dict[str, Any]:
    return {
        "T": kind,
        "S": pair,
        "o": close - 1,
        "h": close + 1,
        "l": close - 2,
        "c": close,
        "v": 1.5,
        "t": t,
        "n": 3,
        "vw": close - 0.5,
    }


def crypto_book(
    pair: str, t: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]], *, reset: bool = False
) -> dict[str, Any]:
    """An order-book message: the whole book (``reset``) or the levels that changed (size 0: gone)."""
    message: dict[str, Any] = {
        "T": "o",
        "S": pair,
        "t": t,
        "b": [{"p": p, "s": s} for p, s in bids],
        "a": [{"p": p, "s": s} for p, s in asks],
    }
    if reset:
        message["r"] = True
    return message
