"""Corrections, cancels and statuses: stored one row per message, and applied to the trade history.

The events are the simulator's own (``simulator.market.Market`` with high
correction, cancel and halt rates): each correction and cancel names one of
its earlier trades, a correction may name the id a previous correction gave,
a cancel may name a corrected trade. They go through the real broker and the
real consumers into PostgreSQL; the expected history is worked out here in
Python from the same messages, independently of the view's SQL, and the view
``trades_corrected`` and ``GET /trades/{symbol}`` (JSON, CSV, pages) must
agree with it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec
import orjson
import pytest

from consumers.progress import WorkerStats
from consumers.service import ConsumerService, tables_for
from simulator.market import Market
from tests.helpers.api import all_items
from tests.helpers.consumers import consumer_settings, count_rows, fetch_events, produce, records_of, sort_key
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.events import Event, Trade, TradeCancel, TradeCorrection, TradingStatus
from tickpipe.names import topic
from tickpipe.settings import Settings

E = TypeVar("E")
SYMBOLS = ("AAPL", "MSFT")
#: The tables of this change, with the one that they amend.
TABLES = ["trades", "statuses", "corrections", "cancels"]


@dataclass
class Expected:
    """One trade as it stands after every message: its printed and its current values, and its cancel."""

    trade: Trade
    price: float
    size: int
    conditions: tuple[str, ...]
    cancel: str | None = None

    def json(self, *, marked: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "t": format_rfc3339_ns(self.trade.timestamp), "x": self.trade.exchange, "p": self.price,
            "s": self.size, "c": list(self.conditions), "i": self.trade.trade_id, "z": self.trade.tape,
        }  # fmt: skip
        if marked and self.cancel is not None:
            out["cancelled"] = self.cancel
        return out


def simulated_events(ticks: int = 4000, seed: int = 3) -> list[Event]:
    """The simulator's trades, statuses, corrections and cancels, as the producer would decode them."""
    market = Market(SYMBOLS, seed, correction_rate=0.05, cancel_rate=0.05, halt_rate=0.002)
    messages = [m for m in market.ticks(ticks) if m["T"] in ("t", "s", "c", "x")]
    return [msgspec.convert(message, Event) for message in messages]


def expected_history(events: Iterable[Event]) -> dict[int, Expected]:
    """Trade id as printed -> the trade as it stands, by replaying the messages in order."""
    history: dict[int, Expected] = {}
    live: dict[tuple[str, str, int], int] = {}  # (symbol, exchange, id a later message may name) -> printed id
    for ev in events:
        if isinstance(ev, Trade):
            history[ev.trade_id] = Expected(ev, ev.price, ev.size, ev.conditions)
            live[(ev.symbol, ev.exchange, ev.trade_id)] = ev.trade_id
        elif isinstance(ev, TradeCorrection):
            printed = live.pop((ev.symbol, ev.exchange, ev.original_id))
            item = history[printed]
            assert (item.price, item.size) == (ev.original_price, ev.original_size), "the simulator names its trade"
            item.price, item.size, item.conditions = ev.corrected_price, ev.corrected_size, ev.corrected_conditions
            live[(ev.symbol, ev.exchange, ev.corrected_id)] = printed
        elif isinstance(ev, TradeCancel):
            printed = live.pop((ev.symbol, ev.exchange, ev.trade_id))
            history[printed].cancel = ev.action
    return history


def of_kind(events: Iterable[Event], kind: type[E]) -> list[E]:
    return [ev for ev in events if isinstance(ev, kind)]


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return simulated_events()


@pytest.fixture
def settings(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, clean_db, topic_prefix)


async def produce_all(settings: Settings, events: list[Event]) -> None:
    """Each event to its family's topic, as the producer sends them (key = symbol)."""
    assert settings.kafka_bootstrap_servers is not None
    for family in TABLES:
        records = records_of(ev for ev in events if ev.family == family)
        await produce(settings.kafka_bootstrap_servers, settings, topic(family, settings.kafka_topic_prefix), records)


async def burst(settings: Settings, group: str | None = None) -> dict[str, WorkerStats]:
    return await ConsumerService(settings, TABLES, burst=True, admin=False, group=group).run()


async def stored(settings: Settings, events: list[Event]) -> None:
    await produce_all(settings, events)
    stats = await burst(settings)
    assert {name: stats[name].records for name in TABLES} == {
        name: len(of_kind(events, cls))
        for name, cls in (
            ("trades", Trade),
            ("statuses", TradingStatus),
            ("corrections", TradeCorrection),
            ("cancels", TradeCancel),
        )
    }


def test_the_simulator_corrects_and_cancels_its_own_trades(events: list[Event]) -> None:
    corrections, cancels = of_kind(events, TradeCorrection), of_kind(events, TradeCancel)
    assert len(corrections) >= 20 and len(cancels) >= 20 and of_kind(events, TradingStatus)
    history = expected_history(events)  # raises KeyError on a message naming no earlier trade
    printed = {ev.trade_id for ev in of_kind(events, Trade)}
    corrected_ids = {ev.corrected_id for ev in corrections}
    assert any(ev.original_id in corrected_ids for ev in corrections), "expected a correction of a correction"
    assert any(ev.trade_id in corrected_ids for ev in cancels), "expected a cancel of a corrected trade"
    assert {ev.action for ev in cancels} == {"C", "E"}
    assert sum(item.cancel is not None for item in history.values()) == len(cancels)
    assert set(history) == printed


