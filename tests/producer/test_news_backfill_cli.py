"""``tickpipe backfill --feed news``: the stories created in a window, from the news REST history into
``tickpipe.news``, then ``news``; what it refuses, in one line.

The command runs as a real process against the simulator's ``/v1beta1/news`` and a real broker; the
consumers write PostgreSQL. Without ``--symbols`` every story of the window is asked for (those naming no
symbol too), 50 a page. Every story is in Kafka once (marked backfilled, keyed by its id) and is one row in
its latest version; a second run adds no row and changes none.

The window ends before the simulator's last :data:`simulator.news.RECENT` stories (the only ones it still
updates), so the REST history of the window is the same when the test reads it and when the command does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers.service import ConsumerService
from producer.backfill import is_backfilled
from producer.backfill_cli import build_parser, job_from
from producer.gaps import EVERY
from simulator import Simulator
from simulator.news import RECENT
from tests.helpers.consumers import consumer_settings, count_rows, fetch_events
from tests.helpers.news_live import FEED, news_config
from tests.helpers.producer import backfill, read_topics, rest_events
from tests.helpers.waiting import wait_for
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.errors import TickpipeError
from tickpipe.feeds import NEWS
from tickpipe.news_events import NewsStory

_story = msgspec.msgpack.Decoder(NewsStory)


def test_the_news_feed_is_named_every_story_its_default_and_symbols_checked() -> None:
    parser = build_parser()
    window = ["--start", "2024-06-03", "--end", "2024-06-04"]
    job = job_from(parser.parse_args(["--feed", "news", *window]))
    assert job.feed is NEWS and job.symbols == [EVERY] and job.resources == ["news"]
    named = job_from(parser.parse_args(["--feed", "news", "--symbols", "tsla, AAPL", *window]))
    assert named.symbols == ["AAPL", "TSLA"] and named.name != job.name
    assert job_from(parser.parse_args(["--feed", "news", "--symbols", "*", *window])).symbols == [EVERY]
    cases = [
        (["--feed", "news", "--symbols", "AAPL$"], r"^--symbols: .*AAPL\$"),
        (["--feed", "news", "--types", "trades"], r"^--types: expected a comma subset of news"),
        ([], r"^--symbols: expected a comma list of the stock feed's symbols"),
        (["--feed", "options"], r"^--symbols: expected a comma list of the options feed's symbols"),
    ]
    for args, message in cases:
        with pytest.raises(TickpipeError, match=message):
            job_from(parser.parse_args([*args, *window]))


def _content(story: Any) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(story, received_at=0))


async def test_a_news_window_is_loaded_once_in_latest_versions_and_a_second_run_adds_no_row(
    kafka_bootstrap: str, clean_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with Simulator(news_config(news_rate=400, record=False)) as sim:
        await wait_for(lambda: len(sim.news_stories(FEED)) >= 1000, 60, "1,000 stories in the news history")
        made = list(sim.news_stories(FEED).values())  # in the order they were made
        start, end = sim.start_ns, made[-RECENT]["created_at"] - 1  # the stories no longer updated
        want = await rest_events(sim.rest_url, "news", [EVERY], start, end, of=NEWS)
        assert len(want) >= 300 and len({s.news_id for s in want}) == len(want)  # times are whole seconds
        assert any(s.updated_at > s.created_at for s in want) and any(not s.symbols for s in want)

        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC_PREFIX=topic_prefix, KAFKA_PARTITIONS="3",
            KAFKA_ENABLE_IDEMPOTENCE="false", ALPACA_DATA_URL=sim.rest_url, DATA_DIR=str(tmp_path / "data"),
        )  # fmt: skip
        args = ["--feed", "news", "--start", format_rfc3339_ns(start), "--end", format_rfc3339_ns(end)]
        code, out = await backfill(env, *args, "--checkpoint", str(tmp_path / "run.json"))
        assert code == 0, out
        assert f"backfill: {len(want)} events sent to Kafka" in out, out

        topic = f"{topic_prefix}news"
        records = await read_topics(kafka_bootstrap, [topic], expected=len(want))
        assert len(records) == len(want) and all(is_backfilled(r.value) for r in records)
        assert all(r.key == str(_story.decode(r.value).news_id).encode() for r in records)

        settings = consumer_settings(kafka_bootstrap, clean_db, topic_prefix)
        stats = await ConsumerService(settings, ["news"], burst=True, admin=False).run()
        assert stats["news"].dead_letters == 0
        got = await fetch_events(clean_db, "news")
        assert sorted(map(_content, got)) == sorted(map(_content, want)), "expected each story as one row, latest"

        code, out = await backfill(env, *args, "--checkpoint", str(tmp_path / "run.json"))  # finished: starts over
        assert code == 0, out
        await read_topics(kafka_bootstrap, [topic], expected=2 * len(want))
        again = await ConsumerService(settings, ["news"], burst=True, admin=False).run()
        assert again["news"].records == len(want) and again["news"].rows_written == 0
        assert await count_rows(clean_db, "news") == len(want)
