"""``tickpipe status`` (``tickpipe.status_cli``): the table, its verdict, plain output off a terminal, exit codes.

The command runs as a process over the session's Redis, with documents written
there by the real publisher under the test's own topic prefix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tickpipe.dev.processes import free_port
from tickpipe.health import Publisher, Reading
from tickpipe.status_cli import table

ROOT = Path(__file__).resolve().parents[2]


def status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tickpipe.cli", "status", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(redis_url: str, topic_prefix: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "KAFKA_TOPIC_PREFIX": topic_prefix}


async def publish(redis_url: str, prefix: str, role: Any, instance: str, ready: bool, **kw: Any) -> Publisher:
    async def read() -> Reading:
        return Reading(ready=ready, **kw)

    publisher = Publisher(redis_url, role, read, prefix=prefix, instance=instance, clock=lambda: 1e9)
    await publisher.publish()
    return publisher


def doc(role: str, instance: str, state: str, **kw: Any) -> dict[str, Any]:
    return {"role": role, "instance": instance, "state": state, "version": "0.1.0", "silent_s": 0.2, **kw}


def test_the_table_and_its_verdict() -> None:
    instances = [
        doc("producer", "h-1", "ready", rate=412.5, rate_unit="events/s"),
        doc("consumers", "h-2", "ready", rate=410.0, rate_unit="rows/s", lag=37),
        doc("consumers", "h-3", "lost", silent_s=12.4, last_error="PostgreSQL down " * 10),
    ]
    lines = table(instances, colour=False).splitlines()
    assert lines[0].split() == ["ROLE", "INSTANCE", "STATE", "RATE", "LAG", "SEEN", "VERSION", "LAST", "ERROR"]
    assert lines[1].split()[:6] == ["producer", "h-1", "ready", "412.5", "events/s", "-"]
    assert lines[2].split()[:6] == ["consumers", "h-2", "ready", "410", "rows/s", "37"]
    assert lines[3].split()[:6] == ["consumers", "h-3", "lost", "-", "-", "12s"]
    assert lines[3].endswith("…") and len(lines[3]) < 140  # a long error is cut, not wrapped
    assert lines[-1] == "3 instances: 1 lost, 2 ready; events/s 412.5, consumer lag 37"
    assert "\033[" not in table(instances, colour=False) and "\033[31;1m" in table(instances, colour=True)


async def test_all_ready_exits_0_any_failing_exits_1(redis_url: str, topic_prefix: str, env: dict[str, str]) -> None:
    ok = await publish(redis_url, topic_prefix, "producer", "p-1", True, count=5)
    result = status(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:3] == ["producer", "p-1", "ready"]
    assert result.stdout.rstrip().endswith("1 instance: 1 ready; events/s -, consumer lag -")
    failing = await publish(redis_url, topic_prefix, "consumers", "c-1", False, last_error="kafka: down")
    failing.started_at -= 3600  # long past start-up: not ready means failing
    await failing.publish()
    result = status(env)
    assert result.returncode == 1
    assert "consumers  c-1       failing" in result.stdout and "kafka: down" in result.stdout
    for publisher in (ok, failing):
        await publisher.stop()
    assert status(env).stdout.startswith("ROLE")


def test_watch_off_a_terminal_prints_successive_plain_tables(env: dict[str, str]) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "tickpipe.cli", "status", "--watch", "0.05"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        headers = 0
        for line in proc.stdout:
            headers += line.startswith("ROLE")
            if headers == 2:
                break
        proc.terminate()
    assert headers == 2


def test_redis_unreachable_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    result = status({**env, "REDIS_URL": f"redis://:pw@127.0.0.1:{free_port()}/0"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("tickpipe status: REDIS_URL=")
    assert "pw" not in result.stderr


def test_redis_url_unset_is_named(env: dict[str, str], tmp_path: Path) -> None:
    result = status({**{k: v for k, v in env.items() if k != "REDIS_URL"}, "DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert f"REDIS_URL is not set and {tmp_path / 'ports.json'} names no embedded Redis" in result.stderr


async def test_without_redis_url_the_embedded_redis_of_tickpipe_up_is_read(
    redis_url: str, topic_prefix: str, env: dict[str, str], tmp_path: Path
) -> None:
    """On one machine: ``tickpipe up`` keeps its Redis port in DATA_DIR/ports.json, and this finds it there."""
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    if not redis_url.startswith("redis://127.0.0.1:"):
        pytest.skip(f"the session's Redis is not on the loopback: {redis_url}")
    (tmp_path / "ports.json").write_text(f'{{"redis": {port}}}')
    publisher = await publish(redis_url, topic_prefix, "simulator", "s-1", True)
    try:
        result = status({**{k: v for k, v in env.items() if k != "REDIS_URL"}, "DATA_DIR": str(tmp_path)})
    finally:
        await publisher.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:3] == ["simulator", "s-1", "ready"]
