"""The dead-letter topic read as a stream: a topic of any size is listed in the memory of one fetch."""

from __future__ import annotations

import tracemalloc

from aiokafka import AIOKafkaProducer

from consumers.dlq import FETCH_MAX_BYTES, stream_dead_letters
from tests.helpers.broker import apache_kafka
from tickpipe.dlq import DeadLetter, encode_dead_letter
from tickpipe.kafka import ensure_topics

LETTERS = 6_000
ORIGINAL_BYTES = 8_192  # 6,000 letters: about 48 MiB in the topic


@apache_kafka  # Tansu answers a fetch with more than fetch_max_bytes (26.8 MB here): the bound is the broker's too
async def test_listing_a_large_topic_holds_about_one_fetch_at_a_time(kafka_bootstrap: str, topic_prefix: str) -> None:
    name = f"{topic_prefix}dlq"
    await ensure_topics(kafka_bootstrap, [name], 3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_batch_size=1 << 20)
    await producer.start()
    try:
        sends = [
            await producer.send(
                name,
                encode_dead_letter(DeadLetter(reason="test", stage="consumer", source_topic="t",
                                              original=n.to_bytes(4, "big") * (ORIGINAL_BYTES // 4))),
                key=str(n % 7).encode(),
            )
            for n in range(LETTERS)
        ]  # fmt: skip
        for sent in sends:
            await sent
    finally:
        await producer.stop()

    tracemalloc.start()
    try:
        seen = 0
        async for item in stream_dead_letters(kafka_bootstrap, name):
            assert item.letter is not None and len(item.letter.original) == ORIGINAL_BYTES
            seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == LETTERS
    total = LETTERS * ORIGINAL_BYTES
    # At most the fetch being read, the one aiokafka prefetches meanwhile and the decoded letters of one
    # fetch (3 x 4 MiB), plus room for the client's own state: under half the topic's size, which a list of
    # every letter (its bytes and their decoded copies: twice the topic) would exceed many times over.
    assert peak < 4 * FETCH_MAX_BYTES < total / 2, (peak, total)
