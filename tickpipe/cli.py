"""``tickpipe``: one command line, one subcommand per service.

Before a command starts, the services it needs (``NEEDS``) are waited for, up to SERVICE_WAIT_S
seconds, and an unreachable one ends start-up with one line naming its variable. ``--help`` is
printed as plain text (``plain_text``), and needs no services.

Each service owns its options: ``tickpipe producer --help`` is answered by
``producer.cli``. This module only routes, so adding a service is one line in
:data:`SERVICES`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import sys
from collections.abc import Callable, Sequence
from typing import Final

from tickpipe.errors import TickpipeError

#: subcommand -> (module with ``main(argv) -> int``, one-line help)
SERVICES: Final[dict[str, tuple[str, str]]] = {
    "up": ("tickpipe.dev.stack", "run the whole pipeline on this machine (embedded services, simulator)"),
    "producer": ("producer.cli", "hold the upstream stream and fan it out to Redis and Kafka"),
    "consume": ("consumers.cli", "write Kafka topics into PostgreSQL: quotes|trades|bars|all"),
    "api": ("api.cli", "serve history over HTTP and the live stream over WebSocket"),
    "simulate": ("simulator.cli", "serve a simulated Alpaca stream-v2 market feed"),
    "migrate": ("tickpipe.migrate", "upgrade (or downgrade) the PostgreSQL schema"),
    "dlq": ("consumers.dlq_cli", "list or replay dead letters"),
    "backfill": ("producer.backfill_cli", "load a window of history from the REST API into Kafka (resumable)"),
    "keys": ("api.keys_cli", "add, list or revoke the API's keys (key id and secret, as Alpaca's)"),
    "status": ("tickpipe.status_cli", "every running instance's health, from Redis (lost ones too)"),
}


#: subcommand -> the services it needs at start-up, by variable; ``up`` waits only for those set
#: (it embeds the others). Commands not listed (simulate) need none.
NEEDS: Final[dict[str, tuple[str, ...]]] = {
    "up": ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"),
    "producer": ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"),
    "consume": ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"),
    "api": ("DATABASE_URL", "REDIS_URL"),
    "migrate": ("DATABASE_URL",),
    "dlq": ("KAFKA_BOOTSTRAP_SERVERS",),
    "backfill": ("KAFKA_BOOTSTRAP_SERVERS",),
    "keys": ("DATABASE_URL",),
}


def wait_for_needed_services(command: str, rest: Sequence[str]) -> None:
    """Wait (bounded by SERVICE_WAIT_S) for the services ``command`` uses, before it starts.

    Why here: one policy for every command and service, and an unreachable one ends start-up with
    one line naming its variable rather than a driver's traceback from deep inside the command.
    Help needs no services; a variable left unset is the command's own business (``up`` embeds it,
    the others name it in their settings error).
    """
    if not NEEDS.get(command):
        return
    from tickpipe.dev.services import wait_for_services
    from tickpipe.settings import get_settings

    settings = get_settings()
    configured = {var: getattr(settings, var.lower()) for var in NEEDS[command]}  # each variable's setting
    wait_for_services({var: value for var, value in configured.items() if value}, settings.service_wait_s)


_ROLE = re.compile(r":[a-z:]+:`([^`]*)`")  # :data:`SERVICES` -> SERVICES
_LITERAL = re.compile(r"``([^`]*)``")  # ``tickpipe up`` -> tickpipe up


def plain_text(text: str) -> str:
    """Help as a terminal shows it: without the reStructuredText markup of the docstrings it comes from.

    Why: each service's ``--help`` description is its module docstring (one source for both), whose
    literals and roles read as noise in a terminal.
    """
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def _help(entry: Callable[[list[str]], int], rest: list[str]) -> int:
    """Run ``entry`` for its help and print that help as plain text."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            code = entry(rest)
        except SystemExit as exit_:  # argparse ends with exit(0) after printing help
            code = exit_.code if isinstance(exit_.code, int) else 0
    sys.stdout.write(plain_text(buffer.getvalue()))
    return code


def _load(command: str) -> Callable[[list[str]], int] | None:
    module_name, _ = SERVICES[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    main: Callable[[list[str]], int] | None = getattr(module, "main", None)
    return main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickpipe",
        description="A real-time market-data pipeline: one Alpaca stream to Redis, Kafka, PostgreSQL and an API.",
        epilog="Configuration comes from the environment and .env; see .env.example.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in SERVICES.items():
        sub = commands.add_parser(name, help=help_text, add_help=False)
        sub.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SERVICES:
        build_parser().parse_args(argv)  # prints help or names the unknown command, and exits
        return 2
    # Everything after the subcommand belongs to the service (argparse's REMAINDER would
    # refuse options that start with "--").
    command, rest = argv[0], argv[1:]
    entry = _load(command)
    if entry is None:
        print(f"tickpipe {command}: not implemented yet", file=sys.stderr)
        return 2
    if "-h" in rest or "--help" in rest:
        return _help(entry, rest)
    try:
        wait_for_needed_services(command, rest)
        return entry(rest)
    except TickpipeError as exc:
        print(f"tickpipe {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
