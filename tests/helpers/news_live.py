"""News stories into Redis exactly as ``tickpipe producer --feed news`` puts them there; the simulator's news
wire and a news producer's settings for the producer and pipeline tests.

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
from pathlib import Path
from typing import Any

from simulator import DEFAULT_START_NS, Simulator, SimulatorConfig
from simulator.config import NEWS_FEEDS
from tests.helpers.crypto_live import CryptoLive, crypto_live
from tests.helpers.producer import producer_settings
from tickpipe.feeds import NEWS
from tickpipe.settings import Settings

NewsLive = CryptoLive
(FEED,) = NEWS_FEEDS  # the simulator's news feed, "news/news"
#: The simulator's stock symbols, which its news wire names.
SYMBOLS = ("AAPL", "TSLA", "MSFT")
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


def news_config(**overrides: Any) -> SimulatorConfig:
    """The simulator with a fast news wire over :data:`SYMBOLS`, recording what it sends."""
    values: dict[str, Any] = {"news_rate": 500, "start_ns": DEFAULT_START_NS, "record": True, "feed": FEED}
    values |= {"symbols": SYMBOLS} | overrides
    return SimulatorConfig(**values)


def news_settings(kafka: str, redis_url: str, prefix: str, spool: Path, sim: Simulator, **overrides: Any) -> Settings:
    """A test news producer's settings: ALPACA_STREAM_URL is the simulator's stock URL, the news URL is
    derived from its host."""
    return producer_settings(kafka, redis_url, prefix, spool, sim.url_for("iex"), **overrides)


def sent_stories(sim: Simulator) -> list[dict[str, Any]]:
    """Every story the simulator sent on its news connections, in order (times in ns)."""
    return [
        {**m, "created_at": m["created_at"].to_unix_nano(), "updated_at": m["updated_at"].to_unix_nano()}
        for session in sim.sessions
        if session.feed == FEED
        for m in session.sent_events()
    ]
