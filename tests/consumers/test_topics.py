"""Topics and the consumers: created with KAFKA_PARTITIONS by the service, never by a consumer's metadata request.

The session broker creates topics it is asked about (``auto.create.topics.enable=true``,
as in docker-compose.yml), with its own ``num.partitions`` (6): the tests use
another ``KAFKA_PARTITIONS`` so a topic made by the broker's default shows.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers.collect import make_consumer
from consumers.service import ConsumerService
from tests.helpers.broker import apache_kafka
from tests.helpers.consumers import consumer_settings, count_rows, make_quotes, produce, records_of
from tests.helpers.waiting import wait_for
from tickpipe.kafka import dlq_topic, ensure_topics
from tickpipe.names import topic
from tickpipe.settings import Settings

pytestmark = apache_kafka


@pytest.fixture
def settings(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, clean_db, topic_prefix, kafka_partitions=3)


async def topics(bootstrap: str) -> dict[str, int]:
    """Every topic of the broker and its partition count (a metadata request for all topics creates none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(await admin.list_topics())}
    finally:
        await admin.close()


async def subscribe_briefly(consumer: AIOKafkaConsumer, name: str) -> None:
    """Subscribe to ``name`` and start: start() asks for its metadata until its request timeout, then gives up."""
    consumer.subscribe([name])
    try:
        await consumer.start()
    except KafkaError:
        pass
    finally:
        await consumer.stop()


async def test_a_consumer_asking_about_a_missing_topic_does_not_create_it(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    ours, plain = f"{settings.kafka_topic_prefix}ours", f"{settings.kafka_topic_prefix}plain"
    # A plain aiokafka consumer, for contrast: its metadata request makes the broker create the topic.
    plain_consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=plain, request_timeout_ms=3_000)
    await subscribe_briefly(plain_consumer, plain)
    await subscribe_briefly(make_consumer(settings, bootstrap, ours, "quotes", request_timeout_ms=3_000), ours)
    found = await topics(bootstrap)
    assert found.get(plain) == 6  # the broker's num.partitions, not KAFKA_PARTITIONS
    assert ours not in found


async def test_the_service_creates_its_topics_with_kafka_partitions(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    await ConsumerService(settings, ["quotes", "trades"], burst=True, admin=False).run()
    found = await topics(bootstrap)
    prefix = settings.kafka_topic_prefix
    assert found[topic("quotes", prefix)] == found[topic("trades", prefix)] == 3
    assert found[dlq_topic(settings)] == 3
    assert topic("bars", prefix) not in found  # not consumed here, so not created either


@pytest.mark.slow
async def test_a_topic_deleted_under_a_running_consumer_is_not_recreated_by_it_and_is_read_again_once_it_is(
    settings: Settings,
) -> None:
    bootstrap, db_url = settings.kafka_bootstrap_servers, settings.database_url
    assert bootstrap is not None and db_url is not None
    name = topic("quotes", settings.kafka_topic_prefix)
    quotes = make_quotes(2_000, seed=111)
    service = ConsumerService(settings, ["quotes"], admin=False)
    runner = asyncio.create_task(service.run())
    worker = service.workers[0]
    try:
        await produce(bootstrap, settings, name, records_of(quotes[:1_000]))

        async def first_half() -> bool:
            return await count_rows(db_url, "quotes") == 1_000

        await wait_for(first_half, timeout=60, what="the first 1000 rows")
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([name])
        finally:
            await admin.close()

        async def partitions_lost() -> bool:
            return not worker.assigned

        await wait_for(partitions_lost, timeout=120, what="the consumer to lose the deleted topic's partitions")
        assert name not in await topics(bootstrap)  # it noticed, and did not create it again
        await ensure_topics(bootstrap, [name], settings.kafka_partitions)  # as a producer or an operator would
        await produce(bootstrap, settings, name, records_of(quotes[1_000:]))

        async def all_rows() -> bool:
            return await count_rows(db_url, "quotes") == 2_000

        await wait_for(all_rows, timeout=120, what="the rows of the topic created again")
        assert len(worker.assigned) == 3 and (await topics(bootstrap))[name] == 3
    finally:
        service.stop()
        await asyncio.wait_for(runner, timeout=60)
