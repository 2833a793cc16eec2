"""The producer's counters and gauges, read once into one snapshot that ``/health``, ``/metrics`` and the
exit summary all show.

The parts keep plain integers on the hot path; the service copies them into one :class:`ProducerCounts`
at one moment, so the three views never disagree about a count read a moment apart, and the metrics
collector needs a function returning counts, not the service.
"""

from __future__ import annotations

from dataclasses import dataclass

from producer.source import UpstreamState


@dataclass(frozen=True, slots=True)
class BackfillCounts:
    """Gaps seen and what the REST API filled them with."""

    gaps_seen: int
    gaps_open: int
    open_seconds: float
    resources: tuple[str, ...]  # REST resources filled
    events: dict[str, int]  # by resource (those with a page fetched)
    unreadable: int
    requests: int
    throttled: int
    waited_s: float


@dataclass(frozen=True, slots=True)
class ProducerCounts:
    """Every count of the producer at one moment (see the module docstring)."""

    upstream_state: UpstreamState
    events_read: int
    frames: int
    reconnects: dict[str, int]
    received: dict[str, int]  # by type code
    dead_letters: int
    redis_connected: bool
    redis_published: int
    redis_queued: int
    redis_dropped: dict[str, int]  # by reason
    kafka_state: str
    kafka_acked: int
    kafka_pending: int
    kafka_held: int  # records kept in memory because the spool takes nothing (disk full, SPOOL_MAX_BYTES)
    kafka_dropped: dict[str, int]  # by reason: "spool_full", "sink_failed"
    spooled: int
    replayed: int
    failed_rounds: int
    failed_batches: dict[str, int]  # by kind: "retriable", "fatal"
    spool_depth: int
    spool_bytes: int
    backfill: BackfillCounts | None

    def summary(self) -> str:
        """One line of the final counts (``key=value``), logged at exit."""
        parts = {
            "events_read": self.events_read,
            "kafka_acked": self.kafka_acked,
            "spooled_total": self.spooled,
            "spool_depth": self.spool_depth,
            "kafka_dropped": sum(self.kafka_dropped.values()),
            "redis_published": self.redis_published,
            "redis_dropped": sum(self.redis_dropped.values()),
            "dead_letters": self.dead_letters,
            "backfilled": sum(self.backfill.events.values()) if self.backfill else 0,
            "gaps_seen": self.backfill.gaps_seen if self.backfill else 0,
        }
        return " ".join(f"{k}={v}" for k, v in parts.items())
