"""Gaps in the option stream filled from the option REST history: after an upstream cut, ``options_trades``
in PostgreSQL holds exactly the simulator's REST history of the run's window, each trade one row.

As the crypto backfill (``test_crypto_backfill.py``), against the simulator's ``/v1beta1/indicative`` stream
(ALPACA_OPTIONS_FEED's default; the same market as ``/v1beta1/opra``) and its REST history
``/v1beta1/options/trades``, with real Kafka, Redis and PostgreSQL (the consumers in burst mode). In Kafka
each source brings a trade at most once, and the trades the stream missed are there once (backfilled); the
trades of the gap's margins come from both and are one row (the content hash keys them). Option quotes have
no REST history: the gap leaves them missing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from consumers.service import ConsumerService
from producer.backfill import is_backfilled
from producer.service import ProducerService
from simulator import Simulator
from simulator.history import History
from tests.helpers.consumers import consumer_settings, fetch_events
from tests.helpers.options import CONTRACTS, FEED, option_config, option_settings, option_topics
from tests.helpers.producer import forget_snapshots, read_topics, ready, rest_events, running
from tests.helpers.waiting import wait_for
from tickpipe.dev.tcp_proxy import TcpProxy
from tickpipe.feeds import OPTIONS
from tickpipe.option_events import AnyOptionEvent, OptionTrade

_decoder = msgspec.msgpack.Decoder(AnyOptionEvent)


def content(event: Any) -> bytes:
    """An option event without its receive time: what the stream, the REST history and a row share."""
    return msgspec.msgpack.encode(msgspec.structs.replace(event, received_at=0))


async def test_an_option_stream_cut_is_filled_so_postgres_holds_exactly_the_rest_history(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, clean_db: str, tmp_path: Path
) -> None:
    async with Simulator(option_config(rate=2000, record=False)) as sim:
        history = sim.history(FEED)
        assert isinstance(history, History)
        async with TcpProxy("127.0.0.1", sim.port) as proxy:
            settings = option_settings(
                kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", proxy.rewrite(sim.url_for("iex")),
                alpaca_options_feed="indicative", alpaca_data_url=sim.rest_url, backfill_enabled=True,
                backfill_margin_s=2.0,
            )  # fmt: skip
            service = ProducerService(settings, feed=OPTIONS)
            gaps, backfiller = service.gaps, service.backfiller
            assert gaps is not None and backfiller is not None
            assert service.resources == ["trades"] and service.upstream.options.url.endswith("/v1beta1/indicative")
            assert backfiller.client.path == "/v1beta1/options/{history}" and backfiller.client.feed is None
            async with running(service):
                await ready(service)
                await wait_for(lambda: service.upstream.events >= 3_000, 30, "3000 streamed option events")
                await proxy.cut()
                made = history.recorded  # trades: the option history keeps no quotes
                await wait_for(lambda: history.recorded >= made + 300, 60, "300 option trades nobody reads")
                await proxy.restore()
                await wait_for(lambda: gaps.gaps_seen >= 1, 30, "a gap to be seen")
                await wait_for(lambda: not gaps.gaps, 60, "the gap to be filled")
                streamed = service.upstream.events
                await wait_for(lambda: service.upstream.events >= streamed + 2_000, 30, "the stream to go on")
                await wait_for(lambda: service.spool.depth == 0, 60, "the spool replayed into Kafka")
                health = await service.health()
            assert service.upstream.reconnects, "expected the cut to cause a reconnect"
            live = service.live
            assert live.published + sum(live.dropped.values()) == service.upstream.events, (
                "backfilled trades must not reach the live Redis channels"
            )
            acked = service.durable.stats.acked
        await forget_snapshots(redis_url, OPTIONS)

        backfill = health["backfill"]
        assert backfill["enabled"] and backfill["resources"] == ["trades"] and backfill["gaps_seen"] == 1
        assert backfill["gaps_open"] == 0 and backfill["last_error"] is None and backfill["unreadable"] == 0
        assert set(backfill["events"]) == {"trades"} and backfill["events"]["trades"] > 0

        # Kafka: every record offered is there once; each source brings a trade at most once.
        records = await read_topics(kafka_bootstrap, option_topics(topic_prefix), expected=acked)
        assert len(records) == acked
        marked = [r for r in records if is_backfilled(r.value)]
        assert len(marked) == backfill["events"]["trades"], "every backfilled trade counted, end to end"
        assert {r.topic for r in marked} == {f"{topic_prefix}options.trades"}, "option quotes have no history"
        trades = {
            source: [
                _decoder.decode(r.value) for r in records if r.topic.endswith(".trades") and is_backfilled(r.value) == b
            ]
            for source, b in (("stream", False), ("rest", True))
        }
        assert all(r.key == _decoder.decode(r.value).symbol.encode() for r in marked)
        for source, events in trades.items():
            assert max(Counter(map(content, events)).values()) == 1, f"expected the {source} to bring a trade once"

        # The run's window: the stream's first trade to its last; in it, the table is the REST history.
        first = min(e.timestamp for e in trades["stream"])
        last = max(e.timestamp for e in trades["stream"])
        want = Counter(
            map(content, await rest_events(sim.rest_url, "trades", list(CONTRACTS), first, last, of=OPTIONS))
        )
    assert max(want.values()) == 1, "expected no two option trades alike in the simulator's history"

    stats = await ConsumerService(
        consumer_settings(kafka_bootstrap, clean_db, topic_prefix), ["options_trades"], burst=True, admin=False
    ).run()
    assert stats["options_trades"].dead_letters == 0
    rows = [e for e in await fetch_events(clean_db, "options_trades") if first <= e.timestamp <= last]
    assert all(isinstance(e, OptionTrade) for e in rows)
    have = Counter(map(content, rows))
    missing, extra = set(want) - set(have), set(have) - set(want)
    assert not missing and not extra, f"options_trades: {len(missing)} missing, {len(extra)} extra of {len(want)}"
    assert len(rows) == len(want), "expected each trade of the window to be one row"

    stream = set(map(content, trades["stream"]))
    missed = set(want) - stream
    assert missed, "expected the cut to lose trades on the stream"
    assert missed <= set(map(content, trades["rest"])), "expected each trade the stream missed to be backfilled"
    assert stream & set(map(content, trades["rest"])), "expected the gap's margins to fetch some streamed trades"
