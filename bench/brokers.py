"""Which Kafka brokers a benchmark runs on: ``--brokers apache,tansu``, or the one ``KAFKA_BOOTSTRAP_SERVERS`` names.

By default a benchmark runs on the embedded Apache Kafka (the broker users
deploy) and then on the embedded Tansu (the no-Java fallback of ``tickpipe
up``), so each Apache Kafka figure has the Tansu one beside it. The idempotent
producer is on where the broker grants it (Apache Kafka, as deployed) and off
on Tansu, which refuses InitProducerId. A broker given by address is used
alone, labelled "given", with ``KAFKA_ENABLE_IDEMPOTENCE`` (default on).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from tickpipe.dev.embedded_kafka import EmbeddedApacheKafka, EmbeddedTansu, embedded_kafka, kafka_kind
from tickpipe.kafka import ensure_topics
from tickpipe.settings import load_settings

KINDS = ("apache", "tansu")
LABELS = {"apache": "Apache Kafka", "tansu": "Tansu"}
IDEMPOTENCE = {"apache": EmbeddedApacheKafka.idempotence, "tansu": EmbeddedTansu.idempotence}


@dataclass(frozen=True)
class Broker:
    """One broker to measure on: an embedded one of ``kind``, or the one at ``address``."""

    label: str
    idempotence: bool
    kind: str | None = None
    address: str | None = None

    @property
    def description(self) -> str:
        return f"{self.label} (idempotent producer {'on' if self.idempotence else 'off'})"


def brokers_option(value: str) -> list[str]:
    """``--brokers``: a comma list of ``apache`` and ``tansu``, in the order given."""
    kinds = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(KINDS)}, got {value!r}")
    return list(dict.fromkeys(kinds))


def add_brokers_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--brokers",
        type=brokers_option,
        default=list(KINDS),
        metavar="apache,tansu",
        help="embedded brokers to run on, in this order (default: apache,tansu); "
        "ignored when KAFKA_BOOTSTRAP_SERVERS names a broker",
    )


def chosen(kinds: Sequence[str], address: str | None) -> list[Broker]:
    """The brokers to run on: the given one alone, else the embedded ``kinds`` (checked they can start here)."""
    if address:
        return [Broker("given", load_settings().kafka_enable_idempotence, address=address)]
    for kind in kinds:
        kafka_kind(kind)  # Apache Kafka without Java or its jars: says what to run, before anything starts
    return [Broker(LABELS[kind], IDEMPOTENCE[kind], kind=kind) for kind in kinds]


@contextmanager
def running(broker: Broker, folder: Path) -> Iterator[str]:
    """The broker's bootstrap address; an embedded one is started fresh under ``folder`` and stopped after."""
    if broker.address:
        yield broker.address
        return
    assert broker.kind is not None
    kafka = embedded_kafka(folder, broker.kind).start()
    try:
        assert kafka.idempotence == broker.idempotence
        yield kafka.url
    finally:
        kafka.stop()


#: Where ``topics_ready`` warms the broker up; nothing reads it.
WARM_UP_TOPIC = "tickpipe-bench.warm-up"


async def topics_ready(
    bootstrap: str, names: Iterable[str], partitions: int, warm_up: int = 20_000, timeout: float = 120.0
) -> None:
    """Create the topics, write one record to each of their partitions and warm the broker up, before any clock starts.

    Apache Kafka answers NotLeaderForPartition for a moment after it creates a
    topic, even once its metadata names the leader; without the first records
    the producer's retries would fall inside the timed window. Those are keyed
    ``bench-warm-up`` and empty; nothing in the producer bench reads them.

    Apache Kafka also runs in a JVM fresh from its start, whose first thousands
    of requests are several times slower than later ones; a cold broker would
    understate the one-request-per-event baseline most. So ``warm_up`` records
    go to ``WARM_UP_TOPIC`` first, one in twenty with ``send_and_wait``.
    """
    names = list(dict.fromkeys(names))
    await ensure_topics(bootstrap, [*names, WARM_UP_TOPIC], partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", compression_type="lz4", client_id="tickpipe-bench-warm-up"
    )
    await producer.start()
    try:
        with quiet_retries():  # its "NotLeaderForPartition, retrying" is what we are waiting out
            async with asyncio.timeout(timeout):
                sends = [
                    await producer.send(name, b"", key=b"bench-warm-up", partition=partition)
                    for name in [*names, WARM_UP_TOPIC]
                    for partition in sorted(await producer.partitions_for(name))
                ]
                await asyncio.gather(*sends)
                payload = bytes(range(100))
                for n in range(warm_up // 20):
                    await producer.send_and_wait(WARM_UP_TOPIC, payload, key=f"S{n % 50}".encode())
                sends = [await producer.send(WARM_UP_TOPIC, payload, key=f"S{n % 50}".encode()) for n in range(warm_up)]
                await asyncio.gather(*sends)
    finally:
        await producer.stop()


@contextmanager
def quiet_retries() -> Iterator[None]:
    """Silence aiokafka's log lines while a new topic settles; failures still raise.

    They are a warning per retried produce request (NotLeaderForPartition) and
    an error per metadata answer that does not list the topic yet.
    """
    quiet = {"aiokafka.producer.sender": logging.ERROR, "aiokafka.cluster": logging.CRITICAL}
    levels = {name: logging.getLogger(name).level for name in quiet}
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])
