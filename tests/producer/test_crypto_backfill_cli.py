"""``tickpipe backfill --feed crypto``: a window of the crypto REST history into the crypto topics, then the
crypto tables; what other feeds and symbols it refuses, in one line.

The command runs as a real process against the simulator's ``/v1beta3/crypto/us/{trades,bars}`` and a real
broker; the consumers write PostgreSQL. Every REST item of the window is in Kafka once (marked backfilled) and
is one row; a second run adds no row.
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
from simulator import Simulator
from simulator.history import History
from tests.helpers.consumers import consumer_settings, count_rows, fetch_events
from tests.helpers.producer import MINUTE, SECOND, backfill, market_start, read_topics
from tests.helpers.waiting import wait_for
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.errors import TickpipeError
from tickpipe.feeds import CRYPTO

from .test_crypto_backfill import rest_history
from .test_crypto_feed import FEED, crypto_config


def test_the_crypto_feed_is_named_and_its_pairs_checked_others_refused_in_one_line() -> None:
    parser = build_parser()
    job = job_from(parser.parse_args(["--feed", "crypto", "--symbols", "eth/usd, BTC/USD", "--start", "2024-06-03",
                                      "--end", "2024-06-04"]))  # fmt: skip
    assert job.feed is CRYPTO and job.symbols == ["BTC/USD", "ETH/USD"] and job.resources == ["trades", "bars"]
    stock = job_from(parser.parse_args(["--symbols", "BTC", "--start", "2024-06-03", "--end", "2024-06-04"]))
    assert stock.name != job_from(parser.parse_args(["--feed", "crypto", "--symbols", "BTC/USD", "--start",
                                                     "2024-06-03", "--end", "2024-06-04"])).name  # fmt: skip
    cases = [
        (["--feed", "crypto", "--symbols", "AAPL"], r"--symbols: .*AAPL"),
        (["--feed", "forex", "--symbols", "EUR/USD"], r"--feed: expected one of .*crypto.*got 'forex'"),
        (["--feed", "crypto", "--symbols", "BTC/USD", "--types", "statuses"], "--types: expected a comma subset of"),
    ]
    for args, message in cases:
        with pytest.raises(TickpipeError, match=message):
            job_from(parser.parse_args([*args, "--start", "2024-06-03", "--end", "2024-06-04"]))


def _content(event: Any) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(event, received_at=0))


async def test_a_crypto_window_is_loaded_once_and_a_second_run_adds_no_row(
    kafka_bootstrap: str, clean_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    pairs = ["BTC/USD", "ETH/USD"]
    async with Simulator(crypto_config(rate=1500, start_ns=market_start(5), record=False)) as sim:
        history = sim.history(FEED)
        assert isinstance(history, History)
        boundary = sim.start_ns - sim.start_ns % MINUTE + MINUTE
        await wait_for(lambda: history.recorded >= 3000 and history.clock_ns >= boundary + 3 * SECOND, 90,
                       "3,000 crypto events and a closed minute in the simulator's history")  # fmt: skip
        start, end = boundary - MINUTE, history.clock_ns - 3 * SECOND
        want = {
            resource: [e for e in await rest_history(sim.rest_url, resource, start, end) if e.symbol in pairs]
            for resource in ("trades", "bars")
        }
        assert len(want["trades"]) > 300 and want["bars"], {k: len(v) for k, v in want.items()}

        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC_PREFIX=topic_prefix, KAFKA_PARTITIONS="3",
            KAFKA_ENABLE_IDEMPOTENCE="false", ALPACA_DATA_URL=sim.rest_url, DATA_DIR=str(tmp_path / "data"),
        )  # fmt: skip
        args = ["--feed", "crypto", "--symbols", ",".join(pairs), "--start", format_rfc3339_ns(start),
                "--end", format_rfc3339_ns(end), "--types", "trades,bars", "--page-limit", "200"]  # fmt: skip
        code, out = await backfill(env, *args, "--checkpoint", str(tmp_path / "run.json"))
        assert code == 0, out

        topics = [f"{topic_prefix}crypto.trades", f"{topic_prefix}crypto.bars"]
        total = len(want["trades"]) + len(want["bars"])
        records = await read_topics(kafka_bootstrap, topics, expected=total)
        assert len(records) == total and all(is_backfilled(r.value) for r in records)
        assert sorted(r.topic for r in records) == sorted(
            [topics[0]] * len(want["trades"]) + [topics[1]] * len(want["bars"])
        )

        settings = consumer_settings(kafka_bootstrap, clean_db, topic_prefix)
        tables = ["crypto_trades", "crypto_bars"]
        stats = await ConsumerService(settings, tables, burst=True, admin=False).run()
        assert sum(stat.dead_letters for stat in stats.values()) == 0
        got = await fetch_events(clean_db, "crypto_trades")
        assert sorted(map(_content, got)) == sorted(map(_content, want["trades"])), "each REST trade is one row"
        assert await count_rows(clean_db, "crypto_bars") == len({(b.symbol, b.timestamp) for b in want["bars"]})

        code, out = await backfill(env, *args, "--checkpoint", str(tmp_path / "run.json"))  # finished: starts over
        assert code == 0, out
        await read_topics(kafka_bootstrap, topics, expected=2 * total)
        again = await ConsumerService(settings, tables, burst=True, admin=False).run()
        assert again["crypto_trades"].records == len(want["trades"]) and again["crypto_trades"].rows_written == 0
        assert await count_rows(clean_db, "crypto_trades") == len(want["trades"])
