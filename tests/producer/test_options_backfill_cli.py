"""``tickpipe backfill --feed options``: a window of the option trades' REST history into
``tickpipe.options.trades``, then ``options_trades``; what it refuses, in one line.

The command runs as a real process against the simulator's ``/v1beta1/options/trades`` and a real broker;
the consumers write PostgreSQL. A chain of more than 100 contracts is asked in requests of at most 100
(the simulator refuses more, as Alpaca does). Every REST trade of the window is in Kafka once (marked
backfilled) and is one row; a second run adds no row.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers.service import ConsumerService
from producer.backfill import is_backfilled
from producer.backfill_cli import build_parser, feed_from, job_from
from producer.gaps import chunks
from simulator import DEFAULT_START_NS, Simulator
from simulator.history import History
from simulator.options import chain
from tests.helpers.consumers import consumer_settings, count_rows, fetch_events
from tests.helpers.options import FEED, option_config
from tests.helpers.producer import SECOND, backfill, read_topics, rest_events
from tests.helpers.waiting import wait_for
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.errors import TickpipeError
from tickpipe.feeds import OPTIONS

#: Three expiries of SPY and TSLA, 30 strikes, calls and puts: 360 contracts, four requests a page round.
CHAIN = tuple(chain(["SPY", "TSLA"], DEFAULT_START_NS, expiries=3, strikes=30))


def test_the_options_feed_is_named_its_contracts_checked_and_trades_its_default() -> None:
    parser = build_parser()
    window = ["--start", "2024-06-03", "--end", "2024-06-04"]
    job = job_from(parser.parse_args(["--feed", "options", "--symbols", "spy240607c00530000, AAPL240621C00190000",
                                      *window]))  # fmt: skip
    assert job.feed is OPTIONS and job.symbols == ["AAPL240621C00190000", "SPY240607C00530000"]
    assert job.resources == ["trades"], "expected the option trades, the feed's only REST history"
    assert job_from(parser.parse_args(["--symbols", "AAPL", *window])).resources == ["trades", "bars"]
    cases = [
        (["--feed", "options", "--symbols", "AAPL"], r"--symbols: expected an OCC option contract .*got 'AAPL'"),
        (["--feed", "options", "--symbols", "SPY240607C00530000", "--types", "quotes"], "--types: expected .* trades"),
    ]
    for args, message in cases:
        with pytest.raises(TickpipeError, match=message):
            job_from(parser.parse_args([*args, *window]))
    historyless = {"options": dataclasses.replace(OPTIONS, history_path=None)}
    with pytest.raises(TickpipeError, match=r"^--feed: the options feed has no REST history to load"):
        feed_from("options", historyless)


def _content(event: Any) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(event, received_at=0))


async def test_an_option_window_of_a_chain_is_loaded_once_and_a_second_run_adds_no_row(
    kafka_bootstrap: str, clean_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with Simulator(option_config(rate=3000, record=False, option_symbols=CHAIN)) as sim:
        history = sim.history(FEED)
        assert isinstance(history, History)
        await wait_for(lambda: history.recorded >= 1200, 60, "1,200 option trades in the simulator's history")
        start, end = sim.start_ns, history.clock_ns - SECOND
        want = await rest_events(sim.rest_url, "trades", list(CHAIN), start, end, of=OPTIONS)
        groups = chunks(CHAIN)
        traded = {i for i, group in enumerate(groups) for e in want if e.symbol in group}
        assert len(groups) == 4 and len(traded) >= 2, "expected trades of contracts in several requests"
        assert len(want) >= 600

        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC_PREFIX=topic_prefix, KAFKA_PARTITIONS="3",
            KAFKA_ENABLE_IDEMPOTENCE="false", ALPACA_DATA_URL=sim.rest_url, DATA_DIR=str(tmp_path / "data"),
        )  # fmt: skip
        args = ["--feed", "options", "--symbols", ",".join(CHAIN), "--start", format_rfc3339_ns(start),
                "--end", format_rfc3339_ns(end), "--page-limit", "200"]  # fmt: skip
        code, out = await backfill(env, *args, "--checkpoint", str(tmp_path / "run.json"))
        assert code == 0, out

        trades = f"{topic_prefix}options.trades"
        records = await read_topics(kafka_bootstrap, [trades], expected=len(want))
        assert len(records) == len(want) and all(is_backfilled(r.value) for r in records)

        settings = consumer_settings(kafka_bootstrap, clean_db, topic_prefix)
        stats = await ConsumerService(settings, ["options_trades"], burst=True, admin=False).run()
        assert stats["options_trades"].dead_letters == 0
        got = await fetch_events(clean_db, "options_trades")
        assert sorted(map(_content, got)) == sorted(map(_content, want)), "expected each REST trade as one row"

        code, out = await backfill(env, *args, "--checkpoint", str(tmp_path / "run.json"))  # finished: starts over
        assert code == 0, out
        await read_topics(kafka_bootstrap, [trades], expected=2 * len(want))
        again = await ConsumerService(settings, ["options_trades"], burst=True, admin=False).run()
        assert again["options_trades"].records == len(want) and again["options_trades"].rows_written == 0
        assert await count_rows(clean_db, "options_trades") == len(want)
