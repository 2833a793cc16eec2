"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.helpers.api import ApiServer, api_settings, running_api
from tests.helpers.crypto_live import CryptoLive, crypto_live
from tests.helpers.feed_streams import listed_symbols
from tests.helpers.services import database_of_its_own
from tickpipe.feeds import Feed


@pytest.fixture(scope="module")
def keyed_db(postgres_server_url: str) -> Iterator[str]:
    """A database of this module alone, schema at head, for tests that add API keys.

    Keys turn auth on for every API on their database, so they never go into
    the session's database, where the other tests run without keys.
    """
    with database_of_its_own(postgres_server_url, "tickpipe_keys") as url:
        yield url


# --- a feed's stream on the API (test_crypto_stream.py, test_options_stream.py) -------------------------
# Each module names its feed with a fixture ``feed`` of its own (CRYPTO, OPTIONS).


@pytest.fixture
def api_feeds(feed: Feed) -> str:
    """ALPACA_FEEDS of ``feed_api``: the stock feed and the module's (a module may want more)."""
    return f"stocks,{feed.name}"


@pytest.fixture
async def feed_api(migrated_db: str, redis_url: str, api_feeds: str) -> AsyncIterator[ApiServer]:
    """The API with the module's feed configured (ALPACA_FEEDS=stocks,<feed>)."""
    async with running_api(api_settings(migrated_db, redis_url, alpaca_feeds=api_feeds, ws_max_symbols=50)) as server:
        yield server


@pytest.fixture
async def live(redis_url: str, feed: Feed) -> AsyncIterator[CryptoLive]:
    """The feed's producer's live path on the session's Redis."""
    async with crypto_live(redis_url, feed) as sink:
        yield sink


@pytest.fixture
def listed(redis_url: str, feed: Feed) -> Iterator[Callable[[], str]]:
    """Unique symbols of the feed its producer lists, so the stream subscribes them in Redis at once."""
    with listed_symbols(redis_url, feed) as make:
        yield make
