"""Fixtures of the producer's tests: a real broker behind a proxy that stalls or drops acknowledgements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.producer import AckDroppingProxy, KafkaStallProxy, ProxiedKafka, behind
from tickpipe.dev.embedded_kafka import EmbeddedKafka


@pytest.fixture
async def ack_dropping_kafka(service_dir: Path) -> AsyncIterator[tuple[EmbeddedKafka, AckDroppingProxy]]:
    """A private broker that clients reach only through an :class:`AckDroppingProxy`."""
    async with behind(AckDroppingProxy(), service_dir) as pair:
        yield pair


@pytest.fixture
async def stalling_kafka(service_dir: Path) -> AsyncIterator[tuple[ProxiedKafka, KafkaStallProxy]]:
    """A private broker that clients reach only through a :class:`KafkaStallProxy`."""
    async with behind(KafkaStallProxy(), service_dir) as pair:
        yield pair
