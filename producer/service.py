"""The producer, wired: one upstream connection, two sinks, the symbol list and the admin endpoints.

One producer process per feed (``tickpipe producer --feed stocks|crypto|options``): the :class:`Feed` given
names its upstream URL, channels, transcoder, topics, Redis channels and hashes, symbols key, spool and
the REST history its gaps are filled from (``Feed.history_path``; the stock feed's names and paths are
those of before; the options feed's is its trades', ``/v1beta1/options/trades``).

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
from collections.abc import Coroutine
from typing import Any

import redis.asyncio
from prometheus_client import CollectorRegistry

from producer.admin_routes import add_symbol_routes
from producer.backfill import Backfiller
from producer.counts import BackfillCounts, ProducerCounts
from producer.durable_sink import DurableSink
from producer.errors import describe
from producer.fanout import Fanout, tick_codes
from producer.gaps import Checkpoints, GapTracker, StateFile
from producer.history_client import HistoryClient
from producer.kafka_backend import AiokafkaBackend, KafkaBackend
from producer.live_sink import LiveSink
from producer.metrics import ProducerMetrics
from producer.source import Connector, UpstreamOptions, channel_of, websocket_connector
from producer.spool import Spool
from producer.symbols import SymbolRegistry, symbols_key
from producer.trading_transcode import transcoder_of
from producer.upstream import UpstreamClient
from tickpipe.admin import AdminServer, admin_app
from tickpipe.backoff import EqualJitterBackoff
from tickpipe.errors import SettingsError
from tickpipe.feeds import STOCK, Feed
from tickpipe.kafka import dlq_topic
from tickpipe.names import topic
from tickpipe.settings import FEED_SETTINGS, Settings, redact_url, validator_for

log = logging.getLogger("producer")

#: How often the gap state is considered for writing (it is written once its records are safe).
CHECKPOINT_INTERVAL_S = 0.5


def backfill_resources(settings: Settings, feed: Feed = STOCK) -> list[str]:
    """REST resources filled after a gap: each subscribed family's history, then those fetched only when
    asked for (quotes: BACKFILL_QUOTES)."""
    subscribed = settings.subscribed_types_for(feed)
    wanted = [f for f in feed.families if f.history and not f.history_on_request
              and f.types[0].channel in subscribed]  # fmt: skip
    asked = [f for f in feed.families if f.history and f.history_on_request and settings.backfill_quotes]
    return [f.history for f in (*wanted, *asked) if f.history]


def alpaca_keys(settings: Settings) -> tuple[str, str]:
    """The account's key and secret, for the stream and the REST API (any will do for the simulator)."""
    key = settings.alpaca_api_key.get_secret_value() if settings.alpaca_api_key else "tickpipe"
    secret = settings.alpaca_api_secret.get_secret_value() if settings.alpaca_api_secret else "tickpipe"
    return key, secret


#: The stream variants whose REST history exists (``feed=``): Alpaca's ``test`` stream has none.
HISTORY_VARIANTS = ("iex", "sip")


def history_client(settings: Settings, feed: Feed = STOCK) -> HistoryClient:
    """The REST client for this account and the feed's history (``Feed.history_path``)."""
    key, secret = alpaca_keys(settings)
    variant = None
    if feed.history_feed:
        variant = settings.alpaca_feed if settings.alpaca_feed in HISTORY_VARIANTS else "iex"
    return HistoryClient(
        settings.data_url, key, secret, variant, of=feed, per_minute=settings.backfill_requests_per_minute,
    )  # fmt: skip


