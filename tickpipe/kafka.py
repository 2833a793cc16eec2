"""Kafka clients configured the same way everywhere, and topic creation.

Idempotence is a setting (on for real Kafka) because the development broker,
Tansu, refuses InitProducerId; ``acks=all`` always.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tickpipe.names import DLQ_TOPIC, REQUIRED_FAMILIES, topic
from tickpipe.settings import Settings

log = logging.getLogger(__name__)


def make_producer(settings: Settings, bootstrap: str, **overrides: object) -> AIOKafkaProducer:
    """An aiokafka producer tuned for throughput with per-key order and acks from all in-sync replicas."""
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "linger_ms": settings.kafka_linger_ms,
        "max_batch_size": settings.kafka_max_batch_bytes,
        "compression_type": None if settings.kafka_compression == "none" else settings.kafka_compression,
        "request_timeout_ms": 30_000,
        "client_id": "tickpipe",
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def pipeline_topics(settings: Settings, families: Iterable[str] = REQUIRED_FAMILIES) -> list[str]:
    return [topic(family, settings.kafka_topic_prefix) for family in families]


def dlq_topic(settings: Settings) -> str:
    return DLQ_TOPIC if settings.kafka_topic_prefix == "tickpipe." else f"{settings.kafka_topic_prefix}dlq"


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int, replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet; return those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tickpipe-admin")
    try:
        await admin.start()  # inside the try: a caller's timeout may cancel it, and the client must still close
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(name, partitions, replication) for name in missing])
            except TopicAlreadyExistsError:
                pass
            log.info("created Kafka topics %s with %d partitions", ", ".join(missing), partitions)
        return missing
    finally:
        await admin.close()
