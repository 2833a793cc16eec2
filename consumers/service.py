"""The consumers as one service: a worker per table, a shared dead-letter producer, the admin endpoints.

``tickpipe consume all`` runs a worker (a consumer group) per stored family of
the feed (quotes, trades, bars) in one event loop; ``tickpipe consume quotes``
one. The tests drive this class directly, in burst mode, so they run the real
loop to completion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError

from consumers.dlq import DeadLetterSink
from consumers.metrics import ConsumerMetrics
from consumers.progress import WorkerStats
from consumers.tables import SPECS, tables_of
from consumers.worker import Worker
from tickpipe.admin import AdminServer, admin_app
from tickpipe.errors import ServiceStartError, SettingsError
from tickpipe.feeds import Feed
from tickpipe.kafka import dlq_topic, ensure_topics, make_producer
from tickpipe.settings import Settings

log = logging.getLogger(__name__)

#: The tables a worker can write: every feed's stored families (:data:`consumers.tables.SPECS`).
TABLES = tuple(SPECS)


def tables_for(name: str, feeds: tuple[Feed, ...] | None = None) -> list[str]:
    """``all`` (the tables of ``feeds``, ALPACA_FEEDS' by default: every feed's when None) or one table name."""
    if name == "all":
        return list(TABLES if feeds is None else tables_of(feeds))
    if name not in TABLES:
        raise SettingsError(f"expected {', '.join(TABLES)} or all, got {name!r}")
    return [name]


class ConsumerService:
    """Workers for ``tables`` plus /healthz, /readyz, /health and /metrics on the admin port."""

    def __init__(
        self,
        settings: Settings,
        tables: Sequence[str],
        *,
        bootstrap: str | None = None,
        database_url: str | None = None,
        burst: bool = False,
        group: str | None = None,
        admin: bool = True,
        admin_port: int | None = None,
        worker_options: dict[str, Any] | None = None,
    ) -> None:
        bootstrap = bootstrap or settings.kafka_bootstrap_servers
        database_url = database_url or settings.database_url
        if not bootstrap:
            raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is not set: the consumers need a Kafka to read from")
        if not database_url:
            raise SettingsError("DATABASE_URL is not set: the consumers need a PostgreSQL to write to")
        self.settings = settings
        self.bootstrap = bootstrap
        self.metrics = ConsumerMetrics()
        self.producer = make_producer(settings, bootstrap, client_id="tickpipe-consumer-dlq")
        self.sink = DeadLetterSink(self.producer, dlq_topic(settings))
        self.workers = [
            Worker(
                settings,
                table,
                bootstrap=bootstrap,
                database_url=database_url,
                sink=self.sink,
                metrics=self.metrics,
                group=f"{group}.{table}" if group and len(tables) > 1 else group,
                burst=burst,
                **(worker_options or {}),
            )
            for table in tables
        ]
        self.admin: AdminServer | None = None
        if admin:
            app = admin_app("tickpipe consumers", self.metrics.registry, self.ready, self.health)
            port = settings.consumer_admin_port if admin_port is None else admin_port
            self.admin = AdminServer(
                app, settings.consumer_admin_host, port, setting="CONSUMER_ADMIN_PORT",
                token=settings.tickpipe_admin_token,
            )  # fmt: skip

    def stop(self) -> None:
        """Graceful stop (SIGTERM): each worker finishes or abandons its batch and leaves its group."""
        for worker in self.workers:
            worker.stop()

    async def run(self) -> dict[str, WorkerStats]:
        """Run every worker until stopped (or caught up in burst mode); a worker's crash stops the others."""
        topics = [worker.topic for worker in self.workers]
        try:
            await ensure_topics(self.bootstrap, [*topics, self.sink.topic], self.settings.kafka_partitions)
            await self.producer.start()
        except KafkaError as exc:
            await self.producer.stop()
            raise ServiceStartError(
                f"Kafka at {self.bootstrap} did not answer ({exc}); check KAFKA_BOOTSTRAP_SERVERS"
            ) from exc
        if self.admin is not None:
            await self.admin.start()
        try:
            tasks = [asyncio.create_task(worker.run(), name=f"consume-{worker.table}") for worker in self.workers]
            try:
                _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            except BaseException:
                self.stop()
                await asyncio.wait(tasks)
                raise
            if pending:  # one worker crashed: stop the others cleanly, then report the crash
                self.stop()
                await asyncio.wait(pending)
            for task in tasks:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            return {worker.table: task.result() for worker, task in zip(self.workers, tasks, strict=True)}
        finally:
            if self.admin is not None:
                await self.admin.stop()
            try:
                await self.producer.stop()
            except KafkaError as exc:
                log.warning("dead-letter producer did not stop cleanly: %s", exc)

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every worker has joined its group, Kafka answers and PostgreSQL took the last write.

        A broker that stopped answering makes the state unknown (lag, progress), so it is not ready.
        """
        detail = {
            worker.table: {"joined": worker.joined, "kafka": worker.kafka_state, "database_up": worker.database_up}
            for worker in self.workers
        }
        ok = all(
            worker.running and worker.joined and worker.kafka_state == "up" and worker.database_up
            for worker in self.workers
        )
        return ok, {"workers": detail}

    async def health(self) -> dict[str, Any]:
        return {
            "workers": {
                worker.table: {
                    "group": worker.group,
                    "topic": worker.topic,
                    "running": worker.running,
                    "joined": worker.joined,
                    "kafka": worker.kafka_state,
                    "kafka_error": worker.kafka_error,
                    "database_up": worker.database_up,
                    "writing": worker.writing,
                    "partitions": sorted(tp.partition for tp in worker.assigned),
                    "lag": worker.lag(),
                    "stats": vars(worker.stats),
                }
                for worker in self.workers
            },
            "dead_letters_sent": self.sink.sent,
        }
