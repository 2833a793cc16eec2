"""The news feed: its declaration, the simulator's news wire, its stream on ``/v1beta1/news`` and its REST history."""

from __future__ import annotations

import asyncio
import threading
import warnings
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest

from simulator import DEFAULT_START_NS, Simulator, SimulatorConfig
from simulator.config import NEWS_FEEDS, STREAMS
from simulator.news import FIRST_ID, NewsMarket
from simulator.server import feed_of
from simulator.subscriptions import NEWS_CHANNELS, Subscriptions
from tests.helpers.simulator import StreamClient
from tests.helpers.waiting import wait_for
from tickpipe.codecs import decode_message, parse_rfc3339_ns
from tickpipe.feeds import FEEDS, NEWS
from tickpipe.news_events import NEWS_EVENT_TYPES, NewsStory

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated since 14
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.historical.news import NewsClient
    from alpaca.data.live.news import NewsDataStream
    from alpaca.data.models.news import News
    from alpaca.data.requests import NewsRequest

(WIRE,) = NEWS_FEEDS  # "news/news"
SYMBOLS = ("AAPL", "TSLA", "MSFT", "NVDA")
#: Fast enough that a test sees many stories (updates and several-symbol ones among them) in a second.
CONFIG = SimulatorConfig(symbols=SYMBOLS, news_rate=200, start_ns=DEFAULT_START_NS, record=True, feed=WIRE)
NS = 1_000_000_000


def test_the_news_feed_declares_alpacas_path_channel_and_code() -> None:
    assert NEWS.listed == ("news",) and NEWS.family_of == {"n": "news"} and NEWS.word_of == {"n": "news"}
    assert [NEWS.path.format(variant=v) for v in NEWS.variants] == ["/v1beta1/news"] == [NEWS.stream_path]
    assert NEWS.route("news") == "/news" and NEWS.family("news").topic() == "tickpipe.news"
    assert NEWS.family("news").key == "news_id" and NEWS.family("news").channels == "symbols"
    assert NEWS in FEEDS and [family.table for family in NEWS.tables] == ["news"]
    assert STREAMS[WIRE] == (NEWS, "/v1beta1/news") and feed_of("/v1beta1/news") == WIRE
    assert {"n": NewsStory} == NEWS_EVENT_TYPES


def test_a_story_decodes_from_alpacas_json_and_msgpack_alike() -> None:
    created, updated = 1_641_420_037 * NS, 1_641_420_038 * NS
    message = {
        "T": "n", "id": 24918784, "headline": "Corsair Reports Purchase", "summary": "s", "author": "Benzinga Newsdesk",
        "created_at": "2022-01-05T22:00:37Z", "updated_at": "2022-01-05T22:00:38Z", "url": "https://x/1",
        "content": "<p>c</p>", "symbols": ["CRSR", "AAPL"], "source": "benzinga",
    }  # fmt: skip
    story: Any = decode_message(message, 5, NEWS_EVENT_TYPES)  # typed as a stock event, as every registry's
    assert story == NewsStory(
        news_id=24918784, headline="Corsair Reports Purchase", summary="s", author="Benzinga Newsdesk",
        created_at=created, updated_at=updated, url="https://x/1", content="<p>c</p>", symbols=("CRSR", "AAPL"),
        source="benzinga", received_at=5,
    )  # fmt: skip
    packed = {**message, "created_at": msgpack.Timestamp.from_unix_nano(created)}
    packed["updated_at"] = msgpack.Timestamp.from_unix_nano(updated)
    assert decode_message(packed, 5, NEWS_EVENT_TYPES) == story
    assert story.timestamp == created and story.family == "news"


def test_the_news_wire_makes_stories_of_none_one_or_several_symbols_and_updates_of_earlier_ones() -> None:
    market = NewsMarket(SYMBOLS, 3, start_ns=DEFAULT_START_NS)
    sent = market.advance(400, DEFAULT_START_NS + 600 * NS)
    again = NewsMarket(SYMBOLS, 3, start_ns=DEFAULT_START_NS).advance(400, DEFAULT_START_NS + 600 * NS)
    assert sent == again, "expected the same seed to make the same stories"
    counts = {len(story["symbols"]) for story in sent}
    assert {0, 1} <= counts and max(counts) >= 2
    assert all(set(story["symbols"]) <= set(SYMBOLS) for story in sent)
    first: dict[int, dict[str, Any]] = {}
    updates = 0
    for story in sent:
        assert story["created_at"] % NS == 0 and story["updated_at"] % NS == 0, "whole seconds, as Alpaca's"
        assert story["id"] >= FIRST_ID and story["T"] == "n"
        earlier = first.get(story["id"])
        if earlier is None:
            first[story["id"]] = story
            assert story["updated_at"] == story["created_at"]
        else:
            updates += 1
            assert story["created_at"] == earlier["created_at"] and story["updated_at"] > earlier["updated_at"]
            earlier.update(story)
    assert updates > 0, "expected some updates of earlier stories"
    assert {i: s["updated_at"] for i, s in market.stories.items()} == {i: s["updated_at"] for i, s in first.items()}