async def test_n_messages_become_n_rows_and_a_replay_adds_none(settings: Settings, events: list[Event]) -> None:
    await stored(settings, events)
    assert settings.database_url is not None
    for name, kind in (("statuses", TradingStatus), ("corrections", TradeCorrection), ("cancels", TradeCancel)):
        got = await fetch_events(settings.database_url, name)
        want: list[Event] = [ev for ev in events if isinstance(ev, kind)]
        assert sorted(got, key=sort_key) == sorted(want, key=sort_key), f"{name}: field for field"
    counts = {name: await count_rows(settings.database_url, name) for name in TABLES}

    await produce_all(settings, events)  # the same records again: a replay
    again = await burst(settings)
    assert {name: again[name].records for name in TABLES} == {name: counts[name] for name in TABLES}
    fresh = await burst(settings, group="corrections-replay")  # a new group reads everything again
    assert sum(stats.records for stats in fresh.values()) == 2 * sum(counts.values())
    assert {name: await count_rows(settings.database_url, name) for name in TABLES} == counts


async def test_the_view_applies_corrections_and_cancels(settings: Settings, events: list[Event]) -> None:
    await stored(settings, events)
    history = expected_history(events)
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT * FROM trades_corrected")
        kept = await conn.fetchval("SELECT count(*) FROM trades_corrected WHERE NOT cancelled")
    finally:
        await conn.close()
    assert len(rows) == len(history)
    for row in rows:
        item = history[row["trade_id"]]
        assert (row["price"], row["size"], tuple(row["conditions"])) == (item.price, item.size, item.conditions)
        assert (row["original_price"], row["original_size"]) == (item.trade.price, item.trade.size)
        assert (row["cancelled"], row["cancel_action"]) == (item.cancel is not None, item.cancel)
    assert kept == sum(item.cancel is None for item in history.values())


@pytest.mark.parametrize("sort", ["asc", "desc"])
async def test_trade_history_shows_corrected_trades_and_leaves_out_cancelled_ones(
    settings: Settings, events: list[Event], http: httpx.AsyncClient, sort: str
) -> None:
    await stored(settings, events)
    history = expected_history(events)
    for symbol in SYMBOLS:
        mine = sorted((item for item in history.values() if item.trade.symbol == symbol),
                      key=lambda item: (item.trade.timestamp, item.trade.exchange, item.trade.trade_id),
                      reverse=sort == "desc")  # fmt: skip
        path = f"/trades/{symbol}"
        standing = [item.json() for item in mine if item.cancel is None]
        assert await all_items(http, path, "trades", sort=sort, limit=37) == standing
        marked = await all_items(http, path, "trades", sort=sort, limit=41, include_cancelled="true")
        assert marked == [item.json(marked=True) for item in mine]
        original = await all_items(http, path, "trades", sort=sort, limit=1000, original="true")
        assert original == [Expected(i.trade, i.trade.price, i.trade.size, i.trade.conditions).json() for i in mine], (
            "original=true: the trades as printed, cancelled ones too, unmarked"
        )


async def test_trade_history_csv(settings: Settings, events: list[Event], http: httpx.AsyncClient) -> None:
    await stored(settings, events)
    history = expected_history(events)
    mine = sorted((i for i in history.values() if i.trade.symbol == "AAPL"),
                  key=lambda i: (i.trade.timestamp, i.trade.exchange, i.trade.trade_id))  # fmt: skip
    for params, columns in (({}, 8), ({"include_cancelled": "true"}, 9)):
        response = await http.get("/trades/AAPL", params=params, headers={"Accept": "text/csv"})
        assert response.status_code == 200
        rows = list(csv.reader(io.StringIO(response.text)))
        assert len(rows[0]) == columns and (columns == 8 or rows[0][-1] == "cancel_action")
        shown = [i for i in mine if params or i.cancel is None]
        assert [(int(r[3]), float(r[4]), int(r[5]), tuple(orjson.loads(r[6]))) for r in rows[1:]] == [
            (i.trade.trade_id, i.price, i.size, i.conditions) for i in shown
        ]
        if params:
            assert [r[8] or None for r in rows[1:]] == [i.cancel for i in shown]


async def test_consume_all_drains_when_the_new_families_topics_do_not_exist_yet(
    settings: Settings, events: list[Event]
) -> None:
    """``tickpipe consume all --burst`` now has workers for statuses, corrections and cancels too; a broker
    where nobody produced them yet (their topics are made on first use) must not keep it from stopping."""
    assert settings.kafka_bootstrap_servers is not None and settings.database_url is not None
    trades = [ev for ev in events if isinstance(ev, Trade)]
    await produce(settings.kafka_bootstrap_servers, settings, topic("trades", settings.kafka_topic_prefix),
                  records_of(trades))  # fmt: skip
    stats = await ConsumerService(settings, tables_for("all"), burst=True, admin=False).run()
    assert stats["trades"].records == len(trades) == await count_rows(settings.database_url, "trades")
    assert all(stats[name].records == 0 for name in ("statuses", "corrections", "cancels"))
