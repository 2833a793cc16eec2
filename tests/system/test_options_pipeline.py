"""The options feed end to end: the simulator's ``/v1beta1/opra`` -> producer -> Apache Kafka -> consumers ->
PostgreSQL, every message the simulator sent stored once, field for field; a value no venue sends is a dead
letter and the rest is stored.

Counted from the simulator's own record of what it sent (``record=True``): trades and quotes give one row each
(keyed by their content, as OPRA gives no trade id), and a new consumer group reading everything again adds none.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec

from consumers.service import ConsumerService, tables_for
from producer.service import ProducerService
from simulator import Simulator
from tests.helpers.consumers import BASE_NS, consumer_settings, count_rows, fetch_events, produce
from tests.helpers.options import option_config, option_settings, sent_on
from tests.helpers.producer import forget_snapshots, read_topics, running
from tests.helpers.waiting import wait_for
from tickpipe.dlq import decode_dead_letter
from tickpipe.feeds import OPTIONS
from tickpipe.names import topic
from tickpipe.option_events import AnyOptionEvent, OptionQuote, OptionTrade

TABLE_OF = {family.name: family.table for family in OPTIONS.tables if family.table is not None}


def _stored_key(event: Any) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(event, received_at=0))


async def test_every_option_message_sent_is_one_row_and_a_replay_adds_none(
    kafka_bootstrap: str, redis_url: str, clean_db: str, topic_prefix: str, tmp_path: Path
) -> None:
    events = 6_000
    async with Simulator(option_config(max_events=events)) as sim:
        settings = option_settings(
            kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim, database_url=clean_db,
            alpaca_feeds="stocks,options",
        )  # fmt: skip
        producer = ProducerService(settings, feed=OPTIONS)
        async with running(producer):
            await wait_for(lambda: producer.durable.stats.acked == events, 90, "Kafka acknowledged every option event")
    await forget_snapshots(redis_url, OPTIONS)
    sent = sent_on(sim)
    assert len(sent) == events

    assert [table for table in tables_for("all", settings.feeds) if table.startswith("options_")] == list(
        TABLE_OF.values()
    )
    stats = await ConsumerService(settings, list(TABLE_OF.values()), burst=True, admin=False).run()
    assert sum(stat.dead_letters for stat in stats.values()) == 0

    by_family: dict[str, list[Any]] = {family: [] for family in TABLE_OF}
    for message in sent:
        by_family[OPTIONS.family_of[message["T"]]].append(msgspec.convert(message, AnyOptionEvent))
    assert all(by_family.values()), "expected trades and quotes among the messages sent"
    for family, table in TABLE_OF.items():
        got = await fetch_events(clean_db, table)
        want = by_family[family]
        assert stats[table].records == len(want), f"expected every {family} record read once"
        assert len(got) == len(want), f"expected {len(want)} rows in {table}, got {len(got)}"
        assert sorted(map(_stored_key, got)) == sorted(map(_stored_key, want)), f"{table}: field for field"

    again = await ConsumerService(
        settings, list(TABLE_OF.values()), burst=True, admin=False, group=f"{topic_prefix}replay"
    ).run()
    assert [again[table].records for table in TABLE_OF.values()] == [len(by_family[f]) for f in TABLE_OF]
    assert [again[table].rows_written for table in TABLE_OF.values()] == [0, 0]
    for family, table in TABLE_OF.items():
        assert await count_rows(clean_db, table) == len(by_family[family])


async def test_an_option_value_no_venue_sends_is_a_dead_letter_and_the_rest_is_stored(
    kafka_bootstrap: str, clean_db: str, topic_prefix: str
) -> None:
    settings = consumer_settings(kafka_bootstrap, clean_db, topic_prefix)
    contract = OPTIONS.example
    good = [OptionTrade(symbol=contract, timestamp=BASE_NS + i, price=1.05, size=i, exchange="C", condition="I")
            for i in range(1, 9)]  # fmt: skip
    bad = [
        msgspec.structs.replace(good[0], timestamp=BASE_NS - 1, price=math.inf),
        msgspec.structs.replace(good[0], timestamp=BASE_NS - 2, size=-3),
    ]
    quote = OptionQuote(symbol=contract, timestamp=BASE_NS, bid_exchange="C", bid_price=1.0, bid_size=10,
                        ask_exchange="X", ask_price=1.1, ask_size=12, condition="A")  # fmt: skip
    trades = topic(OPTIONS.word("trades"), topic_prefix)
    records = [(contract.encode(), msgspec.msgpack.encode(event)) for event in (*good[:4], *bad, *good[4:], quote)]
    await produce(kafka_bootstrap, settings, trades, records)

    stats = await ConsumerService(settings, ["options_trades"], burst=True, admin=False).run()
    assert stats["options_trades"].rows_written == 8 and stats["options_trades"].dead_letters == 3
    assert sorted(map(_stored_key, await fetch_events(clean_db, "options_trades"))) == sorted(map(_stored_key, good))
    letters = [decode_dead_letter(r.value) for r in await read_topics(kafka_bootstrap, [f"{topic_prefix}dlq"],
                                                                      expected=3)]  # fmt: skip
    assert sorted(letter.field for letter in letters) == ["T", "p", "s"], [letter.reason for letter in letters]
    misrouted = next(letter for letter in letters if letter.field == "T")
    assert "expected a trade on" in misrouted.reason and "got a quote" in misrouted.reason
    assert all(letter.source_topic == trades for letter in letters)
