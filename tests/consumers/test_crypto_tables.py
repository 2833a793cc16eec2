"""The consumers writing the crypto feed's tables, against the real broker and PostgreSQL.

The same worker code as the stock tables, driven by the crypto declaration: N crypto events on the
``tickpipe.crypto.*`` topics give N rows of ``crypto_*`` (bars folded by the declared rule), field for
field; a replay adds none; a value no venue sends becomes a dead letter and its neighbours are stored.
"""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import pytest

from consumers.service import ConsumerService
from tests.helpers.consumers import BASE_NS, NS, consumer_settings, count_rows, fetch_events, produce
from tests.helpers.producer import read_topics
from tickpipe.crypto_events import (
    BookLevel,
    CryptoBar,
    CryptoDailyBar,
    CryptoEvent,
    CryptoOrderbook,
    CryptoQuote,
    CryptoTrade,
    CryptoUpdatedBar,
)
from tickpipe.dlq import decode_dead_letter
from tickpipe.feeds import CRYPTO
from tickpipe.names import topic
from tickpipe.settings import Settings

PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD", "1INCH/USDT")
TABLES = ["crypto_trades", "crypto_quotes", "crypto_bars", "crypto_orderbooks"]


@pytest.fixture
def settings(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, clean_db, topic_prefix)


def _amount(rng: random.Random) -> float:
    return rng.uniform(0.0001, 3.0)  # fractional, not round in binary


def make_events(seed: int = 7) -> dict[str, list[CryptoEvent]]:
    """Trades, quotes, minute bars with updates and daily bars, and books (a reset, then changed levels)."""
    rng = random.Random(seed)
    out: dict[str, list[CryptoEvent]] = {"trades": [], "quotes": [], "bars": [], "orderbooks": []}
    for i in range(1200):
        pair, t = PAIRS[i % len(PAIRS)], BASE_NS + i * 7_919_123 + rng.randrange(1000)
        price = rng.uniform(0.2, 70_000.0)
        out["trades"].append(CryptoTrade(symbol=pair, timestamp=t, price=price, size=_amount(rng), trade_id=i + 1,
                                         taker_side=rng.choice(("B", "S")), received_at=t + 1_234_567))  # fmt: skip
        out["quotes"].append(CryptoQuote(symbol=pair, timestamp=t, bid_price=price, bid_size=_amount(rng),
                                         ask_price=price * 1.0001, ask_size=_amount(rng)))  # fmt: skip
    for minute in range(30):
        for pair in PAIRS:
            t = BASE_NS + minute * 60 * NS
            values: dict[str, Any] = {"symbol": pair, "timestamp": t, "open": 1.5, "high": 2.25, "low": 1.0,
                                      "close": 2.0, "volume": _amount(rng), "trade_count": 3, "vwap": 1.75}  # fmt: skip
            out["bars"].append(CryptoBar(**values))
            if minute % 3 == 0:  # late trades: the minute again, updated
                out["bars"].append(CryptoUpdatedBar(**{**values, "volume": values["volume"] + 0.5, "trade_count": 4}))
    for pair in PAIRS:
        out["bars"].append(CryptoDailyBar(symbol=pair, timestamp=BASE_NS - 14 * 3600 * NS, open=1.0, high=3.0,
                                          low=0.5, close=2.0, volume=1234.5678, trade_count=999, vwap=1.9))  # fmt: skip
    for i in range(400):
        pair, t = PAIRS[i % len(PAIRS)], BASE_NS + i * 13_000_017
        levels = 20 if i < len(PAIRS) else rng.randrange(0, 3)
        bids = tuple(BookLevel(100.0 - j * 0.01, _amount(rng)) for j in range(levels))
        asks = tuple(BookLevel(100.01 + j * 0.01, 0.0 if rng.random() < 0.2 else _amount(rng)) for j in range(levels))
        out["orderbooks"].append(CryptoOrderbook(symbol=pair, timestamp=t, bids=bids, asks=asks, reset=i < len(PAIRS)))
    return out


def expected_bars(bars: list[CryptoEvent]) -> list[CryptoEvent]:
    """One bar per pair, timeframe and start: the updated one where there is one (the declared rule)."""
    kept: dict[tuple[str, str, int], CryptoEvent] = {}
    for bar in bars:
        assert isinstance(bar, CryptoBar)
        key = (bar.symbol, bar.timeframe, bar.timestamp)
        old = kept.get(key)
        if old is not None and old.type_code == "u" and bar.type_code == "b":
            continue
        kept[key] = bar
    return list(kept.values())


