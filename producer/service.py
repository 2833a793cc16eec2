"""The producer, wired: one upstream connection, two sinks, the symbol list and the admin endpoints.

::

    upstream (read loop) --Fanout--> LiveSink    (task) -> Redis
                                 \\-> DurableSink (task) -> Kafka | disk spool

``run()`` serves until :meth:`ProducerService.stop` (SIGTERM), ``max_events``
events (drain mode, for tests and benchmarks) or a fatal upstream refusal;
then it stops reading, flushes Redis and Kafka, spools what Kafka did not
take, and returns within ``PRODUCER_SHUTDOWN_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio
from prometheus_client import CollectorRegistry

from producer.admin_routes import add_symbol_routes
from producer.durable_sink import DurableSink
from producer.fanout import Fanout
from producer.kafka_backend import AiokafkaBackend, KafkaBackend
from producer.live_sink import LiveSink
from producer.metrics import ProducerMetrics
from producer.spool import Spool
from producer.symbols import SymbolRegistry, symbols_key
from producer.upstream import CHANNEL_OF, Connector, UpstreamClient, UpstreamOptions, websocket_connector
from tickpipe.admin import AdminServer, admin_app
from tickpipe.errors import ServiceStartError, SettingsError
from tickpipe.kafka import dlq_topic
from tickpipe.names import FAMILY_OF, topic
from tickpipe.settings import Settings, redact_url

log = logging.getLogger("producer")


def upstream_options(settings: Settings) -> UpstreamOptions:
    key = settings.alpaca_api_key.get_secret_value() if settings.alpaca_api_key else "tickpipe"
    secret = settings.alpaca_api_secret.get_secret_value() if settings.alpaca_api_secret else "tickpipe"
    return UpstreamOptions(
        url=settings.upstream_url,
        key=key,
        secret=secret,
        channels=tuple(dict.fromkeys(CHANNEL_OF[name] for name in settings.subscribed_types)),
        silence_timeout=settings.upstream_silence_timeout_s,
        reconnect_max=settings.upstream_reconnect_max_s,
        conn_limit_wait=settings.upstream_conn_limit_wait_s,
    )


class ProducerService:
    """Everything ``tickpipe producer`` runs. Seams: ``connector`` (upstream socket), ``backend`` (Kafka)."""

    def __init__(
        self,
        settings: Settings,
        *,
        connector: Connector = websocket_connector,
        backend: KafkaBackend | None = None,
        admin: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not settings.kafka_bootstrap_servers or not settings.redis_url:
            missing = [n for n, v in (("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers),
                                      ("REDIS_URL", settings.redis_url)) if not v]  # fmt: skip
            raise SettingsError(f"the producer needs {' and '.join(missing)} (or run `tickpipe up`)")
        self.settings = settings
        prefix = settings.kafka_topic_prefix
        topics = {code: topic(family, prefix) for code, family in FAMILY_OF.items()}
        self.dlq_topic = dlq_topic(settings)
        self.metrics = ProducerMetrics(registry)
        self.live = LiveSink(settings.redis_url, queue_size=settings.live_queue_size)
        self.spool = Spool(settings.spool_path, settings.spool_segment_bytes)
        backend = backend or AiokafkaBackend(
            settings, settings.kafka_bootstrap_servers, [*dict.fromkeys(topics.values()), self.dlq_topic]
        )
        self.durable = DurableSink(
            backend,
            self.spool,
            queue_limit=settings.durable_queue_size,
            spill_after=settings.kafka_spill_after_s,
            linger=settings.kafka_linger_ms / 1000,
            retry_max=min(10.0, settings.upstream_reconnect_max_s),
        )
        self.redis = redis.asyncio.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.symbols = SymbolRegistry(self.redis, settings.subscribed_symbols, symbols_key(prefix))
        self.fanout = Fanout(self.live, self.durable, topics, self.dlq_topic, settings.upstream_url, self.metrics)
        self.upstream = UpstreamClient(upstream_options(settings), self.symbols.current, self.fanout, connector)
        self.admin: AdminServer | None = None
        self._with_admin = admin
        self.started = time.time()

    # --- running -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading upstream; :meth:`run` then flushes the sinks and returns."""
        self.upstream.stop()

    async def run(self, max_events: int | None = None) -> None:
        settings = self.settings
        self.spool.open()
        self.metrics.watch(self)
        self.started = time.time()
        timeout = settings.producer_shutdown_timeout_s
        live = asyncio.create_task(self.live.run(min(5.0, timeout / 3)), name="live-sink")
        durable = asyncio.create_task(self.durable.run(timeout), name="durable-sink")
        loader = asyncio.create_task(self.symbols.load_when_possible(self.upstream.subscribe), name="symbols")
        log.info(
            "producer: upstream %s, Redis %s, Kafka %s (topics %s*), spool %s",
            settings.upstream_url, redact_url(settings.redis_url), settings.kafka_bootstrap_servers,
            settings.kafka_topic_prefix, settings.spool_path,
        )  # fmt: skip
        try:
            if self._with_admin:
                app = admin_app("tickpipe producer", self.metrics.registry, self.ready, self.health)
                add_symbol_routes(app, self)
                host, port = settings.producer_admin_host, settings.producer_admin_port
                try:
                    admin = AdminServer(app, host, port)
                except OSError as exc:
                    raise ServiceStartError(
                        f"the admin endpoints cannot listen on {host}:{port} ({exc}); "
                        "free the port or set PRODUCER_ADMIN_PORT (0 picks a free one)"
                    ) from None
                await admin.start()
                self.admin = admin  # set once it answers
            await self._sinks_first(loader)
            await self.upstream.run(max_events)
        finally:
            loader.cancel()
            self.live.stop()
            self.durable.stop()
            await asyncio.gather(live, durable, loader, return_exceptions=True)
            await self.redis.aclose()
            if self.admin is not None:
                await self.admin.stop()
            log.info("producer stopped: %s", self.summary())

    async def _sinks_first(self, loader: asyncio.Task[None]) -> None:
        """Give Kafka (and the run-time symbols in Redis) a moment before the first upstream frame.

        Kafka being away is no reason not to read upstream (the spool takes
        it), but at start-up it is usually only a connection away.
        """
        waits = [asyncio.ensure_future(self.durable.connected.wait()), asyncio.ensure_future(self.upstream.stopped())]
        try:
            await asyncio.wait(
                waits, timeout=self.settings.kafka_request_timeout_ms / 1000, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for wait in waits:
                wait.cancel()
        if not self.durable.connected.is_set():
            log.warning("Kafka not reachable yet: reading upstream anyway, spooling to disk meanwhile")
        with contextlib.suppress(TimeoutError):  # a slow Redis must not hold back the first subscription
            async with asyncio.timeout(1.0):
                await asyncio.shield(loader)

    def summary(self) -> str:
        """One line of the final counts (``key=value``), logged at exit."""
        stats = self.durable.stats
        parts = {
            "events_read": self.upstream.events,
            "kafka_acked": stats.acked,
            "spooled_total": stats.spooled,
            "spool_depth": self.spool.depth,
            "redis_published": self.live.published,
            "redis_dropped": sum(self.live.dropped.values()),
            "dead_letters": self.fanout.dead_letters,
        }
        return " ".join(f"{k}={v}" for k, v in parts.items())

    # --- admin -----------------------------------------------------------------------------------
    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready while upstream streams and both sinks take records; otherwise why not (Kafka's own error)."""
        checks = {
            "upstream": self.upstream.authenticated,
            "redis": self.live.connected,
            "kafka": self.durable.writable,
        }
        detail: dict[str, Any] = {"checks": checks}
        if not checks["kafka"]:
            durable = self.durable
            detail["kafka"] = {"state": durable.state, "error": durable.fatal or durable.stats.last_error}
        return all(checks.values()), detail

    async def health(self) -> dict[str, Any]:
        up, live, durable = self.upstream, self.live, self.durable
        loop_time = asyncio.get_running_loop().time()
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "upstream": {
                "state": up.state.value,
                "url": self.settings.upstream_url,
                "events": up.events,
                "frames": up.frames,
                "seconds_since_last_frame": round(loop_time - up.last_frame_at, 3) if up.last_frame_at else None,
                "reconnects": dict(up.reconnects),
                "last_error": up.last_error,
                "subscription": up.subscription,
            },
            "received": dict(self.fanout.received),
            "dead_letters": self.fanout.dead_letters,
            "redis": {
                "connected": live.connected,
                "published": live.published,
                "queued": len(live.queue),
                "dropped": dict(live.dropped),
                "last_error": live.last_error,
            },
            "kafka": {
                "state": durable.state,
                "fatal_error": durable.fatal,
                "partitions": durable.partitions,
                "acked": durable.stats.acked,
                "pending": durable.pending,
                "spooled_total": durable.stats.spooled,
                "replayed": durable.stats.replayed,
                "failed_rounds": durable.stats.failed_rounds,
                "failed_batches": dict(durable.stats.failed_batches),
                "last_error": durable.stats.last_error,
            },
            "spool": {"depth": self.spool.depth, "bytes": self.spool.size_bytes, "path": str(self.spool.directory)},
            "symbols": self.symbols.current(),
        }
