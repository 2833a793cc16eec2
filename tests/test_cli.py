"""The one command line: every service listed, options passed through untouched."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tickpipe.cli import SERVICES, main


def test_help_lists_every_service(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for name in ("up", "producer", "consume", "api", "simulate", "migrate", "dlq"):
        assert name in out


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bogus"])
    assert caught.value.code == 2
    assert "bogus" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(SERVICES))
def test_every_service_answers_help_with_its_own_options(command: str) -> None:
    # "--help" after the command reaches the service's own parser (no REMAINDER quirks with "--options").
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe.cli", command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f"tickpipe {command}" in result.stdout or "usage:" in result.stdout
