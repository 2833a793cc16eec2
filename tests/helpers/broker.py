"""Which Kafka broker the tests run on, decided once per session.

``TICKPIPE_TEST_KAFKA`` = ``auto`` (default: Apache Kafka when Java 17+ and its
jars are there, else Tansu), ``apache`` or ``tansu``. With
``KAFKA_BOOTSTRAP_SERVERS`` set, the tests use that broker and take it to be
Apache Kafka unless ``TICKPIPE_TEST_KAFKA=tansu`` says otherwise.

Tests that need what only Apache Kafka does (data kept across a broker restart,
the idempotent producer, exact end offsets) are marked ``apache_kafka`` and
skip on Tansu with that reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tickpipe.dev.embedded_kafka import EmbeddedKafka, KafkaKind, embedded_kafka, kafka_kind
from tickpipe.errors import TickpipeError

REQUESTED = os.environ.get("TICKPIPE_TEST_KAFKA") or "auto"
try:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        KIND: KafkaKind = "tansu" if REQUESTED == "tansu" else "apache"
    else:
        KIND = kafka_kind(REQUESTED)
except TickpipeError as exc:
    raise pytest.UsageError(f"TICKPIPE_TEST_KAFKA={REQUESTED}: {exc}") from exc

#: Whether producers in tests use the idempotent producer (Tansu refuses InitProducerId).
IDEMPOTENCE = KIND == "apache"

apache_kafka = pytest.mark.skipif(
    KIND != "apache",
    reason="needs Apache Kafka (Tansu lacks data kept across a restart, the idempotent producer, exact end offsets)",
)


def private_broker(data_dir: Path, **options: Any) -> EmbeddedKafka:
    """An embedded broker of the session's kind under ``data_dir``, not yet started."""
    return embedded_kafka(data_dir, KIND, **options)
