"""The crypto feed end to end: the simulator's ``/v1beta3/crypto/us`` -> producer -> Apache Kafka -> consumers ->
PostgreSQL, every message the simulator sent stored once, field for field.

Counted from the simulator's own record of what it sent (``record=True``), not from the producer's
counters: trades, quotes and order book messages give one row each, bars one row per pair, timeframe
and minute (an updated bar replacing its minute bar).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from consumers.service import ConsumerService, tables_for
from producer.service import ProducerService
from simulator import Simulator
from tests.helpers.consumers import fetch_events
from tests.helpers.producer import forget_snapshots, running
from tests.helpers.waiting import wait_for
from tests.producer.test_crypto_feed import PAIRS, crypto_config, crypto_settings, sent_on
from tickpipe.crypto_events import AnyCryptoEvent
from tickpipe.feeds import CRYPTO

TABLE_OF = {family.name: family.table for family in CRYPTO.tables if family.table is not None}


def _stored_key(event: Any) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(event, received_at=0))


async def test_every_crypto_message_sent_is_one_row(
    kafka_bootstrap: str, redis_url: str, clean_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    events = 10_000  # 5 s of the market from 2 s before a minute mark: minute and daily bars among them
    async with Simulator(crypto_config(max_events=events)) as sim:
        settings = crypto_settings(
            kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim, database_url=clean_db,
            alpaca_feeds="stocks,crypto",
        )  # fmt: skip
        producer = ProducerService(settings, feed=CRYPTO)
        async with running(producer):
            total = events + len(PAIRS)  # each pair's book snapshot first
            await wait_for(lambda: producer.durable.stats.acked == total, 90, "Kafka acknowledged every crypto event")
    await forget_snapshots(redis_url, CRYPTO)
    sent = sent_on(sim)
    assert len(sent) == total

    tables = tables_for("all", settings.feeds)
    assert [table for table in tables if table.startswith("crypto_")] == list(TABLE_OF.values())
    stats = await ConsumerService(settings, list(TABLE_OF.values()), burst=True, admin=False).run()
    assert sum(stat.dead_letters for stat in stats.values()) == 0

    by_family: dict[str, list[Any]] = {}
    for message in sent:
        by_family.setdefault(CRYPTO.family_of[message["T"]], []).append(msgspec.convert(message, AnyCryptoEvent))
    assert set(by_family) == set(TABLE_OF), f"expected every family sent, got {Counter(m['T'] for m in sent)}"
    bars: dict[tuple[str, str, int], Any] = {}
    for bar in by_family["bars"]:
        key = (bar.symbol, bar.timeframe, bar.timestamp)
        if not (key in bars and bars[key].type_code == "u" and bar.type_code == "b"):
            bars[key] = bar
    want = {**by_family, "bars": list(bars.values())}
    assert all(want[family] for family in TABLE_OF), f"expected every family sent, got {Counter(by_family)}"
    for family, table in TABLE_OF.items():
        assert table is not None
        got = await fetch_events(clean_db, table)
        assert stats[table].records == len(by_family[family]), f"expected every {family} record read once"
        assert len(got) == len(want[family]), f"expected {len(want[family])} rows in {table}, got {len(got)}"
        assert sorted(map(_stored_key, got)) == sorted(map(_stored_key, want[family])), f"{table}: field for field"
