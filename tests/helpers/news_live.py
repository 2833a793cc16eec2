"""News stories into Redis exactly as ``tickpipe producer --feed news`` puts them there.

The producer's own code does it (:func:`tests.helpers.crypto_live.crypto_live` with the news feed):
upstream frames (Alpaca's news messages, msgpack with Timestamp times) go through the news feed's
transcoder and into a :class:`~producer.live_sink.LiveSink`, which PUBLISHes each story on
``news:<symbol>`` of every symbol it names (``news:`` for none).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import string
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tests.helpers.crypto_live import CryptoLive, crypto_live
from tickpipe.feeds import NEWS

NewsLive = CryptoLive
_ids = itertools.count(random.randint(10**9, 2 * 10**9))


def unique_ticker() -> str:
    """A ticker no other test uses: 8 capital letters."""
    return "".join(random.choices(string.ascii_uppercase, k=8))


@contextlib.asynccontextmanager
async def news_live(redis_url: str) -> AsyncIterator[NewsLive]:
    """The news feed's live sink on ``redis_url``, as the producer's service builds it."""
    async with crypto_live(redis_url, NEWS) as live:
        yield live


def story(symbols: Sequence[str], created: int, story_id: int | None = None, **values: Any) -> dict[str, Any]:
    """A story as Alpaca's news stream sends it (times in ns, whole seconds as Alpaca's)."""
    number = next(_ids) if story_id is None else story_id
    return {
        "T": "n", "id": number, "headline": f"Story {number}", "summary": "s", "author": "Benzinga Newsdesk",
        "created_at": created, "updated_at": created, "url": f"https://example.com/{number}",
        "content": "<p>c</p>", "symbols": list(symbols), "source": "benzinga",
    } | values  # fmt: skip
