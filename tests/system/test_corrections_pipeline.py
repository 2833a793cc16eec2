"""Simulator -> producer -> Kafka -> consumers -> API: the simulator's corrections and cancels reach the history.

The simulator's market corrects and cancels its own earlier trades now and
then (``simulator.book.Book.correct``/``cancel``); the producer carries them
with the trades (subscribing to trades brings both), the consumers store
them, and ``GET /trades/{symbol}`` must show what the messages the simulator
sent say, worked out here in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from consumers.service import ConsumerService
from producer.service import ProducerService
from simulator import Simulator, SimulatorConfig
from tests.helpers.api import all_items
from tests.helpers.consumers import consumer_settings, count_rows
from tests.helpers.producer import producer_settings, running, sent_events
from tests.helpers.waiting import wait_for
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.events import Event, Trade, TradeCancel, TradeCorrection, TradingStatus

TABLES = ["trades", "statuses", "corrections", "cancels"]


@dataclass
class Standing:
    """A trade as the later messages leave it."""

    trade: Trade
    price: float
    size: int
    conditions: tuple[str, ...]
    cancelled: bool = False

    def json(self) -> dict[str, Any]:
        return {
            "t": format_rfc3339_ns(self.trade.timestamp), "x": self.trade.exchange, "p": self.price,
            "s": self.size, "c": list(self.conditions), "i": self.trade.trade_id, "z": self.trade.tape,
        }  # fmt: skip


def standing(events: list[Event]) -> dict[int, Standing]:
    """Printed trade id -> the trade as it stands; a KeyError if a message names no earlier trade."""
    out: dict[int, Standing] = {}
    live: dict[tuple[str, str, int], int] = {}
    for ev in events:
        if isinstance(ev, Trade):
            out[ev.trade_id] = Standing(ev, ev.price, ev.size, ev.conditions)
            live[(ev.symbol, ev.exchange, ev.trade_id)] = ev.trade_id
        elif isinstance(ev, TradeCorrection):
            printed = live.pop((ev.symbol, ev.exchange, ev.original_id))
            item = out[printed]
            item.price, item.size, item.conditions = ev.corrected_price, ev.corrected_size, ev.corrected_conditions
            live[(ev.symbol, ev.exchange, ev.corrected_id)] = printed
        elif isinstance(ev, TradeCancel):
            out[live.pop((ev.symbol, ev.exchange, ev.trade_id))].cancelled = True
    return out


async def test_the_simulators_corrections_and_cancels_reach_the_trade_history(
    kafka_bootstrap: str,
    redis_url: str,
    clean_db: str,
    topic_prefix: str,
    unique_symbol: Callable[[], str],
    tmp_path: Path,
    http: httpx.AsyncClient,
) -> None:
    symbols = sorted({unique_symbol() for _ in range(4)})
    config = SimulatorConfig(symbols=tuple(symbols), max_events=30_000, record=True, seed=5)
    async with Simulator(config) as sim:
        settings = producer_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim.url)
        service = ProducerService(settings)
        async with running(service):
            await wait_for(lambda: service.upstream.events == config.max_events, timeout=60, what="all events read")
            await wait_for(lambda: service.durable.stats.acked == config.max_events, timeout=60, what="all in Kafka")
    sent = [e for session in sim.sessions for e in sent_events(session.sent_events())]
    kinds = {kind: [e for e in sent if isinstance(e, kind)] for kind in (Trade, TradingStatus, TradeCorrection,
                                                                          TradeCancel)}  # fmt: skip
    assert kinds[TradeCorrection] and kinds[TradeCancel], "expected the simulator to correct and cancel trades"

    stats = await ConsumerService(
        consumer_settings(kafka_bootstrap, clean_db, topic_prefix), TABLES, burst=True, admin=False
    ).run()
    for table, kind in zip(TABLES, kinds, strict=True):
        assert stats[table].records == len(kinds[kind]) == await count_rows(clean_db, table), table

    expected = standing(sent)
    assert any(item.cancelled for item in expected.values())
    assert any((item.price, item.size) != (item.trade.price, item.trade.size) for item in expected.values())
    for symbol in symbols:
        mine = sorted((item for item in expected.values() if item.trade.symbol == symbol and not item.cancelled),
                      key=lambda item: (item.trade.timestamp, item.trade.exchange, item.trade.trade_id))  # fmt: skip
        assert await all_items(http, f"/trades/{symbol}", "trades", limit=500) == [item.json() for item in mine], symbol