def _micro(event: CryptoEvent) -> CryptoEvent:
    """An event as its row gives it back: the receive time to the microsecond."""
    return msgspec.structs.replace(event, received_at=event.received_at // 1000 * 1000)


def same(got: list[Any], want: list[CryptoEvent]) -> bool:
    key = msgspec.msgpack.encode
    return sorted(map(key, got)) == sorted(key(_micro(event)) for event in want)


async def produce_events(settings: Settings, events: dict[str, list[CryptoEvent]]) -> None:
    assert settings.kafka_bootstrap_servers is not None
    for family, items in events.items():
        name = topic(CRYPTO.word(family), settings.kafka_topic_prefix)
        records = [(event.symbol.encode(), msgspec.msgpack.encode(event)) for event in items]
        await produce(settings.kafka_bootstrap_servers, settings, name, records)


async def test_n_crypto_events_become_n_rows_field_for_field_and_a_replay_adds_none(settings: Settings) -> None:
    events = make_events()
    await produce_events(settings, events)
    assert settings.database_url is not None

    stats = await ConsumerService(settings, TABLES, burst=True, admin=False).run()
    bars = expected_bars(events["bars"])
    assert (stats["crypto_trades"].records, stats["crypto_trades"].rows_written) == (1200, 1200)
    assert (stats["crypto_quotes"].records, stats["crypto_quotes"].rows_written) == (1200, 1200)
    assert (stats["crypto_orderbooks"].records, stats["crypto_orderbooks"].rows_written) == (400, 400)
    assert stats["crypto_bars"].records == len(events["bars"])
    for table, family in zip(TABLES, ("trades", "quotes", "bars", "orderbooks"), strict=True):
        want = bars if family == "bars" else events[family]
        got = await fetch_events(settings.database_url, table)
        assert len(got) == len(want), f"expected {len(want)} rows in {table}, got {len(got)}"
        assert same(got, want), f"expected {table}'s rows to be the events, field for field"
    assert all(stat.dead_letters == 0 for stat in stats.values())

    # A new group reads every topic again: the tables do not grow (bars are upserted again, in place).
    again = await ConsumerService(
        settings, TABLES, burst=True, admin=False, group=f"{settings.kafka_topic_prefix}replay"
    ).run()
    assert [again[table].rows_written for table in ("crypto_trades", "crypto_quotes", "crypto_orderbooks")] == [0] * 3
    assert again["crypto_trades"].records == 1200
    for table, family in zip(TABLES, ("trades", "quotes", "bars", "orderbooks"), strict=True):
        assert await count_rows(settings.database_url, table) == len(bars if family == "bars" else events[family])


async def test_a_crypto_value_no_venue_sends_is_a_dead_letter_and_the_rest_is_stored(settings: Settings) -> None:
    good = [CryptoTrade(symbol="BTC/USD", timestamp=BASE_NS + i, price=65_000.5, size=0.01, trade_id=i,
                        taker_side="B") for i in range(1, 11)]  # fmt: skip
    bad_price = msgspec.structs.replace(good[0], trade_id=100, price=math.nan)
    bad_size = msgspec.structs.replace(good[0], trade_id=101, size=-0.5)
    book = CryptoOrderbook(symbol="BTC/USD", timestamp=BASE_NS, bids=(BookLevel(math.inf, 1.0),), reset=True)
    stock_code_on_crypto = b"\x84\xa1T\xa1x\xa1S\xa7BTC/USD\xa1t\x01\xa2_v\x01"  # a cancel: no crypto type "x"
    assert settings.kafka_bootstrap_servers is not None and settings.database_url is not None
    trades = topic(CRYPTO.word("trades"), settings.kafka_topic_prefix)
    records = [(b"BTC/USD", msgspec.msgpack.encode(event)) for event in (*good[:5], bad_price, bad_size, *good[5:])]
    await produce(settings.kafka_bootstrap_servers, settings, trades, [*records, (b"BTC/USD", stock_code_on_crypto)])
    books = topic(CRYPTO.word("orderbooks"), settings.kafka_topic_prefix)
    await produce(settings.kafka_bootstrap_servers, settings, books, [(b"BTC/USD", msgspec.msgpack.encode(book))])

    stats = await ConsumerService(settings, ["crypto_trades", "crypto_orderbooks"], burst=True, admin=False).run()
    assert stats["crypto_trades"].rows_written == 10 and stats["crypto_trades"].dead_letters == 3
    assert stats["crypto_orderbooks"].rows_written == 0 and stats["crypto_orderbooks"].dead_letters == 1
    assert same(await fetch_events(settings.database_url, "crypto_trades"), list(good))

    letters = [decode_dead_letter(r.value) for r in await read_topics(
        settings.kafka_bootstrap_servers, [f"{settings.kafka_topic_prefix}dlq"], expected=4)]  # fmt: skip
    by_field = {letter.field: letter for letter in letters}
    assert set(by_field) == {"p", "s", "T", "b[0]"}, [(letter.field, letter.reason) for letter in letters]
    assert "a finite number >= 0" in by_field["p"].reason and "nan" in by_field["p"].reason
    assert by_field["s"].source_topic == trades and by_field["b[0]"].source_topic == books
    assert by_field["s"].original == records[6][1]
