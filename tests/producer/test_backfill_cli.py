"""``tickpipe backfill``: a window of REST history into Kafka, then PostgreSQL; resumable and idempotent.

The command runs as a real process against the simulator's REST API and a
real broker; the consumers write PostgreSQL. An interrupted run (``--max-pages``)
resumes at the page after its checkpoint, so Kafka holds each item exactly
once after the two runs; a third, complete run sends everything again and
PostgreSQL gains 0 rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from producer.backfill import is_backfilled
from simulator import Simulator
from simulator.history import History
from tests.helpers.producer import (
    MINUTE,
    SECOND,
    backfill,
    compare_run,
    drain_into_postgres,
    market_start,
    read_topics,
    rest_events,
    table_rows,
)
from tests.helpers.waiting import wait_for
from tickpipe.codecs import format_rfc3339_ns


@pytest.fixture
def symbols(unique_symbol: Callable[[], str]) -> list[str]:
    return sorted({unique_symbol() for _ in range(3)})


async def test_backfill_resumes_at_its_checkpoint_and_a_second_run_adds_no_row(
    kafka_bootstrap: str, clean_db: str, topic_prefix: str, tmp_path: Path, symbols: list[str]
) -> None:
    async with Simulator(rate=1500.0, symbols=tuple(symbols), start_ns=market_start(2), seed=3) as sim:
        history = sim.history("iex")
        assert isinstance(history, History)
        boundary = sim.start_ns - sim.start_ns % MINUTE + MINUTE
        await wait_for(lambda: history.recorded >= 6000 and history.clock_ns >= boundary + 6 * SECOND, 60,
                    "6,000 events and a closed minute in the simulator's history")  # fmt: skip
        start, end = (
            boundary - MINUTE,
            history.clock_ns - 3 * SECOND,
        )  # (late trades land up to 2 s back) from the start of the first minute
        want_trades = await rest_events(sim.rest_url, "trades", symbols, start, end)
        want_bars = await rest_events(sim.rest_url, "bars", symbols, start, end)
        assert len(want_trades) > 600 and want_bars  # several pages of 300

        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC_PREFIX=topic_prefix, KAFKA_PARTITIONS="3",
            KAFKA_ENABLE_IDEMPOTENCE="false", ALPACA_DATA_URL=sim.rest_url, DATA_DIR=str(tmp_path / "data"),
        )  # fmt: skip
        args = ["--symbols", ",".join(symbols), "--start", format_rfc3339_ns(start), "--end", format_rfc3339_ns(end),
                "--types", "trades,bars", "--page-limit", "300"]  # fmt: skip
        checkpoint = tmp_path / "run.json"

        code, out = await backfill(env, *args, "--checkpoint", str(checkpoint), "--max-pages", "2")
        assert code == 0, out
        saved = orjson.loads(checkpoint.read_bytes())
        assert not saved["finished"] and saved["gap"]["progress"], saved
        assert "backfill:" in out  # plain progress lines, not a bar: the output is no terminal

        code, out = await backfill(env, *args, "--checkpoint", str(checkpoint))
        assert code == 0, out
        assert orjson.loads(checkpoint.read_bytes())["finished"]

        topics = [f"{topic_prefix}trades", f"{topic_prefix}bars"]
        records = await read_topics(kafka_bootstrap, topics, expected=len(want_trades) + len(want_bars))
        assert len(records) == len(want_trades) + len(want_bars), "the resumed run sent a page twice, or skipped one"
        assert all(is_backfilled(r.value) for r in records)

        await drain_into_postgres(kafka_bootstrap, clean_db, topic_prefix, tmp_path / "consume-1.log")
        first = await compare_run(clean_db, sim.rest_url, symbols, ("trades", "bars"))
        assert len(await table_rows(clean_db, "trades")) == len(want_trades)

        code, out = await backfill(env, *args, "--checkpoint", str(checkpoint))  # a finished run starts over
        assert code == 0, out
        records = await read_topics(kafka_bootstrap, topics, expected=2 * (len(want_trades) + len(want_bars)))
        assert len(records) == 2 * (len(want_trades) + len(want_bars))
        await drain_into_postgres(kafka_bootstrap, clean_db, topic_prefix, tmp_path / "consume-2.log")
        assert await compare_run(clean_db, sim.rest_url, symbols, ("trades", "bars")) == first
        assert len(await table_rows(clean_db, "trades")) == len(want_trades)  # 0 new rows
