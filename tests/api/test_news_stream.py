"""``WS /v1beta1/news``: the news feed at Alpaca's own path, over what the news producer publishes.

alpaca-py's ``NewsDataStream`` (msgpack, its ``News`` model) connects unchanged, with only
``url_override``; stories go into Redis through the producer's own transcoder and live sink
(:mod:`tests.helpers.news_live`), so channels and payloads are exactly the producer's. A story is
published on the channel of each symbol it names; a client gets it once, however many of its symbols
the story names, and a ``*`` client gets every story once, those naming no symbol too. Counts are
exact: nothing else arrives before the markers.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from api.stream.protocol import FEED_CHANNELS
from tests.helpers.api import ApiServer, WsClient, api_settings, running_api
from tests.helpers.feed_streams import alpaca_stream
from tests.helpers.news_live import NewsLive, news_live, story, unique_ticker
from tests.helpers.waiting import wait_for
from tickpipe.feeds import NEWS

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since websockets 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.live.news import NewsDataStream
    from alpaca.data.models.news import News

NEWS_STREAM = FEED_CHANNELS[NEWS.name].streams["news"]
NS = 1_000_000_000
T0 = 1_709_562_600 * NS


def news_url(server: ApiServer) -> str:
    return f"ws://127.0.0.1:{server.port}{NEWS.stream_path}"


@pytest.fixture
async def news_api(migrated_db: str, redis_url: str) -> AsyncIterator[ApiServer]:
    settings = api_settings(migrated_db, redis_url, alpaca_feeds="stocks,news", ws_max_symbols=50)
    async with running_api(settings) as server:
        yield server


@pytest.fixture
async def live(redis_url: str) -> AsyncIterator[NewsLive]:
    async with news_live(redis_url) as sink:
        yield sink


def model_of(message: dict[str, Any]) -> dict[str, Any]:
    """What alpaca-py's ``News`` holds of a published story."""
    moments = {k: datetime.fromtimestamp(message[k] // NS, UTC) for k in ("created_at", "updated_at")}
    return {k: v for k, v in message.items() if k != "T"} | moments | {"images": None}


@pytest.mark.parametrize("use_msgpack", [True, False])
async def test_a_client_gets_each_story_naming_its_symbols_once(
    news_api: ApiServer, live: NewsLive, use_msgpack: bool
) -> None:
    a, b, c = unique_ticker(), unique_ticker(), unique_ticker()
    client = await WsClient.connect(news_url(news_api), use_msgpack=use_msgpack)
    try:
        await client.login()
        assert await client.subscribe(news=[a.lower(), b]) == {"T": "subscription", "news": sorted([a, b])}
        hub = news_api.app.state.api.hub
        await wait_for(lambda: hub.clients_of(NEWS_STREAM, a) == hub.clients_of(NEWS_STREAM, b) == 1, what="subscribe")
        stories = [story([a], T0), story([b, c], T0 + NS), story([a, b], T0 + 2 * NS), story([c], T0 + 3 * NS)]
        stories += [story([], T0 + 4 * NS), story([b, a, c], T0 + 5 * NS)]
        update = {**stories[2], "headline": "updated", "updated_at": T0 + 9 * NS}
        await live.publish(*stories, update)
        marker = story([a], T0 + 10 * NS)
        await live.publish(marker)
        wanted = [stories[0], stories[1], stories[2], stories[5], update, marker]
        got = await client.messages(len(wanted))
        as_ns = (
            (lambda m: m.to_unix_nano()) if use_msgpack else (lambda m: int(datetime.fromisoformat(m).timestamp()) * NS)
        )
        assert [(m["id"], m["headline"], as_ns(m["updated_at"])) for m in got] == [
            (w["id"], w["headline"], w["updated_at"]) for w in wanted
        ], "expected each story naming a or b once, in order, and nothing else"
        assert all("S" not in m and "t" not in m and m["T"] == "n" for m in got)
        assert [m["symbols"] for m in got] == [w["symbols"] for w in wanted]
    finally:
        await client.close()


async def test_alpaca_py_news_clients_get_every_story_of_their_subscription_once(
    news_api: ApiServer, live: NewsLive
) -> None:
    a, b = unique_ticker(), unique_ticker()
    hub = news_api.app.state.api.hub
    url = news_url(news_api)
    async with (
        alpaca_stream(NewsDataStream, url, lambda stream, handler: stream.subscribe_news(handler, "*")) as everything,
        alpaca_stream(NewsDataStream, url, lambda stream, handler: stream.subscribe_news(handler, a)) as only_a,
    ):
        await wait_for(
            lambda: hub.clients_of(NEWS_STREAM, "*") >= 1 and hub.clients_of(NEWS_STREAM, a) == 1,
            what="both alpaca-py news clients to subscribe",
        )
        stories = [story([a, b], T0 + n * NS) if n % 3 == 0 else story([b] if n % 3 == 1 else [], T0 + n * NS)
                   for n in range(30)]  # fmt: skip
        await live.publish(*stories)
        markers = [story([a], T0 + 100 * NS)]
        await live.publish(*markers)
        await wait_for(lambda: len(only_a) >= 11, what="the stories naming a and the marker")
        await wait_for(
            lambda: any(isinstance(m, News) and m.id == markers[0]["id"] for m in everything), what="the marker"
        )
    # Other tests publish news too: the '*' client's stories of this test, in order, each once.
    mine = {s["id"] for s in (*stories, *markers)}
    assert [m.model_dump() for m in everything if m.id in mine] == [model_of(s) for s in (*stories, *markers)]
    assert all(isinstance(m, News) for m in only_a)
    assert [m.id for m in only_a] == [s["id"] for s in (*stories, *markers) if a in s["symbols"]]


async def test_the_news_feed_not_configured_says_so_and_closes(migrated_db: str, redis_url: str) -> None:
    async with running_api(api_settings(migrated_db, redis_url, alpaca_feeds="stocks")) as server:
        stream = NewsDataStream("any-key", "any-secret", url_override=news_url(server))
        try:
            await stream._connect()
            with pytest.raises(ValueError, match="insufficient subscription"):
                await stream._auth()
        finally:
            await stream.close()
