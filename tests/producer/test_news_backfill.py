"""Gaps in the news stream filled from the news REST history: after an upstream cut, ``news`` in PostgreSQL
holds exactly the simulator's REST history of the run's window, each story one row in its latest version.

As the option backfill (``test_options_backfill.py``), against the simulator's ``/v1beta1/news`` stream and
its REST history (the same path), with real Kafka, Redis and PostgreSQL (the consumers in burst mode). The
producer subscribes to ``*`` (NEWS_SYMBOLS' default), so the gap is the whole feed's window, asked for no
symbols. Stories the stream missed are in Kafka once (backfilled); a story updated while the stream was cut
comes from REST in its latest version, and the table's newer-``updated_at`` rule keeps whichever version of
a story is newest, whatever order its records come in.

The window's end: the simulator updates only its last :data:`simulator.news.RECENT` stories, so a story made
before the RECENT-th newest one the producer read is final (its latest version can no longer change while the
test compares); the window ends a second before that story (times are whole seconds) and begins a second
after the first story read (stories of that second made before the producer subscribed are no gap's).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from consumers.service import ConsumerService
from producer.backfill import is_backfilled
from producer.gaps import EVERY
from producer.service import ProducerService
from simulator import Simulator
from simulator.news import RECENT
from tests.helpers.consumers import consumer_settings, fetch_events
from tests.helpers.news_live import FEED, news_config
from tests.helpers.producer import producer_settings, read_topics, ready, rest_events, running
from tests.helpers.waiting import wait_for
from tickpipe.dev.tcp_proxy import TcpProxy
from tickpipe.feeds import NEWS
from tickpipe.news_events import NewsStory

NS = 1_000_000_000
_story = msgspec.msgpack.Decoder(NewsStory)


def content(story: Any) -> bytes:
    """A story without its receive time: what the stream, the REST history and a row share."""
    return msgspec.msgpack.encode(msgspec.structs.replace(story, received_at=0))


async def test_a_news_stream_cut_is_filled_so_postgres_holds_exactly_the_rest_history(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, clean_db: str, tmp_path: Path
) -> None:
    async with Simulator(news_config(news_rate=300, record=False)) as sim:
        async with TcpProxy("127.0.0.1", sim.port) as proxy:
            settings = producer_settings(
                kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", proxy.rewrite(sim.url_for("iex")),
                alpaca_data_url=sim.rest_url, backfill_enabled=True, backfill_margin_s=2.0,
            )  # fmt: skip
            service = ProducerService(settings, feed=NEWS)
            gaps, backfiller = service.gaps, service.backfiller
            assert gaps is not None and backfiller is not None
            assert service.resources == ["news"] and service.upstream.options.url.endswith("/v1beta1/news")
            assert backfiller.client.path.format(history="news") == "/v1beta1/news" and backfiller.client.feed is None
            async with running(service):
                await ready(service)
                await wait_for(lambda: service.upstream.events >= 600, 30, "600 streamed stories")
                await proxy.cut()
                made = len(sim.news_stories(FEED))
                await wait_for(lambda: len(sim.news_stories(FEED)) >= made + 300, 30, "300 stories nobody reads")
                await proxy.restore()
                await wait_for(lambda: gaps.gaps_seen >= 1, 30, "a gap to be seen")
                assert [g.symbols for g in gaps.gaps] in ([[EVERY]], []), "expected the whole feed's window"
                await wait_for(lambda: not gaps.gaps, 60, "the gap to be filled")
                streamed = service.upstream.events
                await wait_for(lambda: service.upstream.events >= streamed + 3 * RECENT, 30, "the stream to go on")
                await wait_for(lambda: service.spool.depth == 0, 60, "the spool replayed into Kafka")
                health = await service.health()
            assert service.upstream.reconnects, "expected the cut to cause a reconnect"
            live = service.live
            assert live.published + sum(live.dropped.values()) == service.upstream.events, (
                "backfilled stories must not reach the live Redis channels"
            )
            acked = service.durable.stats.acked

        backfill = health["backfill"]
        assert backfill["enabled"] and backfill["resources"] == ["news"] and backfill["gaps_seen"] == 1
        assert backfill["gaps_open"] == 0 and backfill["last_error"] is None and backfill["unreadable"] == 0

        # Kafka: every record offered is there once, keyed by its story's id as the streamed ones.
        records = await read_topics(kafka_bootstrap, [f"{topic_prefix}news"], expected=acked)
        assert len(records) == acked
        marked = [r for r in records if is_backfilled(r.value)]
        assert len(marked) == backfill["events"]["news"] > 0, "every backfilled story counted, end to end"
        assert all(r.key == str(_story.decode(r.value).news_id).encode() for r in records)
        stories = {
            source: [_story.decode(r.value) for r in records if is_backfilled(r.value) == b]
            for source, b in (("stream", False), ("rest", True))
        }
        assert len(stories["stream"]) == service.upstream.events
        assert max(Counter(map(content, stories["rest"])).values()) == 1, "expected the REST to bring a version once"

        # The window in which every story is final (see the module's docstring); in it, the table is the REST history.
        read = sorted({(s.created_at, s.news_id) for s in stories["stream"]})
        first, last = read[0][0] + NS, read[-RECENT][0] - 1
        want = await rest_events(sim.rest_url, "news", [EVERY], first, last, of=NEWS)
    assert len({s.news_id for s in want}) == len(want) > 300, "expected one version per story in the REST history"
    assert any(s.updated_at > s.created_at for s in want), "expected updated stories in the window"

    stats = await ConsumerService(
        consumer_settings(kafka_bootstrap, clean_db, topic_prefix), ["news"], burst=True, admin=False
    ).run()
    assert stats["news"].dead_letters == 0
    rows = [s for s in await fetch_events(clean_db, "news") if first <= s.timestamp <= last]
    assert all(isinstance(s, NewsStory) for s in rows)
    have, expected = Counter(map(content, rows)), Counter(map(content, want))
    missing, extra = set(expected) - set(have), set(have) - set(expected)
    assert not missing and not extra, f"news: {len(missing)} missing, {len(extra)} extra of {len(want)}"
    assert len(rows) == len(want), "expected each story of the window to be one row, in its latest version"

    seen = {s.news_id for s in stories["stream"]}
    missed = {s.news_id for s in want} - seen
    assert missed, "expected the cut to lose stories on the stream"
    assert missed <= {s.news_id for s in stories["rest"]}, "expected each story the stream missed to be backfilled"
