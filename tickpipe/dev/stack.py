"""``tickpipe up``: the whole pipeline on one machine, as a small process supervisor.

Services (PostgreSQL, Redis, Kafka) come from their URLs when set, otherwise
embedded ones are started under ``DATA_DIR``. Then the schema is migrated,
the topics created, and each part runs as its own ``tickpipe <part>`` process
(so the machine's cores are all used and a crash in one part is visible as
that part's exit). Any part exiting, Ctrl-C or SIGTERM stops all the others,
newest first, and leaves nothing running. There is one producer process per feed
of ALPACA_FEEDS (``tickpipe producer --feed crypto``, ``--feed options``), each on its own admin port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final

import asyncpg

from tickpipe import db
from tickpipe.dev.processes import parent_death_signal
from tickpipe.dev.services import ServiceUrls, start_services
from tickpipe.errors import ServiceStartError, TickpipeError
from tickpipe.feeds import OPTIONS, STOCK, Feed
from tickpipe.kafka import dlq_topic, ensure_topics, pipeline_topics
from tickpipe.logs import setup_logging
from tickpipe.names import topic
from tickpipe.service import BindError, bind
from tickpipe.settings import FEED_SETTINGS, Settings, get_settings, redact_url

log = logging.getLogger("tickpipe.up")

#: DATA_DIR's default (a relative path: under the directory tickpipe up runs in).
DEFAULT_DATA_DIR: Final = Settings.model_fields["data_dir"].default

HELP: Final = f"""Run the whole pipeline on this machine, as a small process supervisor.

PostgreSQL, Redis and Kafka come from DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP_SERVERS when
set; start-up waits up to SERVICE_WAIT_S seconds (default 30) for each of those, then stops with
one line naming the one that does not answer. Unset ones are started embedded under DATA_DIR
(default {DEFAULT_DATA_DIR}, relative to the current directory), on the ports they had last time
(kept in DATA_DIR/ports.json; a port another process holds is replaced, and the log says so).
Then the schema is migrated, the topics created, and the simulator (without Alpaca keys), the
producer (one per feed of ALPACA_FEEDS), the consumers and the API each run as their own tickpipe
process. Any part exiting,
Ctrl-C or SIGTERM stops all the others, newest first."""

STOP_GRACE_S = 20.0
START_TIMEOUT_S = 60.0


@dataclass
class Part:
    """One child process of the stack, and how to tell it is up."""

    name: str
    args: list[str]
    port: int
    port_variable: str
    ready_path: str | None = "/healthz"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _answers(host: str, port: int, path: str | None) -> bool:
    if path is None:
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return False
        return True
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as response:
            return int(response.status) < 500
    except OSError:
        return False


#: Beyond this many API workers the rest of the stack (producer, consumers, PostgreSQL) is short of cores.
MAX_API_WORKERS = 4


def api_workers() -> int:
    """``tickpipe api --workers``: one per core, at most :data:`MAX_API_WORKERS` (2 on a 2-core laptop)."""
    return max(1, min(os.cpu_count() or 1, MAX_API_WORKERS))


def plan(settings: Settings, with_simulator: bool) -> list[Part]:
    """The parts to run, in start order."""
    parts: list[Part] = []
    if with_simulator:
        parts.append(
            Part("simulator", ["simulate", "--host", settings.simulator_host, "--port", str(settings.simulator_port),
                               "--rate", str(settings.simulator_rate)],
                 settings.simulator_port, "SIMULATOR_PORT", ready_path=None)
        )  # fmt: skip
    for feed in settings.feeds:
        parts.append(producer_part(settings, feed))
    parts.append(Part("consumers", ["consume", "all"], settings.consumer_admin_port, "CONSUMER_ADMIN_PORT"))
    parts.append(Part("api", ["api", "--workers", str(api_workers())], settings.api_port, "API_PORT"))
    return parts


def producer_part(settings: Settings, feed: Feed) -> Part:
    """A feed's producer: ``producer`` for stocks (as before), ``producer-crypto`` with ``--feed crypto``,
    ``producer-options`` with ``--feed options``, each on its feed's admin port setting."""
    setting = FEED_SETTINGS[feed.name].admin_port.upper()
    if feed is STOCK:
        return Part("producer", ["producer"], settings.admin_port_for(feed), setting)
    if feed is OPTIONS and not settings.option_symbols:
        log.warning("OPTION_SYMBOLS is empty: the options producer subscribes to none until POST /symbols adds some")
    return Part(f"producer-{feed.name}", ["producer", "--feed", feed.name], settings.admin_port_for(feed), setting)


def feed_topics(settings: Settings) -> list[str]:
    """The Kafka topics of ALPACA_FEEDS' non-stock feeds (``tickpipe.crypto.quotes`` ...)."""
    return [topic(word, settings.kafka_topic_prefix) for feed in settings.feeds if feed is not STOCK
            for word in dict.fromkeys(feed.words)]  # fmt: skip


def child_env(settings: Settings, urls: ServiceUrls) -> dict[str, str]:
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = urls.kafka_bootstrap
    env["REDIS_URL"] = urls.redis_url
    env["DATABASE_URL"] = urls.database_url
    if urls.kafka is not None and not urls.kafka.idempotence:
        env["KAFKA_ENABLE_IDEMPOTENCE"] = "false"  # the embedded Tansu broker refuses InitProducerId
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


async def _prepare(settings: Settings, urls: ServiceUrls) -> None:
    await asyncio.to_thread(db.upgrade, urls.database_url)
    with db.connection_errors(urls.database_url):
        conn = await asyncpg.connect(db.asyncpg_dsn(urls.database_url))
    try:
        await db.maintain_partitions(conn, settings.partitions_ahead_days, settings.retention_days)
    finally:
        await conn.close()
    topics = [*pipeline_topics(settings), *feed_topics(settings), dlq_topic(settings)]
    await ensure_topics(urls.kafka_bootstrap, topics, settings.kafka_partitions)


