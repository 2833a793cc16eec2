"""A producer SIGKILLed and restarted ~10 s later: its gap state file brings back exactly what it missed.

The producer runs as a real process. SIGKILL loses whatever it held in
memory (records Kafka had not acknowledged yet) and the ~10 s the market
made while no producer ran; the restarted producer reads the last stream
position it wrote (only once the records before it were safe), and fills
the window from the simulator's REST API. Afterwards PostgreSQL holds
exactly the REST history of the whole run: trades, minute bars and quotes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator import Simulator
from simulator.history import History
from tests.helpers.producer import RATE, ProducerProcess, compare_run, drain_into_postgres, market_runs_on, market_start
from tests.helpers.waiting import wait_for


@pytest.fixture
def symbols(unique_symbol: Callable[[], str]) -> list[str]:
    return sorted({unique_symbol() for _ in range(4)})


def producer_env(sim: Simulator, kafka: str, redis_url: str, topic_prefix: str, spool: Path) -> dict[str, str]:
    """A producer process's environment: the simulator's stream and REST API, quotes backfilled too."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka, "REDIS_URL": redis_url, "KAFKA_TOPIC_PREFIX": topic_prefix,
        "KAFKA_PARTITIONS": "3", "KAFKA_ENABLE_IDEMPOTENCE": "false", "ALPACA_STREAM_URL": sim.url,
        "ALPACA_DATA_URL": sim.rest_url, "SPOOL_DIR": str(spool),
        "SUBSCRIBED_TYPES": "quotes,trades,bars,updatedBars", "BACKFILL_QUOTES": "true", "BACKFILL_MARGIN_S": "2",
        "UPSTREAM_RECONNECT_MAX_S": "0.5", "KAFKA_REQUEST_TIMEOUT_MS": "2000", "PYTHONUNBUFFERED": "1",
    }  # fmt: skip


def watermark(state: Path) -> int:
    """The stream position the gap state file records (0 while there is none, or no file yet)."""
    try:
        return int(orjson.loads(state.read_bytes())["watermark"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def streaming(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda doc: doc["upstream"]["state"] == "streaming" and doc["upstream"]["events"] >= n


async def test_a_producer_killed_and_restarted_fills_what_it_missed(
    kafka_bootstrap: str, redis_url: str, clean_db: str, topic_prefix: str, tmp_path: Path, symbols: list[str]
) -> None:
    async with Simulator(rate=RATE, symbols=tuple(symbols), start_ns=market_start(14), seed=11) as sim:
        history = sim.history("iex")
        assert isinstance(history, History)
        env = producer_env(sim, kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool")
        state = tmp_path / "spool" / "gaps.json"
        first = ProducerProcess(env, tmp_path / "producer.log")
        await first.start()
        try:
            await first.until_health(streaming(100), 60, "the first producer to stream 100 events")
            # the file may first be written before any record is safe (watermark 0): wait for a position
            await wait_for(lambda: watermark(state) > 0, 30, "the gap state file to record a stream position")
        finally:
            await first.kill()  # SIGKILL: no flush, no last state
        await market_runs_on(history)
        second = ProducerProcess(env, tmp_path / "producer.log")
        await second.start()
        try:
            doc = await second.until_health(
                lambda d: d["backfill"]["gaps_seen"] >= 1 and d["backfill"]["gaps_open"] == 0 and streaming(100)(d),
                90, "the restarted producer to fill its gap and stream on",
            )  # fmt: skip
            metrics = await second.metrics()
        finally:
            assert await second.terminate() == 0, await second.output()
        backfill = doc["backfill"]
        assert backfill["open_seconds"] == 0 and backfill["last_error"] is None
        assert all(backfill["events"][r] > 0 for r in ("trades", "quotes", "bars")), backfill
        samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("tickpipe_producer_")}  # fmt: skip
        assert samples["tickpipe_producer_gaps_total"] == 1
        assert samples["tickpipe_producer_gap_open_seconds"] == 0
        assert samples['tickpipe_producer_backfilled_total{type="trades"}'] == backfill["events"]["trades"]

        await drain_into_postgres(kafka_bootstrap, clean_db, topic_prefix, tmp_path / "consume.log")
        counts = await compare_run(clean_db, sim.rest_url, symbols, ("trades", "quotes", "bars"))
        assert all(counts.values()), counts


def resources_of_first_gap(state: Path) -> dict[str, bool]:
    """The first gap in the state file: resource -> whether it is fully fetched ({} while there is no gap).

    A resource not started yet has no progress entry: it counts as not fetched.
    """
    try:
        gaps = orjson.loads(state.read_bytes())["gaps"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not gaps:
        return {}
    progress: dict[str, str] = gaps[0]["progress"]
    slots = {resource: [token for slot, token in progress.items() if slot.startswith(f"{resource}/")]
             for resource in ("trades", "quotes", "bars")}  # fmt: skip
    done = {resource: bool(tokens) and all(token == "done" for token in tokens) for resource, tokens in slots.items()}
    return done


async def test_a_producer_killed_while_it_backfills_resumes_where_the_file_says(
    kafka_bootstrap: str, redis_url: str, clean_db: str, topic_prefix: str, tmp_path: Path, symbols: list[str]
) -> None:
    """Killed mid-backfill (one resource fetched, the next waiting on the request budget), a producer restarted
    later fetches what is left of that gap and its own, and the stored history is still exactly the REST one."""
    async with Simulator(rate=RATE, symbols=tuple(symbols), start_ns=market_start(14), seed=12) as sim:
        history = sim.history("iex")
        assert isinstance(history, History)
        env = producer_env(sim, kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool")
        state = tmp_path / "spool" / "gaps.json"
        log = tmp_path / "producer.log"
        first = ProducerProcess(env, log)
        await first.start()
        try:
            await first.until_health(streaming(100), 60, "the first producer to stream 100 events")
            await wait_for(lambda: watermark(state) > 0, 30, "the gap state file to record a stream position")
        finally:
            await first.kill()
        await market_runs_on(history)
        # One request a minute: the gap's first resource is fetched at once, the next waits out the minute.
        second = ProducerProcess({**env, "BACKFILL_REQUESTS_PER_MINUTE": "1"}, log)
        await second.start()
        try:
            await wait_for(
                lambda: any(resources_of_first_gap(state).values()) and not all(resources_of_first_gap(state).values()),
                60, "the state file to show the gap part fetched",
            )  # fmt: skip
        finally:
            await second.kill()
        at_kill = resources_of_first_gap(state)
        assert any(at_kill.values()) and not all(at_kill.values()), at_kill
        await market_runs_on(history, seconds=3.0)
        third = ProducerProcess(env, log)
        await third.start()
        try:
            doc = await third.until_health(
                lambda d: d["backfill"]["gaps_open"] == 0 and d["backfill"]["gaps_seen"] >= 2 and streaming(100)(d),
                90, "the third producer to fill both gaps and stream on",
            )  # fmt: skip
        finally:
            assert await third.terminate() == 0, await third.output()
        assert doc["backfill"]["open_seconds"] == 0 and doc["backfill"]["last_error"] is None, doc["backfill"]
        fetched_before = {resource for resource, done in at_kill.items() if done}
        assert fetched_before, at_kill

        await drain_into_postgres(kafka_bootstrap, clean_db, topic_prefix, tmp_path / "consume.log")
        counts = await compare_run(clean_db, sim.rest_url, symbols, ("trades", "quotes", "bars"))
        assert all(counts.values()), counts
