"""The producer carrying the news feed: ``tickpipe producer --feed news`` against the simulator's
``/v1beta1/news``, into real Kafka and Redis.

Counts are exact: every story the simulator sent on the producer's connection (updates included) is one
record of ``tickpipe.news``, keyed by the story's id, and one message on the channel of each symbol it
names (``news:`` for a story naming none), in order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import msgspec
import orjson

from producer.cli import feed_of
from producer.service import ProducerService
from producer.transcode import feed_transcoder
from simulator import Faults, Simulator
from tests.helpers.news_live import FEED, news_config, news_settings
from tests.helpers.news_live import sent_stories as sent_on
from tests.helpers.producer import RedisCollector, read_topics, running
from tests.helpers.waiting import wait_for
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.dlq import decode_dead_letter
from tickpipe.feeds import NEWS
from tickpipe.news_events import NewsStory
from tickpipe.settings import load_settings

_story = msgspec.msgpack.Decoder(NewsStory)


async def test_every_story_is_one_record_keyed_by_its_id_and_on_each_of_its_symbols_channels(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    stories = 600
    async with Simulator(news_config(max_events=stories)) as sim, RedisCollector(redis_url, [], ["news:*"]) as channels:
        settings = news_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim)
        service = ProducerService(settings, feed=NEWS)
        assert service.upstream.options.url == sim.url_for(FEED) and service.upstream.options.url.endswith(
            "/v1beta1/news"
        )
        assert service.upstream.options.channels == ("news",)
        assert service.spool.directory == tmp_path / "spool" / "news"
        sent_channels = 0
        async with running(service):
            await wait_for(lambda: service.upstream.events == stories, 60, "every story read")
            await wait_for(lambda: service.durable.stats.acked == stories, 60, "Kafka acknowledged every story")
            sent = sent_on(sim)
            sent_channels = sum(max(1, len(m["symbols"])) for m in sent)
            await wait_for(lambda: channels.total == sent_channels, 30, "every story on each of its channels")
            hashes = await service.redis.keys("latest:news*")
    assert hashes == [], "expected no snapshot hash of stories (Alpaca sends none on subscribe)"
    assert len(sent) == stories == sim.sent_total
    versions = Counter(m["id"] for m in sent)
    assert any(n > 1 for n in versions.values()), "expected updates of earlier stories among them"
    assert any(not m["symbols"] for m in sent) and any(len(m["symbols"]) > 1 for m in sent)

    records = await read_topics(kafka_bootstrap, [f"{topic_prefix}news"], expected=stories)
    assert len(records) == stories, "exactly once"
    got = Counter((r.key, msgspec.structs.replace(_story.decode(r.value), received_at=0)) for r in records)
    expected = Counter((str(m["id"]).encode(), msgspec.convert({**m}, NewsStory)) for m in sent)
    assert got == expected, "expected each story sent, with its values, keyed by its id"
    # Every version of a story is in one partition, in the order sent: the last one stored wins.
    by_id: dict[bytes, set[int]] = {}
    for record in records:
        by_id.setdefault(record.key or b"", set()).add(record.partition)
    assert all(len(partitions) == 1 for partitions in by_id.values())

    wanted: dict[str, list[dict[str, Any]]] = {}
    for m in sent:
        shown = {
            **m,
            "created_at": format_rfc3339_ns(m["created_at"]),
            "updated_at": format_rfc3339_ns(m["updated_at"]),
        }
        for symbol in m["symbols"] or [""]:
            wanted.setdefault(f"news:{symbol}", []).append(shown)
    assert {name: [orjson.loads(p) for p in payloads] for name, payloads in channels.messages.items()} == wanted


async def test_a_malformed_news_frame_is_a_dead_letter_and_the_stream_goes_on(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    stories = 300
    async with Simulator(news_config(max_events=stories, faults=Faults(malformed_after=100))) as sim:
        settings = news_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim)
        service = ProducerService(settings, feed=NEWS)
        async with running(service):
            await wait_for(lambda: service.upstream.events == stories, 60, "every story read, after the bad frame")
            await wait_for(lambda: service.durable.stats.acked == stories + 1, 60, "stories and letter acknowledged")
        assert service.fanout.dead_letters == 1 and service.upstream.reconnects.total() == 0
    (letter,) = [decode_dead_letter(r.value) for r in await read_topics(kafka_bootstrap, [f"{topic_prefix}dlq"], 1)]
    assert letter.stage == "producer" and letter.source_topic.endswith("/v1beta1/news")
    assert len(await read_topics(kafka_bootstrap, [f"{topic_prefix}news"], expected=stories)) == stories


def test_a_story_without_a_field_alpaca_always_sends_is_rejected_whole_and_its_neighbours_kept() -> None:
    good = {
        "T": "n", "id": 7, "headline": "h", "summary": "", "author": "a", "url": None, "content": "",
        "symbols": ["AAPL"], "source": "benzinga",
        "created_at": msgpack.Timestamp(1_700_000_000, 0), "updated_at": msgpack.Timestamp(1_700_000_001, 0),
    }  # fmt: skip
    bad = {k: v for k, v in good.items() if k != "headline"} | {"id": 8}
    late = {**good, "id": 9, "created_at": "yesterday"}
    frame = msgpack.packb([good, bad, late])
    out = feed_transcoder(NEWS)(frame, 5)
    assert [event.symbol for event in out.events] == ["7"] and out.events[0].channels == ("AAPL",)
    assert out.events[0].timestamp == 1_700_000_000 * 10**9
    assert [(r.error.field, msgpack.unpackb(r.raw, timestamp=0)["id"]) for r in out.rejected] == [
        ("headline", 8),
        ("created_at", 9),
    ]
    kept = msgpack.unpackb(out.rejected[0].raw, timestamp=0)
    assert kept["created_at"] == msgpack.Timestamp(1_700_000_000, 0), "the dead letter keeps the times as sent"


def test_alpaca_feeds_accepts_news_and_its_settings_derive_the_url_spool_and_port() -> None:
    settings = load_settings(alpaca_feeds="stocks,news", simulator_port=9000, spool_dir=Path("/tmp/sp"))
    assert settings.feeds[1] is NEWS and feed_of("news") is NEWS
    assert settings.upstream_url_for(NEWS) == "ws://127.0.0.1:9000/v1beta1/news"
    assert settings.spool_path_for(NEWS) == Path("/tmp/sp/news") and settings.admin_port_for(NEWS) == 8085
    assert settings.symbols_for(NEWS) == ["*"] and load_settings(news_symbols="aapl, tsla").news_symbols == [
        "AAPL",
        "TSLA",
    ]
    alpaca = load_settings(alpaca_api_key="k", alpaca_api_secret="s")
    assert alpaca.upstream_url_for(NEWS) == "wss://stream.data.alpaca.markets/v1beta1/news"
