"""Order updates end to end: the simulator's ``/stream`` -> producer -> Apache Kafka -> consumers -> PostgreSQL.

Every update the simulator sent is one row, field for field; a new consumer group reading everything again
adds none; an update whose numbers PostgreSQL cannot hold is a dead letter and the rest is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import orjson

from consumers.service import ConsumerService, tables_for
from producer.service import ProducerService
from simulator import Simulator
from tests.helpers.consumers import BASE_NS, consumer_settings, count_rows, fetch_events, produce
from tests.helpers.producer import read_topics, running
from tests.helpers.waiting import wait_for
from tests.producer.test_trade_updates_feed import trading_config, trading_settings
from tickpipe.dlq import decode_dead_letter
from tickpipe.feeds import TRADE_UPDATES_FEED
from tickpipe.names import topic
from tickpipe.trade_update_events import TradeUpdate
from tickpipe.trading_wire import decode_update

TABLE = "trade_updates"


def _key(event: Any) -> bytes:
    """Every field but the receive time, the order object's keys sorted (jsonb keeps no key order)."""
    return orjson.dumps(msgspec.to_builtins(msgspec.structs.replace(event, received_at=0)), option=orjson.OPT_SORT_KEYS)


async def test_every_update_sent_is_one_row_and_a_replay_adds_none(
    kafka_bootstrap: str, redis_url: str, clean_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    n = 300
    async with Simulator(trading_config(order_updates=n)) as sim:
        settings = trading_settings(
            kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim, database_url=clean_db,
            alpaca_feeds="stocks,trade_updates",
        )  # fmt: skip
        producer = ProducerService(settings, feed=TRADE_UPDATES_FEED)
        async with running(producer):
            await wait_for(lambda: producer.durable.stats.acked == n, 90, "Kafka acknowledged every order update")
    sent = [decode_update(u, 0) for u in sim.desk.updates]
    assert len(sent) == n

    assert TABLE in tables_for("all", settings.feeds), "tickpipe consume all writes it when ALPACA_FEEDS names it"
    stats = await ConsumerService(settings, [TABLE], burst=True, admin=False).run()
    assert stats[TABLE].dead_letters == 0 and stats[TABLE].records == n
    got = await fetch_events(clean_db, TABLE)
    assert len(got) == n, f"expected {n} rows, got {len(got)}"
    assert sorted(map(_key, got)) == sorted(map(_key, sent)), "field for field"

    again = await ConsumerService(settings, [TABLE], burst=True, admin=False, group=f"{topic_prefix}replay").run()
    assert again[TABLE].records == n and again[TABLE].rows_written == 0
    assert await count_rows(clean_db, TABLE) == n


async def test_an_update_postgresql_cannot_hold_is_a_dead_letter_and_the_rest_is_stored(
    kafka_bootstrap: str, clean_db: str, topic_prefix: str
) -> None:
    settings = consumer_settings(kafka_bootstrap, clean_db, topic_prefix)
    order = {"id": "7c1f6a0e-0000-4000-8000-000000000001", "symbol": "AAPL", "qty": "10", "side": "buy",
             "type": "limit", "status": "new", "client_order_id": "mine-1"}  # fmt: skip
    good = [TradeUpdate(symbol="AAPL", timestamp=BASE_NS + i * 1000, event="new", order=order) for i in range(5)]
    bad = [
        msgspec.structs.replace(good[0], timestamp=BASE_NS - 1, order={**order, "qty": "ten"}),
        msgspec.structs.replace(good[0], timestamp=BASE_NS - 2, price="NaN"),
        msgspec.structs.replace(good[0], timestamp=BASE_NS - 3, order={**order, "id": None}),
    ]
    records = [(order["id"].encode(), msgspec.msgpack.encode(e)) for e in (*good[:2], *bad, *good[2:])]
    await produce(kafka_bootstrap, settings, topic(TABLE, topic_prefix), records)

    stats = await ConsumerService(settings, [TABLE], burst=True, admin=False).run()
    assert stats[TABLE].rows_written == 5 and stats[TABLE].dead_letters == 3
    assert sorted(map(_key, await fetch_events(clean_db, TABLE))) == sorted(map(_key, good))
    letters = [decode_dead_letter(r.value) for r in await read_topics(kafka_bootstrap, [f"{topic_prefix}dlq"],
                                                                      expected=3)]  # fmt: skip
    assert sorted(letter.field for letter in letters) == ["order.id", "order.qty", "price"]
