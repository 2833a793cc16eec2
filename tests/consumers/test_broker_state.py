"""The consumers' /health and /readyz tell a broker that stopped answering, rather than "ok".

While the broker is paused (a hung broker) or killed (a crashed one), lag and
progress are unknown: readiness is false and /health says ``unreachable`` with
the error. When it answers again, both come back without a restart.
"""

from __future__ import annotations

import asyncio

import httpx

from consumers.service import ConsumerService
from tests.helpers.broker import apache_kafka
from tests.helpers.consumers import consumer_settings
from tests.helpers.waiting import wait_for
from tickpipe.dev.embedded_kafka import EmbeddedKafka


async def _state(http: httpx.AsyncClient) -> tuple[int, str]:
    ready = await http.get("/readyz")
    health = (await http.get("/health")).json()
    return ready.status_code, health["workers"]["quotes"]["kafka"]


async def _run_through_outage(private_kafka: EmbeddedKafka, clean_db: str, topic_prefix: str, crash: bool) -> None:
    settings = consumer_settings(private_kafka.url, clean_db, topic_prefix, kafka_request_timeout_ms=3000)
    service = ConsumerService(settings, ["quotes"], admin_port=0)
    assert service.admin is not None
    runner = asyncio.create_task(service.run())
    try:
        async with httpx.AsyncClient(base_url=service.admin.url, timeout=5) as http:

            async def is_(code: int, kafka: str) -> bool:
                try:
                    return await _state(http) == (code, kafka)
                except httpx.TransportError:
                    return False

            await wait_for(lambda: is_(200, "up"), timeout=60, what="ready with Kafka up")
            if crash:
                private_kafka.kill()
            else:
                private_kafka.pause()
            await wait_for(lambda: is_(503, "unreachable"), timeout=60, what="not ready, Kafka unreachable")
            health = (await http.get("/health")).json()
            assert health["workers"]["quotes"]["kafka_error"]
            if crash:
                private_kafka.restart()
            else:
                private_kafka.resume()
            await wait_for(lambda: is_(200, "up"), timeout=90, what="ready again with Kafka up")
    finally:
        service.stop()
        await asyncio.wait_for(runner, timeout=60)


async def test_a_paused_broker_makes_the_consumer_unready_until_it_answers(
    private_kafka: EmbeddedKafka, clean_db: str, topic_prefix: str
) -> None:
    await _run_through_outage(private_kafka, clean_db, topic_prefix, crash=False)


@apache_kafka
async def test_a_killed_and_restarted_broker_makes_the_consumer_unready_until_it_answers(
    private_kafka: EmbeddedKafka, clean_db: str, topic_prefix: str
) -> None:
    await _run_through_outage(private_kafka, clean_db, topic_prefix, crash=True)
