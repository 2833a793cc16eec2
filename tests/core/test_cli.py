"""The one command line: every service listed, options passed through untouched."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import NoReturn

import pytest

from tickpipe.cli import SERVICES, _load, main, plain_text


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


class _Captured(Exception):
    """Raised instead of parsing, once a service has built its parser."""


def service_parsers(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command's parser and its subcommands' (``dlq list`` ...), by the words that reach it."""
    built: list[argparse.ArgumentParser] = []

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> NoReturn:
        built.append(self)
        raise _Captured

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
        found[path] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk((*path, name), child)

    for command in SERVICES:
        entry = _load(command)
        assert entry is not None, command
        built.clear()
        with pytest.raises(_Captured):
            entry(["--help"])
        walk((command,), built[-1])
    monkeypatch.undo()
    return found


#: Options still without help, in modules owned by others at the time of writing (producer/backfill_cli.py);
#: the test fails once one gains help, so this list only shrinks.
KNOWN_WITHOUT_HELP: set[str] = {"tickpipe backfill ['--progress']"}


def test_every_option_of_every_command_has_help(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = [
        f"tickpipe {' '.join(path)} {action.option_strings or action.dest}"
        for path, parser in service_parsers(monkeypatch).items()
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and action.help in (None, "", argparse.SUPPRESS)
    ]
    assert set(missing) == KNOWN_WITHOUT_HELP


def test_every_help_is_plain_text(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """What ``tickpipe ... --help`` prints carries no reStructuredText markup (``literals``, :roles:)."""
    paths = list(service_parsers(monkeypatch))
    assert ("dlq", "list") in paths  # the walk reaches subcommands
    for path in paths:
        assert main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert out.startswith("usage:"), (path, out[:200])
        assert "``" not in out and ":data:`" not in out, (path, out)


def test_plain_text_drops_literals_and_roles() -> None:
    assert plain_text("``tickpipe up`` runs :data:`SERVICES`; `x` stays") == "tickpipe up runs SERVICES; `x` stays"