class DurablePut:
    """The backfill's :class:`~producer.backfill.RecordSink` in the producer: the durable sink, with
    backpressure (a long gap must not fill memory; the live stream's records go through the same queue)."""

    def __init__(self, durable: DurableSink, limit: int) -> None:
        self.durable = durable
        self.limit = limit

    async def put(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        self.durable.offer(records)
        await self.durable.room(self.limit)


#: Logged and shown in /health by a producer of a feed whose gaps are not filled.
NO_BACKFILL = "gaps in the {feed} feed are not filled: it declares no REST history"


def feed_channels(settings: Settings, feed: Feed) -> tuple[str, ...]:
    """The upstream channels a feed's connection subscribes to: SUBSCRIBED_TYPES for stocks,
    CRYPTO_SUBSCRIBED_TYPES for crypto (default: trades, quotes, order books, bars, updated and daily bars)."""
    of = channel_of(feed)
    return tuple(dict.fromkeys(of[name] for name in settings.subscribed_types_for(feed)))


def upstream_options(settings: Settings, feed: Feed = STOCK) -> UpstreamOptions:
    key, secret = alpaca_keys(settings)
    return UpstreamOptions(
        url=settings.upstream_url_for(feed),
        dialect=feed.dialect,
        key=key,
        secret=secret,
        channels=feed_channels(settings, feed),
        silence_timeout=settings.upstream_silence_timeout_s,
        reconnect_max=settings.upstream_reconnect_max_s,
        conn_limit_wait=settings.upstream_conn_limit_wait_s,
    )


class ProducerService:
    """Everything ``tickpipe producer`` runs. Seams: ``connector`` (upstream socket), ``backend`` (Kafka),
    ``spool`` (the disk spool, e.g. with a writer failing as a full disk does)."""

    def __init__(
        self,
        settings: Settings,
        *,
        connector: Connector = websocket_connector,
        backend: KafkaBackend | None = None,
        spool: Spool | None = None,
        admin: bool = True,
        registry: CollectorRegistry | None = None,
        feed: Feed = STOCK,
    ) -> None:
        if not settings.kafka_bootstrap_servers or not settings.redis_url:
            missing = [n for n, v in (("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers),
                                      ("REDIS_URL", settings.redis_url)) if not v]  # fmt: skip
            raise SettingsError(f"the producer needs {' and '.join(missing)} (or run `tickpipe up`)")
        self.settings = settings
        self.feed = feed
        self.upstream_url = settings.upstream_url_for(feed)
        spool_path = settings.spool_path_for(feed)
        prefix = settings.kafka_topic_prefix
        words = feed.word_of
        topics = {code: topic(word, prefix) for code, word in words.items()}
        self.topics = topics
        self.dlq_topic = dlq_topic(settings)
        self.metrics = ProducerMetrics(registry)
        books = frozenset(code for family in feed.families if family.book for code in family.codes)
        routed = any(family.channels is not None for family in feed.families)  # news: a story on each symbol's
        self.live = LiveSink(
            settings.redis_url, queue_size=settings.live_queue_size, words=words, book_codes=books, routed=routed
        )
        self.spool = spool or Spool(spool_path, settings.spool_segment_bytes, settings.spool_max_bytes)
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
            hold_limit=settings.spool_hold_events,
        )
        self.redis = redis.asyncio.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        # A feed without symbols (the trading stream) has a set of its own, never the stock feed's.
        own_key = symbols_key(prefix, feed.qualifier if feed.subscribes else feed.name)
        self.symbols = SymbolRegistry(self.redis, settings.symbols_for(feed), own_key, validator_for(feed))
        self.gaps: GapTracker | None = None
        self.backfiller: Backfiller | None = None
        self.resources = backfill_resources(settings, feed) if feed.history_path else []
        #: Why gaps are not filled, for a feed that declares no REST history (shown in /health).
        self.no_backfill: str | None = None
        if not feed.history_path:
            self.no_backfill = NO_BACKFILL.format(feed=feed.name)
            log.warning("gaps: %s", self.no_backfill)
        elif settings.backfill_enabled and (not feed.history_feed or settings.alpaca_feed in HISTORY_VARIANTS):
            self.gaps = GapTracker(
                margin_ns=int(settings.backfill_margin_s * 1e9),
                max_window_ns=int(settings.backfill_max_window_s * 1e9),
                subscribed=self.symbols.current,
                feed=feed,
            )
            put = DurablePut(self.durable, max(1, settings.durable_queue_size // 2))
            self.backfiller = Backfiller(
                history_client(settings, feed), put, topics, self.resources, bar_lead_ns=60 * 1_000_000_000, feed=feed
            )
        elif settings.backfill_enabled:
            log.warning("gaps: the %s feed has no REST history; gaps in it are not filled", settings.alpaca_feed)
        self.state_file = StateFile(spool_path / "gaps.json")
        self.checkpoints = Checkpoints(self.state_file, lambda: self.durable.offered, lambda: self.durable.settled)
        self._gap_signal = asyncio.Event()
        self.fanout = Fanout(
            self.live, self.durable, topics, self.dlq_topic, self.upstream_url, self.metrics, self.gaps,
            ticks=tick_codes(feed), keyed_by_symbol=all(family.key == "symbol" for family in feed.families),
        )  # fmt: skip
        self.upstream = UpstreamClient(
            upstream_options(settings, feed), self.symbols.current, self.fanout, connector, transcoder_of(feed)
        )
        if self.gaps is not None:
            self.gaps.on_gap = self._gap_signal.set
            self.upstream.on_connect = self.gaps.session_started
        self.admin: AdminServer | None = None
        self._with_admin = admin
        #: The sinks' tasks, supervised: one that dies is logged with its traceback and named here.
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.task_errors: dict[str, str] = {}
        self.started = time.time()

    # --- running -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading upstream; :meth:`run` then flushes the sinks and returns."""
        self.upstream.stop()

    async def run(self, max_events: int | None = None) -> None:
        settings = self.settings
        self.spool.open()
        self.metrics.watch(self.counts)
        self.started = time.time()
        timeout = settings.producer_shutdown_timeout_s
        live = self._supervised(self.live.run(min(5.0, timeout / 3)), "live-sink")
        durable = self._supervised(self.durable.run(timeout), "durable-sink")
        loader = asyncio.create_task(self.symbols.load_when_possible(self.upstream.subscribe), name="symbols")
        helpers: list[asyncio.Task[None]] = []
        if self.gaps is not None:
            state = self.state_file.read()
            if state is not None:
                self.gaps.restore(state)
                log.info(
                    "gaps: state read from %s (stream position %d, %d gaps to fill)",
                    self.state_file.path, self.gaps.watermark, len(self.gaps.gaps),
                )  # fmt: skip
                self._gap_signal.set()
            helpers = [self._supervised(self._fill_gaps(), "backfill"),
                       self._supervised(self._checkpoint_loop(), "gap-state")]  # fmt: skip
        log.info(
            "producer (%s feed): upstream %s, Redis %s, Kafka %s (topics %s), spool %s",
            self.feed.name, self.upstream_url, redact_url(settings.redis_url), settings.kafka_bootstrap_servers,
            ", ".join(dict.fromkeys(self.topics.values())), self.spool.directory,
        )  # fmt: skip
        try:
            if self._with_admin:
                app = admin_app("tickpipe producer", self.metrics.registry, self.ready, self.health)
                add_symbol_routes(app, self.symbols, self.upstream)
                admin = AdminServer(
                    app, settings.producer_admin_host, settings.admin_port_for(self.feed),
                    setting=FEED_SETTINGS[self.feed.name].admin_port.upper(),
                    token=settings.tickpipe_admin_token,
                )  # fmt: skip
                await admin.start()
                self.admin = admin  # set once it answers
            await self._sinks_first(loader)
            await self.upstream.run(max_events)
        finally:
            loader.cancel()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.live.stop()
            self.durable.stop()
            await asyncio.gather(live, durable, loader, return_exceptions=True)
            if self.gaps is not None:  # everything offered is now acknowledged or spooled
                self.checkpoints.take(self.gaps.snapshot())
                self.checkpoints.flush()
            if self.backfiller is not None:
                await self.backfiller.client.aclose()
            await self.redis.aclose()
            if self.admin is not None:
                await self.admin.stop()
            log.info("producer stopped: %s", self.summary())

    def _supervised(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._ended)
        self.tasks[name] = task
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A sink's task is over: if it died, say so loudly; readiness is false from now on."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        name = task.get_name()
        self.task_errors[name] = describe(exc)
        log.error(
            "producer: the %s task died (%s); the producer is not ready until it is restarted",
            name, self.task_errors[name], exc_info=exc,
        )  # fmt: skip

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

    # --- gaps ------------------------------------------------------------------------------------
    async def _checkpoint_loop(self) -> None:
        """Offer the gap state for writing twice a second; it is written once its records are safe."""
        assert self.gaps is not None
        failing: str | None = None
        while True:
            self.checkpoints.take(self.gaps.snapshot())
            state = self.checkpoints.due()
            if state is not None:  # the fsync off the loop: the read loop must not wait on the disk
                try:
                    await asyncio.to_thread(self.state_file.write, state)
                except OSError as exc:  # a full disk: a later state is written once it has room
                    if failing != (failing := describe(exc)):
                        log.error("gaps: state not written to %s (%s); trying again", self.state_file.path, failing)
                else:
                    failing = None
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)

    async def _fill_gaps(self) -> None:
        """Fill the gaps one after the other, oldest first, as they open; a failed fill is tried again later."""
        gaps, backfiller = self.gaps, self.backfiller
        assert gaps is not None and backfiller is not None
        failures, retry = 0, EqualJitterBackoff(base=1.0, cap=60.0)
        while True:
            await self._gap_signal.wait()
            self._gap_signal.clear()
            while gaps.gaps:
                gap = gaps.gaps[0]
                try:
                    await backfiller.fill(gap, lambda *_: self.checkpoints.take(gaps.snapshot()))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    backfiller.last_error = describe(exc)
                    delay = retry.compute(failures)
                    log.error("backfill: %s; trying the gap again in %.1f s", backfiller.last_error, delay)
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                if gap in gaps.gaps:
                    gaps.gaps.remove(gap)
                self.checkpoints.take(gaps.snapshot())
                log.info("backfill: gap filled (%s); %s", gap.cause, dict(backfiller.events))

    def backfill_counts(self) -> BackfillCounts | None:
        """Gaps and backfill, counted (None when gaps are not filled)."""
        gaps, backfiller = self.gaps, self.backfiller
        if gaps is None or backfiller is None:
            return None
        stats = backfiller.client.stats
        return BackfillCounts(
            gaps_seen=gaps.gaps_seen,
            gaps_open=len(gaps.gaps),
            open_seconds=gaps.open_seconds(self.resources),
            resources=tuple(self.resources),
            events=dict(backfiller.events),
            unreadable=backfiller.unreadable,
            requests=stats.requests,
            throttled=stats.throttled,
            waited_s=stats.waited_s,
        )

    def counts(self) -> ProducerCounts:
        """Every counter of the producer, read once: what ``/health``, ``/metrics`` and :meth:`summary` show."""
        up, live, durable, stats = self.upstream, self.live, self.durable, self.durable.stats
        return ProducerCounts(
            upstream_state=up.state,
            events_read=up.events,
            frames=up.frames,
            reconnects=dict(up.reconnects),
            received=dict(self.fanout.received),
            dead_letters=self.fanout.dead_letters,
            redis_connected=live.connected,
            redis_published=live.published,
            redis_queued=len(live.queue),
            redis_dropped=dict(live.dropped),
            kafka_state=durable.state,
            kafka_acked=stats.acked,
            kafka_pending=durable.pending,
            kafka_held=durable.held,
            kafka_dropped=dict(stats.dropped),
            spooled=stats.spooled,
            replayed=stats.replayed,
            failed_rounds=stats.failed_rounds,
            failed_batches=dict(stats.failed_batches),
            spool_depth=self.spool.depth,
            spool_bytes=self.spool.size_bytes,
            backfill=self.backfill_counts(),
        )

    def backfill_health(self, counts: BackfillCounts | None) -> dict[str, Any]:
        """What ``/health`` shows of gaps and backfill."""
        gaps, backfiller = self.gaps, self.backfiller
        if counts is None or gaps is None or backfiller is None:
            return {"enabled": False, **({"note": self.no_backfill} if self.no_backfill else {})}
        return {
            "enabled": True,
            "url": backfiller.client.base_url,
            "resources": self.resources,
            "gaps_seen": counts.gaps_seen,
            "gaps_open": counts.gaps_open,
            "open_seconds": round(counts.open_seconds, 3),
            "events": counts.events,
            "unreadable": counts.unreadable,
            "requests": counts.requests,
            "throttled": counts.throttled,
            "waited_s": round(counts.waited_s, 3),
            "rate_limit": backfiller.client.stats.last_limit,
            "last_error": backfiller.last_error,
            "stream_position_ns": gaps.watermark,
            "state_file": str(self.state_file.path),
        }

    def summary(self) -> str:
        """One line of the final counts (``key=value``), logged at exit."""
        return self.counts().summary()

    # --- admin -----------------------------------------------------------------------------------
    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready while upstream streams and both sinks take records; otherwise why not (Kafka's own error)."""
        checks = {
            "upstream": self.upstream.authenticated,
            "redis": self.live.connected and "live-sink" not in self.task_errors,
            "kafka": self.durable.writable and "durable-sink" not in self.task_errors,
        }
        detail: dict[str, Any] = {"checks": checks}
        if not checks["kafka"]:
            durable = self.durable
            error = durable.fatal or durable.task_error or durable.stats.last_error
            detail["kafka"] = {"state": durable.state, "error": error}
        if self.task_errors:
            detail["tasks"] = dict(self.task_errors)
        return all(checks.values()), detail

    async def health(self) -> dict[str, Any]:
        up, live, durable = self.upstream, self.live, self.durable
        now = self.counts()
        loop_time = asyncio.get_running_loop().time()
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "feed": self.feed.name,
            "topics": sorted(set(self.topics.values())),
            "upstream": {
                "state": now.upstream_state.value,
                "url": self.upstream_url,
                "events": now.events_read,
                "frames": now.frames,
                "seconds_since_last_frame": round(loop_time - up.last_frame_at, 3) if up.last_frame_at else None,
                "reconnects": now.reconnects,
                "last_error": up.last_error,
                "subscription": up.subscription,
            },
            "received": now.received,
            "dead_letters": now.dead_letters,
            "redis": {
                "connected": now.redis_connected,
                "published": now.redis_published,
                "queued": now.redis_queued,
                "dropped": now.redis_dropped,
                "last_error": live.last_error,
            },
            "kafka": {
                "state": now.kafka_state,
                "fatal_error": durable.fatal,
                "partitions": durable.partitions,
                "acked": now.kafka_acked,
                "pending": now.kafka_pending,
                "spooled_total": now.spooled,
                "replayed": now.replayed,
                "failed_rounds": now.failed_rounds,
                "failed_batches": now.failed_batches,
                "last_error": durable.stats.last_error,
                "task_error": durable.task_error,
                "held": now.kafka_held,
                "dropped": now.kafka_dropped,
            },
            "spool": {
                "depth": now.spool_depth,
                "bytes": now.spool_bytes,
                "max_bytes": self.spool.max_bytes,
                "path": str(self.spool.directory),
                "error": durable.hold.error,
            },
            "tasks": {
                name: "running" if not task.done() else self.task_errors.get(name, "stopped")
                for name, task in self.tasks.items()
            },
            "symbols": self.symbols.current(),
            "backfill": self.backfill_health(now.backfill),
        }
