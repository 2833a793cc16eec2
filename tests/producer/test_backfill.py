"""Gaps in the stream filled from the REST API: after an upstream cut, PostgreSQL holds the whole run.

The simulator's market keeps running while nobody reads it, so a cut of the
upstream connection loses real events; the producer must fetch them from the
simulator's REST API into Kafka (marked ``_b``), and the consumers must store
each event once, whichever source brought it. Every comparison is against
the simulator's own REST history of the run's window: 0 missing, 0 extra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from producer.backfill import is_backfilled
from producer.service import ProducerService
from simulator import Faults, Simulator
from simulator.history import History
from tests.helpers.producer import (
    MINUTE,
    RATE,
    SECOND,
    compare_run,
    drain_into_postgres,
    market_runs_on,
    market_start,
    producer_settings,
    read_topics,
    ready,
    running,
)
from tests.helpers.waiting import wait_for
from tickpipe.codecs import decode_kafka, event_key
from tickpipe.dev.tcp_proxy import TcpProxy


@pytest.fixture
def symbols(unique_symbol: Callable[[], str]) -> list[str]:
    return sorted({unique_symbol() for _ in range(4)})


async def test_an_upstream_cut_is_filled_from_the_rest_api_exactly_once(
    kafka_bootstrap: str, redis_url: str, clean_db: str, topic_prefix: str, tmp_path: Path, symbols: list[str]
) -> None:
    async with Simulator(rate=RATE, symbols=tuple(symbols), start_ns=market_start(12), seed=7) as sim:
        history = sim.history("iex")
        assert isinstance(history, History)
        async with TcpProxy("127.0.0.1", sim.port) as proxy:
            settings = producer_settings(
                kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", proxy.rewrite(sim.url),
                alpaca_data_url=sim.rest_url, subscribed_types="quotes,trades,bars,updatedBars",
                backfill_enabled=True, backfill_quotes=True, backfill_margin_s=2.0,
            )  # fmt: skip
            service = ProducerService(settings)
            gaps = service.gaps
            assert gaps is not None and service.backfiller is not None
            async with running(service):
                await ready(service)
                await wait_for(lambda: service.upstream.events >= 100, what="100 streamed events")
                await proxy.cut()
                missed = await market_runs_on(history)  # ~10 s of market while nobody reads it, bars close unseen
                await proxy.restore()
                await wait_for(lambda: gaps.gaps_seen >= 1, timeout=30, what="a gap to be seen")
                await wait_for(lambda: not gaps.gaps, timeout=60, what="the gap to be filled")
                streamed = service.upstream.events
                await wait_for(lambda: service.upstream.events >= streamed + 100, what="the stream to go on")
                health = await service.health()
            assert service.upstream.reconnects, "expected the cut to cause a reconnect"
            live = service.live  # stopped: every event it was given is published or counted as dropped
            assert live.published + sum(live.dropped.values()) == service.upstream.events, (
                "backfilled events must not reach the live Redis channels"
            )
        backfill = health["backfill"]
        assert backfill["gaps_seen"] == 1 and backfill["gaps_open"] == 0 and backfill["open_seconds"] == 0
        assert backfill["events"]["trades"] > 0 and backfill["events"]["quotes"] > 0 and backfill["events"]["bars"] > 0
        assert missed > 0

        # Kafka: backfilled records are marked, the stream's are not; the overlap (margins) holds both.
        topics = [f"{topic_prefix}{f}" for f in ("trades", "quotes", "bars")]
        records = await read_topics(kafka_bootstrap, topics)
        marked = [r for r in records if is_backfilled(r.value)]
        assert len(marked) == sum(backfill["events"].values())
        stream_keys = {event_key(decode_kafka(r.value)) for r in records if not is_backfilled(r.value)}
        overlap = [r for r in marked if event_key(decode_kafka(r.value)) in stream_keys]
        assert overlap, "expected the gap's margins to fetch some events the stream also sent"

        await drain_into_postgres(kafka_bootstrap, clean_db, topic_prefix, tmp_path / "consume.log")
        counts = await compare_run(clean_db, sim.rest_url, symbols, ("trades", "quotes", "bars"))
        assert all(counts.values()), counts


async def test_connections_dropped_by_the_silence_watchdog_are_filled_each_time(
    kafka_bootstrap: str, redis_url: str, clean_db: str, topic_prefix: str, tmp_path: Path, symbols: list[str]
) -> None:
    """Every connection goes quiet after 300 messages (the market does not): each silence is a gap."""
    faults = Faults(silent_after=300)
    async with Simulator(rate=RATE, symbols=tuple(symbols), start_ns=market_start(8), seed=5, faults=faults) as sim:
        history = sim.history("iex")
        assert isinstance(history, History)
        boundary = sim.start_ns - sim.start_ns % MINUTE + MINUTE
        settings = producer_settings(
            kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim.url, alpaca_data_url=sim.rest_url,
            subscribed_types="quotes,trades,bars,updatedBars", backfill_enabled=True, backfill_quotes=True,
            backfill_margin_s=2.0, upstream_silence_timeout_s=1.0,
        )  # fmt: skip
        service = ProducerService(settings)
        gaps = service.gaps
        assert gaps is not None
        async with running(service):
            await wait_for(
                lambda: gaps.gaps_seen >= 2 and not gaps.gaps and gaps.watermark >= boundary + 2 * SECOND,
                timeout=90, what="two silences filled and the producer past a minute's end",
            )  # fmt: skip
            health = await service.health()
        assert service.upstream.reconnects["silence"] >= 2
        backfill = health["backfill"]
        assert backfill["gaps_seen"] >= 2 and backfill["open_seconds"] == 0 and backfill["last_error"] is None
        await drain_into_postgres(kafka_bootstrap, clean_db, topic_prefix, tmp_path / "consume.log")
        counts = await compare_run(clean_db, sim.rest_url, symbols, ("trades", "quotes", "bars"))  # simulator still up
        assert all(counts.values()), counts
