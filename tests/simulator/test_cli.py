"""``tickpipe simulate`` / ``python -m simulator``: flags, and the process end to end."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from simulator import DEFAULT_SYMBOLS, Faults
from simulator.cli import build_parser, config_from, main
from tests.helpers.simulator import KEYS, StreamClient

ROOT = Path(__file__).resolve().parents[2]


def test_flags_become_the_config_and_its_faults() -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--symbols",
            "3",
            "--burst",
            "--seed",
            "9",
            "--count",
            "100",
            "--key",
            "k",
            "--secret",
            "s",
            "--close-after",
            "5",
            "--refuse",
            "-1",
            "--never-auth",
            "--malformed-after",
            "7",
            "--silent-after",
            "8",
            "--read-delay",
            "0.5",
            "--entitled-feeds",
            "iex,test",
        ]
    )
    config = config_from(args)
    assert config.symbols == ("ZAAA", "ZAAB", "ZAAC")
    assert (config.rate, config.seed, config.max_events, config.key, config.secret) == (None, 9, 100, "k", "s")
    assert config.entitled_feeds == ("iex", "test")
    assert config.faults == Faults(
        close_after=5, refuse_connections=-1, never_authenticate=True, malformed_after=7, silent_after=8, read_delay=0.5
    )
    paced = config_from(build_parser().parse_args(["--symbols", "AAPL, MSFT", "--rate", "50"]))
    assert (paced.symbols, paced.rate) == (("AAPL", "MSFT"), 50.0)
    rest = ["--history-seconds", "600", "--history-max-events", "1000", "--rest-rate-limit", "9"]
    history = config_from(build_parser().parse_args(rest))
    assert (history.history_seconds, history.history_max_events, history.rest_rate_limit) == (600, 1000, 9)
    assert config_from(build_parser().parse_args([])).symbols == DEFAULT_SYMBOLS
    # By default the key may use every feed served, the news wire among them (tickpipe up's news producer).
    default = config_from(build_parser().parse_args([]))
    assert "news/news" in default.entitled_feeds and default.news_rate == 2.0
    assert config_from(build_parser().parse_args(["--news-rate", "0.5"])).news_rate == 0.5
    assert default.order_rate == 5.0
    assert config_from(build_parser().parse_args(["--order-rate", "0.25"])).order_rate == 0.25


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--burst", "--rate", "5"], "not allowed with argument"),
        (["--rate", "0"], "expected a positive rate"),
        (["--key", "k"], "expected both key and secret"),
        (["--entitled-feeds", "crypto"], "expected feeds among"),
        (["--close-after", "-1"], "expected close_after >= 0"),
        (["--history-seconds", "0"], "expected history_seconds and history_max_events >= 1"),
        (["--rest-rate-limit", "0"], "expected rest_rate_limit >= 1"),
    ],
)
def test_bad_flags_exit_2_naming_what_was_expected(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


@contextlib.asynccontextmanager
async def simulator_process(*flags: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``python -m simulator --port 0 FLAGS``, with its first line on stdout; killed on the way out if still alive."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator", "--port", "0", *flags, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        yield proc, (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_process_serves_count_events_then_goes_quiet_and_stops_on_sigterm() -> None:
    async with simulator_process("--burst", "--count", "500") as (proc, line):
        assert line.startswith("listening on ws://127.0.0.1:"), line
        async with StreamClient.connect(line.split()[2]) as client:
            await client.login()
            await client.subscribe(
                trades=["*"], quotes=["*"], bars=["*"], dailyBars=["*"], updatedBars=["*"], statuses=["*"]
            )
            await client.collect(500)
            await client.send({"action": "subscribe", "quotes": ["AAPL"]})
            assert (await client.control())["T"] == "subscription"
            assert len(client.data) == 500
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_the_process_serves_rest_history_of_a_market_nobody_watches_and_429_past_its_limit() -> None:
    async with simulator_process("--rate", "2000", "--rest-rate-limit", "40") as (proc, line):
        base = line.split()[-1]
        assert base.startswith("http://127.0.0.1:"), line
        statuses = [200]
        async with httpx.AsyncClient(base_url=base) as http:
            watcher = {**KEYS, "APCA-API-KEY-ID": "watcher"}  # a budget of its own, spent on waiting
            deadline = asyncio.get_running_loop().time() + 30
            params = {"symbols": "SPY", "feed": "iex"}
            while not (await http.get("/v2/stocks/trades", params=params, headers=watcher)).json().get("trades"):
                assert asyncio.get_running_loop().time() < deadline, "expected trades made with nobody connected"
                await asyncio.sleep(0.1)
            while statuses[-1] == 200:
                answer = await http.get("/v2/stocks/SPY/trades", params={"feed": "iex"}, headers=KEYS)
                statuses.append(answer.status_code)
        assert statuses[1:] == [200] * 40 + [429]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
