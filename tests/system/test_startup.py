"""Start-up against an unreachable service: one line naming the variable, no password, exit 1, no traceback.

The dead address is a port bound by this test and never listened on, so nothing can answer there
while the test runs. SERVICE_WAIT_S is short so each case is quick; the wait itself is bounded by it.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tickpipe.dev.services import Unreachable, addresses, wait_for_services
from tickpipe.errors import SettingsError
from tickpipe.settings import load_settings, redact_url

SECRET = "s3cret-pw"


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port held (bound, not listening) for the test: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def dead_url(variable: str, port: int) -> str:
    return {
        "DATABASE_URL": f"postgresql://tickpipe:{SECRET}@127.0.0.1:{port}/tickpipe",
        "REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{port}/0",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
    }[variable]


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    full.update(env, SERVICE_WAIT_S="0.3", DATA_DIR=str(cwd / "data"))
    # cwd: a folder with no .env, so only these variables configure the run
    return subprocess.run(
        [sys.executable, "-m", "tickpipe.cli", *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str], variable: str, command: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert SECRET not in result.stderr + result.stdout
    last = lines[-1]
    assert last.startswith(f"tickpipe {command}: {variable}="), result.stderr
    assert "unreachable" in last and "refused" in last, last
    assert "tickpipe is running" not in result.stdout
    # the progress line came first, naming the same variable
    assert any(line.startswith("waiting up to") and variable in line for line in lines[:-1]), result.stderr


@pytest.mark.parametrize("variable", ["DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"])
def test_up_names_the_unreachable_service(
    variable: str, dead_port: int, tmp_path: Path, migrated_db: str, redis_url: str, kafka_bootstrap: str
) -> None:
    env = {"DATABASE_URL": migrated_db, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    env[variable] = dead_url(variable, dead_port)
    assert_one_line_failure(run_cli(["up"], env, tmp_path), variable, "up")


def test_migrate_names_the_unreachable_database(dead_port: int, tmp_path: Path) -> None:
    env = {"DATABASE_URL": dead_url("DATABASE_URL", dead_port)}
    assert_one_line_failure(run_cli(["migrate"], env, tmp_path), "DATABASE_URL", "migrate")


@pytest.mark.parametrize(
    ("command", "variable"),
    [("producer", "REDIS_URL"), ("producer", "KAFKA_BOOTSTRAP_SERVERS"), ("consume", "KAFKA_BOOTSTRAP_SERVERS"),
     ("api", "REDIS_URL"), ("api", "DATABASE_URL")],
)  # fmt: skip
def test_services_name_the_unreachable_one(
    command: str, variable: str, dead_port: int, tmp_path: Path, migrated_db: str, redis_url: str, kafka_bootstrap: str
) -> None:
    env = {"DATABASE_URL": migrated_db, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    env[variable] = dead_url(variable, dead_port)
    args = [command, "all"] if command == "consume" else [command]
    assert_one_line_failure(run_cli(args, env, tmp_path), variable, command)


def test_help_needs_no_services(dead_port: int, tmp_path: Path) -> None:
    result = run_cli(["migrate", "--help"], {"DATABASE_URL": dead_url("DATABASE_URL", dead_port)}, tmp_path)
    assert result.returncode == 0, result.stderr


def test_addresses_and_redaction() -> None:
    assert addresses("KAFKA_BOOTSTRAP_SERVERS", "a:1, b:2") == [("a", 1), ("b", 2)]
    assert addresses("DATABASE_URL", "postgresql://u:p@db/x") == [("db", 5432)]
    assert addresses("REDIS_URL", "redis://h:7/0") == [("h", 7)]
    assert redact_url("postgresql://u:p%40w@h:1/x") == "postgresql://u:***@h:1/x"
    assert redact_url("h:9092") == "h:9092"


def test_service_wait_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVICE_WAIT_S", raising=False)
    assert load_settings().service_wait_s == 30.0
    monkeypatch.setenv("SERVICE_WAIT_S", "2.5")
    assert load_settings().service_wait_s == 2.5
    monkeypatch.setenv("SERVICE_WAIT_S", "-1")
    with pytest.raises(SettingsError, match=r"(?i)SERVICE_WAIT_S"):
        load_settings()


@pytest.mark.parametrize("command", ["migrate", "up"])
def test_a_refused_database_is_one_line_too(
    command: str, tmp_path: Path, database_url: str, redis_url: str, kafka_bootstrap: str
) -> None:
    """PostgreSQL answers but refuses the connection (no such database): one line, not alembic's traceback."""
    parts = urlsplit(database_url)
    wrong = urlunsplit(parts._replace(path="/no_such_database_here"))
    env = {"DATABASE_URL": wrong, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    result = run_cli([command], env, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "DATABASE_URL=" in line]  # up logs it, then stops
    assert "no_such_database_here" in line and "refused" in line, line


def test_a_listening_service_passes_at_once_and_one_kafka_address_is_enough(dead_port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        live = server.getsockname()[1]
        progress = io.StringIO()
        wait_for_services(
            {
                "REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{live}/0",
                "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead_port},127.0.0.1:{live}",
            },
            timeout=0,
            progress=progress,
        )
    assert progress.getvalue() == ""


def test_zero_wait_still_names_what_it_tried(dead_port: int) -> None:
    progress = io.StringIO()
    with pytest.raises(Unreachable, match=r"KAFKA_BOOTSTRAP_SERVERS=127\.0\.0\.1:") as caught:
        wait_for_services({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead_port}"}, timeout=0, progress=progress)
    assert "SERVICE_WAIT_S" in str(caught.value)
    assert progress.getvalue().startswith("waiting up to 0 s for KAFKA_BOOTSTRAP_SERVERS=")
