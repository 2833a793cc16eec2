"""The consumers writing the news table, against the real broker and PostgreSQL.

The same worker code as every table, driven by the news declaration: N distinct stories on
``tickpipe.news`` give N rows of ``news``, field for field; a story re-sent with a newer ``updated_at``
replaces its row (in one batch as across batches), an older or equal one changes nothing, a replay
adds nothing; a story PostgreSQL cannot hold becomes a dead letter and its neighbours are stored.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from consumers.service import ConsumerService, tables_for
from tests.helpers.consumers import BASE_NS, NS, consumer_settings, count_rows, fetch_events, produce
from tests.helpers.producer import read_topics
from tickpipe.dlq import decode_dead_letter
from tickpipe.feeds import NEWS
from tickpipe.names import topic
from tickpipe.news_events import NewsStory
from tickpipe.settings import Settings

SYMBOLS = ("AAPL", "TSLA", "MSFT", "NVDA", "BRK.B")


@pytest.fixture
def settings(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, clean_db, topic_prefix)


def make_stories(count: int, seed: int = 11) -> list[NewsStory]:
    """Stories over two days, of none, one or several symbols, with quotes, HTML and unicode in their text."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        created = BASE_NS + i * 347 * NS  # whole seconds, as Alpaca's; the last ones on the next day
        named = tuple(rng.sample(SYMBOLS, rng.choice((0, 1, 1, 2, 3))))
        out.append(
            NewsStory(
                news_id=30_000_000 + i, headline=f'Story {i}: "{",".join(named)}" up 5% — {{x}}',
                summary="" if i % 7 else "first sentence", author="Benzinga Newsdesk", created_at=created,
                updated_at=created, url=None if i % 11 == 0 else f"https://example.com/{i}",
                content=f"<p>{i} \\ back'slash</p>", symbols=named, source="benzinga",
                received_at=created + 1_234_567 + i,
            )
        )  # fmt: skip
    return out


def updated(story: NewsStory, seconds: int, headline: str) -> NewsStory:
    return msgspec.structs.replace(story, updated_at=story.updated_at + seconds * NS, headline=headline)


def micro(story: NewsStory) -> NewsStory:
    """A story as its row gives it back: the receive time to the microsecond."""
    return msgspec.structs.replace(story, received_at=story.received_at // 1000 * 1000)


def same(got: list[Any], want: list[NewsStory]) -> bool:
    key = msgspec.msgpack.encode
    return sorted(map(key, got)) == sorted(key(micro(story)) for story in want)


async def produce_stories(settings: Settings, stories: list[NewsStory]) -> None:
    assert settings.kafka_bootstrap_servers is not None
    name = topic(NEWS.word("news"), settings.kafka_topic_prefix)
    records = [(str(s.news_id).encode(), msgspec.msgpack.encode(s)) for s in stories]
    await produce(settings.kafka_bootstrap_servers, settings, name, records)


def test_tickpipe_consume_writes_news_when_alpaca_feeds_names_it() -> None:
    assert "news" in tables_for("all") and tables_for("all", (NEWS,)) == ["news"]


async def test_n_stories_become_n_rows_updates_replace_and_a_replay_adds_none(settings: Settings) -> None:
    stories = make_stories(500)
    # Updates: some in the same batch as their story, one older than the stored version, one equal to it.
    newer = [updated(s, 60, f"{s.headline} (updated)") for s in stories[::10]]
    newest = [updated(s, 120, f"{s.headline} (updated twice)") for s in stories[::50]]
    older = [updated(s, -30, "an older version, sent late") for s in stories[1::50]]
    same_again = [msgspec.structs.replace(s, headline="equal updated_at: a redelivery") for s in stories[2::50]]
    sent = [*stories, *newer, *newest, *older, *same_again]
    await produce_stories(settings, sent)
    assert settings.database_url is not None

    stats = await ConsumerService(settings, ["news"], burst=True, admin=False).run()
    assert stats["news"].records == len(sent) and stats["news"].dead_letters == 0
    want = {s.news_id: s for s in stories}
    want |= {s.news_id: s for s in newer} | {s.news_id: s for s in newest}
    got = await fetch_events(settings.database_url, "news")
    assert len(got) == 500, "expected one row per story"
    assert same(got, list(want.values())), "expected each story's newest version, field for field"

    # A new group reads the topic again: nothing changes (every version is at most as new as the stored one).
    again = await ConsumerService(
        settings, ["news"], burst=True, admin=False, group=f"{settings.kafka_topic_prefix}replay"
    ).run()
    assert again["news"].records == len(sent)
    assert await count_rows(settings.database_url, "news") == 500
    assert same(await fetch_events(settings.database_url, "news"), list(want.values()))


async def test_a_story_postgresql_cannot_hold_is_a_dead_letter_and_the_rest_is_stored(settings: Settings) -> None:
    good = make_stories(10)
    nul = msgspec.structs.replace(good[0], news_id=1, content="a\x00b")
    blank = msgspec.structs.replace(good[0], news_id=2, headline="  ")
    too_late = msgspec.structs.replace(good[0], news_id=3, created_at=8_000_000_000 * NS)
    await produce_stories(settings, [*good[:5], nul, blank, too_late, *good[5:]])
    assert settings.database_url is not None and settings.kafka_bootstrap_servers is not None

    stats = await ConsumerService(settings, ["news"], burst=True, admin=False).run()
    assert stats["news"].rows_written == 10 and stats["news"].dead_letters == 3
    assert same(await fetch_events(settings.database_url, "news"), good)
    letters = [decode_dead_letter(r.value) for r in await read_topics(
        settings.kafka_bootstrap_servers, [f"{settings.kafka_topic_prefix}dlq"], expected=3)]  # fmt: skip
    assert sorted(letter.field for letter in letters) == ["content", "created_at", "headline"]
    assert all(letter.stage == "consumer" and letter.source_topic.endswith("news") for letter in letters)