class Supervisor:
    def __init__(self, parts: list[Part], env: dict[str, str], host: str) -> None:
        self.parts = parts
        self.env = env
        self.host = host
        self.stopping = False

    def start(self, part: Part) -> None:
        command = [sys.executable, "-m", "tickpipe.cli", *part.args]
        # SIGTERM to the part if `tickpipe up` itself dies, so a killed supervisor leaves no orphans.
        guard = parent_death_signal(signal.SIGTERM, os.getpid())
        part.process = subprocess.Popen(command, env=self.env, preexec_fn=guard)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(self.host, part.port, part.ready_path):
            if part.process.poll() is not None:
                raise ServiceStartError(f"{part.name} exited with code {part.process.returncode} while starting")
            if self.stopping:
                return
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"{part.name} did not answer on port {part.port} within {START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.2)
        log.info("%s is up (pid %d, port %d)", part.name, part.process.pid, part.port)

    def first_exit(self) -> Part | None:
        for part in self.parts:
            if part.process is not None and part.process.poll() is not None:
                return part
        return None

    def stop_all(self) -> None:
        for part in reversed(self.parts):
            proc = part.process
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for part in reversed(self.parts):
            proc = part.process
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", part.name, STOP_GRACE_S)
                proc.kill()
                proc.wait()
            log.info("%s stopped (exit %s)", part.name, proc.returncode)


def kafka_description(urls: ServiceUrls) -> str:
    """Which broker runs, and whether its data outlives its own restart."""
    if urls.kafka is None:
        return "KAFKA_BOOTSTRAP_SERVERS"
    if urls.kafka.durable:
        return f"embedded {urls.kafka.name}, data kept on disk in {urls.kafka.data_dir} across restarts"
    return f"embedded {urls.kafka.name}, in memory: its data is lost when it stops; install Java 17 for Apache Kafka"


def psql_command(urls: ServiceUrls) -> str:
    """How to open ``psql`` on the database, with no password in sight (the banner is often shared or logged)."""
    if urls.postgres is not None:
        return f"PGPASSFILE={urls.postgres.pgpass_file.resolve()} psql '{urls.postgres.url_without_password}'"
    return f"psql '{redact_url(urls.database_url)}'"


def banner(settings: Settings, urls: ServiceUrls, with_simulator: bool, data_dir: Path | None = None) -> str:
    api = f"http://{settings.api_host}:{settings.api_port}"
    source = f"simulator ws://{settings.simulator_host}:{settings.simulator_port}" if with_simulator else "Alpaca"
    producers = [
        f"  {'producer' if feed is STOCK else f'producer-{feed.name}':<11} "
        f"http://{settings.producer_admin_host}:{settings.admin_port_for(feed)}/health  "
        f"(upstream {redact_url(settings.upstream_url_for(feed))})"
        for feed in settings.feeds
    ]
    return "\n".join(
        [
            "",
            "tickpipe is running. Ctrl-C stops everything.",
            f"  dashboard   {api}/",
            f"  API docs    {api}/docs",
            "  live stream "
            + ", ".join(f"ws://{settings.api_host}:{settings.api_port}{feed.stream_path}" for feed in settings.feeds),
            f"  upstream    {source}",
            f"  PostgreSQL  {psql_command(urls)}",
            f"  Redis       redis-cli -u {redact_url(urls.redis_url)}",
            f"  Kafka       bootstrap {urls.kafka_bootstrap}  ({kafka_description(urls)})",
            "  health      tickpipe status  (every instance; --watch to follow)",
            *producers,
            f"  consumers   http://{settings.consumer_admin_host}:{settings.consumer_admin_port}/health",
            *([f"  data        {data_dir.resolve()}"] if data_dir is not None else []),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tickpipe up", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"where embedded services keep their data and ports.json (DATA_DIR; default {DEFAULT_DATA_DIR}, "
        "relative to the current directory)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    data_dir = (args.data_dir or settings.data_dir).resolve()
    with_simulator = not settings.uses_alpaca and not settings.alpaca_stream_url
    parts = plan(settings, with_simulator)
    taken: list[BindError] = []
    for part in parts:  # each part's port checked before anything starts, reported as the part itself would
        try:
            bind(settings.api_host, part.port, part.port_variable).close()
        except BindError as error:
            taken.append(error)
    if taken:
        for message in map(str, taken):
            log.error("%s", message)
        return 1

    stop_requested = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        supervisor.stopping = True

    data_dir.mkdir(parents=True, exist_ok=True)
    with start_services(
        data_dir,
        kafka=settings.kafka_bootstrap_servers,
        redis=settings.redis_url,
        database=settings.database_url,
        persistent_postgres=True,
        kafka_embedded=settings.kafka_embedded,
    ) as urls:
        supervisor = Supervisor(parts, child_env(settings, urls), settings.api_host)
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        code = 0
        try:
            asyncio.run(_prepare(settings, urls))
            for part in parts:
                if stop_requested:
                    break
                supervisor.start(part)
            if not stop_requested:
                print(banner(settings, urls, with_simulator, data_dir), flush=True)
            while not stop_requested:
                exited = supervisor.first_exit()
                if exited is not None:
                    assert exited.process is not None
                    log.error("%s exited with code %s: stopping the rest", exited.name, exited.process.returncode)
                    code = 1
                    break
                time.sleep(0.5)
        except TickpipeError as exc:
            log.error("%s: stopping the rest", exc)
            code = 1
        finally:
            with contextlib.suppress(KeyboardInterrupt):
                supervisor.stop_all()
        log.info("stopping services")
    return code