def test_a_news_subscription_takes_tickers_and_star_and_wants_a_story_by_any_symbol_it_names() -> None:
    subs = Subscriptions(NEWS_CHANNELS)
    subs.change({"action": "subscribe", "news": ["AAPL"]})
    assert subs.listing() == {"news": ["AAPL"]}
    assert subs.wants({"T": "n", "id": 1, "symbols": ["TSLA", "AAPL"]})
    assert not subs.wants({"T": "n", "id": 2, "symbols": ["TSLA"]})
    assert not subs.wants({"T": "n", "id": 3, "symbols": []}), "a story naming none goes to '*' only"
    subs.change({"action": "subscribe", "news": ["*"]})
    assert subs.wants({"T": "n", "id": 3, "symbols": []})


async def test_the_news_stream_sends_each_story_once_with_the_symbols_asked_json_times_in_rfc3339() -> None:
    async with Simulator(CONFIG) as sim, StreamClient.connect(sim.url) as client:
        assert await client.recv() == [{"T": "success", "msg": "connected"}]
        await client.send({"action": "auth", "key": "k", "secret": "s"})
        assert await client.recv() == [{"T": "success", "msg": "authenticated"}]
        await client.send({"action": "subscribe", "news": ["AAPL", "TSLA"]})
        assert await client.recv() == [{"T": "subscription", "news": ["AAPL", "TSLA"]}]
        got: list[dict[str, Any]] = []
        while len(got) < 40:
            got += await client.recv()
        for story in got:
            assert {"AAPL", "TSLA"} & set(story["symbols"]), "expected only stories naming a subscribed symbol"
            assert story["created_at"].endswith("Z") and "S" not in story and "t" not in story
            decode_message(story, 0, NEWS_EVENT_TYPES)  # every field as Alpaca's
        versions = [(story["id"], story["updated_at"]) for story in got]
        assert len(versions) == len(set(versions)), "expected each version of a story once, whatever it names"
        assert any(len(set(story["symbols"]) & {"AAPL", "TSLA"}) == 2 for story in got) or len(got) >= 40


class NewsThread:
    """alpaca-py's NewsDataStream (msgpack, its default) on a thread of its own."""

    def __init__(self, url: str) -> None:
        self.stream = NewsDataStream("key", "secret", url_override=url)
        self.stream._reconnect_min_backoff = 0.05
        self.received: list[Any] = []
        self.thread = threading.Thread(target=self.stream.run, name="alpaca-news-stream", daemon=True)

    async def handler(self, message: Any) -> None:
        self.received.append(message)

    async def stop(self, sim: Simulator) -> None:
        if self.stream._loop is not None and self.thread.is_alive():
            await asyncio.to_thread(self.stream.stop)
        for session in sim.sessions:
            session.close(1001, "test over")
        await asyncio.to_thread(self.thread.join, 15)
        assert not self.thread.is_alive(), "expected the alpaca-py stream thread to end"


