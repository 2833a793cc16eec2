"""The news feed end to end: the simulator's ``/v1beta1/news`` -> producer -> Apache Kafka -> consumers ->
PostgreSQL, every story the simulator sent stored once in its latest version, field for field.

Counted from the simulator's own record of what it sent (``record=True``): N messages (stories and
updates of them) are N records, and the table holds one row per story id, the version with the newest
``updated_at``; a new consumer group reading everything again changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from consumers.service import ConsumerService, tables_for
from producer.service import ProducerService
from simulator import Simulator
from tests.helpers.consumers import count_rows, fetch_events
from tests.helpers.news_live import news_config, news_settings, sent_stories
from tests.helpers.producer import running
from tests.helpers.waiting import wait_for
from tickpipe.feeds import NEWS
from tickpipe.news_events import NewsStory


def _stored(story: Any) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(story, received_at=0))


async def test_every_story_sent_is_one_row_in_its_latest_version_and_a_replay_changes_nothing(
    kafka_bootstrap: str, redis_url: str, clean_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    messages = 1_500
    async with Simulator(news_config(max_events=messages)) as sim:
        settings = news_settings(
            kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim, database_url=clean_db,
            alpaca_feeds="stocks,news",
        )  # fmt: skip
        producer = ProducerService(settings, feed=NEWS)
        async with running(producer):
            await wait_for(lambda: producer.durable.stats.acked == messages, 90, "Kafka acknowledged every story")
    sent = sent_stories(sim)
    assert len(sent) == messages == sim.sent_total
    assert "news" in tables_for("all", settings.feeds)

    stats = await ConsumerService(settings, ["news"], burst=True, admin=False).run()
    assert stats["news"].records == messages and stats["news"].dead_letters == 0
    latest: dict[int, NewsStory] = {}
    for message in sent:  # in the order sent: a later version of a story is newer
        story = msgspec.convert(message, NewsStory)
        assert story.news_id not in latest or story.updated_at > latest[story.news_id].updated_at
        latest[story.news_id] = story
    assert len(latest) < messages, "expected updates of earlier stories among the messages"
    got = await fetch_events(clean_db, "news")
    assert len(got) == len(latest), f"expected one row per story, {len(latest)}, got {len(got)}"
    assert sorted(map(_stored, got)) == sorted(map(_stored, latest.values())), "each story's latest version"

    again = await ConsumerService(settings, ["news"], burst=True, admin=False, group=f"{topic_prefix}replay").run()
    assert again["news"].records == messages
    assert await count_rows(clean_db, "news") == len(latest)
    assert sorted(map(_stored, await fetch_events(clean_db, "news"))) == sorted(map(_stored, latest.values()))
