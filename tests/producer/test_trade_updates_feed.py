"""The order updates producer against the simulator's trading stream ``/stream``, with real Kafka and Redis.

N updates sent -> N records on ``tickpipe.trade_updates``, each keyed by its order's id (an order's updates
in order on one partition) and published on its symbol's channel as the ``data`` Alpaca sent; a malformed
update is a dead letter and the stream goes on; wrong credentials stop the producer (402, not retried).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from producer.service import ProducerService
from simulator import Faults, Simulator, SimulatorConfig
from tests.helpers.producer import RedisCollector, producer_settings, read_topics, running
from tests.helpers.waiting import wait_for
from tickpipe.codecs import kafka_decoder
from tickpipe.dlq import decode_dead_letter
from tickpipe.errors import UpstreamAuthError
from tickpipe.feeds import TRADE_UPDATES_FEED
from tickpipe.settings import Settings
from tickpipe.trading_wire import decode_update

SYMBOLS = ("AAPL", "MSFT", "TSLA")
decode = kafka_decoder(TRADE_UPDATES_FEED)


def trading_config(**overrides: Any) -> SimulatorConfig:
    return SimulatorConfig(symbols=SYMBOLS, order_rate=400, **overrides)


def trading_settings(
    kafka: str, redis_url: str, prefix: str, spool: Path, sim: Simulator, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {"alpaca_trading_stream_url": sim.trading_url, "trade_updates_producer_admin_port": 0}
    values.update(overrides)
    return producer_settings(kafka, redis_url, prefix, spool, sim.url_for("iex"), **values)


def stored(update: dict[str, Any]) -> Any:
    return decode_update(update, 0)


async def test_every_update_is_one_record_keyed_by_its_order_and_on_its_symbols_channel(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    n = 120
    async with Simulator(trading_config(order_updates=n)) as sim, RedisCollector(redis_url, list(SYMBOLS)) as live:
        settings = trading_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim)
        producer = ProducerService(settings, feed=TRADE_UPDATES_FEED)
        assert producer.topics == {"o": f"{topic_prefix}trade_updates"}
        async with running(producer):
            await wait_for(lambda: producer.durable.stats.acked == n, 60, "Kafka acknowledged every order update")
            await wait_for(lambda: live.total >= n, 30, "every update on its Redis channel")
        sent = sim.desk.updates
    assert len(sent) == n
    records = await read_topics(kafka_bootstrap, [f"{topic_prefix}trade_updates"], expected=n)
    assert len(records) == n, "expected each update once"
    by_key: dict[bytes, list[Any]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = decode(record.value)
        key = event.order_id.encode()
        assert record.key == key
        by_key[key].append(event)
    want = [stored(u) for u in sent]
    got = sorted((e for events in by_key.values() for e in events), key=lambda e: e.timestamp)
    assert [(e.order_id, e.event, e.timestamp, e.order, e.price, e.qty, e.execution_id) for e in got] == [
        (e.order_id, e.event, e.timestamp, e.order, e.price, e.qty, e.execution_id) for e in want
    ], "field for field"
    for events in by_key.values():  # one order's updates in the order they happened, on one partition
        assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    published = [orjson.loads(p) for channel in sorted(live.messages) for p in live.messages[channel]
                 if channel.startswith("trade_updates:")]  # fmt: skip
    assert sorted(published, key=lambda d: d["timestamp"]) == sent, "the live path carries Alpaca's data as sent"
    assert live.counts() == {f"trade_updates:{s}": sum(1 for u in sent if u["order"]["symbol"] == s)
                             for s in SYMBOLS if any(u["order"]["symbol"] == s for u in sent)}  # fmt: skip


async def test_a_malformed_update_is_a_dead_letter_and_the_stream_goes_on(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    n = 30
    config = trading_config(order_updates=n, faults=Faults(malformed_after=10))
    async with Simulator(config) as sim:
        settings = trading_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim)
        producer = ProducerService(settings, feed=TRADE_UPDATES_FEED)
        async with running(producer):
            await wait_for(lambda: producer.durable.stats.acked == n + 1, 60, "every update and the dead letter")
    assert producer.fanout.dead_letters == 1 and producer.upstream.events == n
    letters = [decode_dead_letter(r.value) for r in await read_topics(kafka_bootstrap, [f"{topic_prefix}dlq"],
                                                                      expected=1)]  # fmt: skip
    assert [letter.field for letter in letters] == ["order"]
    assert orjson.loads(letters[0].original)["data"]["event"] == "fill"


async def test_wrong_credentials_stop_the_producer(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with Simulator(trading_config(key="PK1", secret="right")) as sim:
        settings = trading_settings(
            kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim,
            alpaca_api_key="PK1", alpaca_api_secret="wrong",
        )  # fmt: skip
        producer = ProducerService(settings, feed=TRADE_UPDATES_FEED)
        with pytest.raises(UpstreamAuthError, match="402"):
            await producer.run()
    assert sim.desk.updates == []