def _model_of(story: dict[str, Any]) -> dict[str, Any]:
    """What alpaca-py's News holds of a story the simulator sent (times as aware datetimes)."""
    return {
        **{k: v for k, v in story.items() if k not in ("T", "created_at", "updated_at")},
        "created_at": datetime.fromtimestamp(story["created_at"].to_unix_nano() // NS, UTC),
        "updated_at": datetime.fromtimestamp(story["updated_at"].to_unix_nano() // NS, UTC),
    }


async def test_alpaca_py_news_stream_gets_every_story_sent_as_its_news_model() -> None:
    async with Simulator(CONFIG) as sim:
        client = NewsThread(sim.url)
        client.stream.subscribe_news(client.handler, "*")
        client.thread.start()
        try:
            await wait_for(lambda: len(client.received) >= 60, 60, "60 stories")
            await client.stop(sim)
            sent = [m for session in sim.sessions for m in session.sent_events()]
            assert all(isinstance(m, News) for m in client.received)
            # alpaca-py calls a '*' handler once per story, whatever it names: one News per story sent, in order.
            assert [m.model_dump(exclude={"images"}) for m in client.received] == [_model_of(s) for s in sent]
            assert any(not s["symbols"] for s in sent) and any(len(s["symbols"]) > 1 for s in sent)
        finally:
            if client.thread.is_alive():
                await client.stop(sim)


async def test_alpaca_py_news_client_reads_the_history_of_what_was_streamed() -> None:
    async with Simulator(CONFIG) as sim:
        async with StreamClient.connect(sim.url) as client:
            await client.recv()
            await client.send({"action": "auth", "key": "k", "secret": "s"})
            await client.recv()
            await client.send({"action": "subscribe", "news": ["*"]})
            await client.recv()
            streamed: list[dict[str, Any]] = []
            while len({s["created_at"] for s in streamed}) < 3:  # stories of three seconds at least
                streamed += await client.recv()
        latest = {story["id"]: story for story in streamed}  # the last version sent of each story
        start = min(parse_rfc3339_ns(s["created_at"]) for s in streamed)
        # A second before the newest: a story made later in that same second cannot join the window meanwhile.
        end = max(parse_rfc3339_ns(s["created_at"]) for s in streamed) - NS
        news = NewsClient("key", "secret", url_override=sim.rest_url)
        start_at = datetime.fromtimestamp(start // NS, UTC)
        end_at = datetime.fromtimestamp(end // NS, UTC)
        request = NewsRequest(symbols="AAPL", start=start_at, end=end_at, include_content=True)
        found = await asyncio.to_thread(news.get_news, request)
        items = found.data["news"]  # type: ignore[union-attr]
        about = [
            s for s in sim.news_stories(WIRE).values() if "AAPL" in s["symbols"] and start <= s["created_at"] <= end
        ]
        assert sorted(m.id for m in items) == sorted(s["id"] for s in about), "every page, each story once"
        for model in items:
            assert "AAPL" in model.symbols
            if model.id in latest and latest[model.id]["updated_at"] == model.updated_at.isoformat().replace(
                "+00:00", "Z"
            ):
                assert model.headline == latest[model.id]["headline"] and model.content == latest[model.id]["content"]
        stamps = [(m.created_at, m.id) for m in items]
        assert stamps == sorted(stamps, reverse=True), "newest first, as Alpaca's default"


async def test_the_news_history_pages_by_its_token_each_story_once() -> None:
    import httpx

    keys = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
    async with Simulator(CONFIG) as sim, httpx.AsyncClient(base_url=sim.rest_url, headers=keys) as http:
        await wait_for(lambda: len(sim.news_stories(WIRE)) >= 30, 30, "30 stories")
        stories = sim.news_stories(WIRE)
        end = max(s["created_at"] for s in stories.values()) - NS  # no story made later falls in the window
        params = {"symbols": "MSFT,NVDA", "start": "2000-01-01", "limit": "3", "sort": "asc"}
        params["end"] = datetime.fromtimestamp(end // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pages: list[dict[str, Any]] = []
        while True:
            answer = (await http.get("/v1beta1/news", params=params)).json()
            assert len(answer["news"]) <= 3
            pages += answer["news"]
            if answer["next_page_token"] is None:
                break
            params["page_token"] = answer["next_page_token"]
        wanted = sorted(
            (s for s in stories.values() if {"MSFT", "NVDA"} & set(s["symbols"]) and s["created_at"] <= end),
            key=lambda s: (s["created_at"], s["id"]),
        )
        assert [item["id"] for item in pages] == [s["id"] for s in wanted]
        assert all(item["content"] == "" for item in pages), "content only with include_content=true"


@pytest.mark.parametrize(
    ("query", "status"),
    [("limit=51", 422), ("limit=x", 400), ("sort=up", 400), ("colour=red", 400), ("page_token=%25", 400)],
)
async def test_the_news_history_refuses_bad_parameters_as_alpaca(query: str, status: int) -> None:
    import httpx

    async with Simulator(CONFIG) as sim, httpx.AsyncClient(base_url=sim.rest_url) as http:
        answer = await http.get(f"/v1beta1/news?{query}", headers={"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"})
        assert answer.status_code == status, answer.text
        assert "message" in answer.json()
        assert (await http.get("/v1beta1/news")).status_code == 401
