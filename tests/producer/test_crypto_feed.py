"""The producer carrying the crypto feed: ``tickpipe producer --feed crypto`` against the simulator's
``/v1beta3/crypto/us``, into real Kafka and Redis.

Counts are exact: the simulator's record of what it sent on the producer's connection (``record=True``)
is what the ``tickpipe.crypto.*`` topics hold, each event once, and what the ``crypto.*`` Redis channels
carried, in order per channel.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from producer.cli import feed_of
from producer.service import ProducerService
from simulator import DEFAULT_START_NS, Faults, Simulator, SimulatorConfig
from simulator.bars import NS
from simulator.config import CRYPTO_FEEDS
from tests.helpers.producer import RedisCollector, producer_settings, read_topics, running
from tests.helpers.simulator import Book, apply_book, nanos
from tests.helpers.waiting import wait_for
from tickpipe.codecs import decode_kafka, format_rfc3339_ns
from tickpipe.crypto_events import AnyCryptoEvent
from tickpipe.dlq import decode_dead_letter
from tickpipe.errors import SettingsError
from tickpipe.feeds import CRYPTO, STOCK
from tickpipe.settings import Settings, load_settings

FEED = CRYPTO_FEEDS[0]  # "crypto/us"
PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD")
FAMILIES = ("trades", "quotes", "bars", "orderbooks")
_crypto = msgspec.msgpack.Decoder(AnyCryptoEvent)


def crypto_config(**overrides: Any) -> SimulatorConfig:
    """Paced at 2000 events/s, the clock 2 s before a minute mark (so minute and daily bars come soon)."""
    values: dict[str, Any] = {
        "rate": 2000,
        "start_ns": DEFAULT_START_NS + 58 * NS,
        "record": True,
        "crypto_symbols": PAIRS,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


def crypto_settings(kafka: str, redis_url: str, prefix: str, spool: Path, sim: Simulator, **overrides: Any) -> Settings:
    # ALPACA_STREAM_URL is the simulator's stock URL: the crypto URL is derived from its host.
    # Its admin port any free one, as the stock one's (8083 may be another run's).
    return producer_settings(kafka, redis_url, prefix, spool, sim.url, **{"crypto_producer_admin_port": 0, **overrides})


def crypto_topics(prefix: str) -> list[str]:
    return [f"{prefix}crypto.{family}" for family in FAMILIES]


def topic_of(prefix: str, message: dict[str, Any]) -> str:
    return f"{prefix}{CRYPTO.word(CRYPTO.family_of[message['T']])}"


def sent_on(sim: Simulator) -> list[dict[str, Any]]:
    """Every data message the simulator sent on its crypto connections, in order (``t`` in ns)."""
    return [
        {**m, "t": nanos(m["t"])} for session in sim.sessions if session.feed == FEED for m in session.sent_events()
    ]


def as_event(message: dict[str, Any]) -> bytes:
    """A sent message as its crypto struct's msgpack (receive time 0): comparable with a Kafka record's."""
    return msgspec.msgpack.encode(msgspec.convert(message, AnyCryptoEvent))


def from_kafka(value: bytes) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(_crypto.decode(value), received_at=0))


def live_shape(message: dict[str, Any]) -> dict[str, Any]:
    """The live JSON of a sent message: Alpaca's names, ``t`` in RFC 3339 (a book update's ``r`` false)."""
    shaped = {**message, "t": format_rfc3339_ns(message["t"])}
    if message["T"] == "o":
        shaped.setdefault("r", False)
    return shaped


async def test_every_crypto_event_is_in_its_topic_once_and_on_its_channel(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    events = 8_000
    async with (
        Simulator(crypto_config(max_events=events)) as sim,
        RedisCollector(redis_url, list(PAIRS)) as subscriber,
    ):
        settings = crypto_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim)
        service = ProducerService(settings, feed=CRYPTO)
        assert service.upstream.options.url == sim.url_for(FEED)
        assert service.spool.directory == tmp_path / "spool" / "crypto"
        assert service.symbols.key == f"{topic_prefix}symbols:crypto"  # the stock one: f"{topic_prefix}symbols"
        assert service.symbols.validate(" btc/usd") == "BTC/USD"
        with pytest.raises(ValueError, match="crypto pair"):
            service.symbols.validate("AAPL")
        async with running(service):
            total = events + len(PAIRS)  # the market's events and each pair's book snapshot first
            await wait_for(lambda: service.upstream.events == total, 60, "every crypto event read")
            await wait_for(lambda: service.durable.stats.acked == total, 60, "Kafka acknowledged every event")
            await wait_for(lambda: subscriber.total == total, 30, "every event on its Redis channel")
            health = await service.health()
            hashes = {family: await service.redis.hgetall(f"latest:crypto.{family}") for family in FAMILIES}
        assert sim.sent_total == total
    assert health["feed"] == "crypto" and health["backfill"] == {"enabled": False}  # BACKFILL_ENABLED false
    assert health["upstream"]["subscription"]["orderbooks"] == ["*"]

    sent = sent_on(sim)
    assert len(sent) == total
    kinds = Counter(m["T"] for m in sent)
    assert all(kinds[code] for code in ("t", "q", "o", "b", "d")), f"expected every kind of message, got {kinds}"
    records = await read_topics(kafka_bootstrap, crypto_topics(topic_prefix), expected=total)
    assert len(records) == total, "exactly once"
    assert Counter(r.topic for r in records) == Counter(topic_of(topic_prefix, m) for m in sent)
    assert Counter((r.topic, r.key, from_kafka(r.value)) for r in records) == Counter(
        (topic_of(topic_prefix, m), m["S"].encode(), as_event(m)) for m in sent
    ), "expected each sent event, with its values, in its family's topic, keyed by its pair"

    # Redis: each channel got its pair's messages of its family, in the order sent, in Alpaca's shape.
    expected: dict[str, list[dict[str, Any]]] = {}
    for m in sent:
        expected.setdefault(f"crypto.{CRYPTO.family_of[m['T']]}:{m['S']}", []).append(live_shape(m))
    assert {channel: [orjson.loads(p) for p in payloads] for channel, payloads in subscriber.messages.items()} == (
        expected
    )
    quote = orjson.loads(subscriber.messages["crypto.quotes:BTC/USD"][0])
    assert set(quote) == {"T", "S", "bp", "bs", "ap", "as", "t"} and quote["t"].endswith("Z")

    # The snapshot hashes: the last message per pair; for books, the whole book as of the last update.
    last = {(CRYPTO.family_of[m["T"]], m["S"]): live_shape(m) for m in sent}
    for family in ("trades", "quotes", "bars"):
        for pair in PAIRS:
            assert orjson.loads(hashes[family][pair.encode()]) == last[(family, pair)]
    books: dict[str, Book] = {}
    for m in sent:
        if m["T"] == "o":
            apply_book(books, m, strict=False)
    for pair in PAIRS:
        stored = orjson.loads(hashes["orderbooks"][pair.encode()])
        assert stored["r"] is True and stored["t"] == last[("orderbooks", pair)]["t"]
        assert {level["p"]: level["s"] for level in stored["b"]} == books[pair]["b"]
        assert {level["p"]: level["s"] for level in stored["a"]} == books[pair]["a"]
        assert [level["p"] for level in stored["b"]] == sorted(books[pair]["b"], reverse=True)
        assert [level["p"] for level in stored["a"]] == sorted(books[pair]["a"])


async def test_a_malformed_crypto_frame_is_a_dead_letter_and_the_stream_goes_on(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    events = 2_000
    config = crypto_config(max_events=events, faults=Faults(malformed_after=500))
    async with Simulator(config) as sim:
        settings = crypto_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim)
        service = ProducerService(settings, feed=CRYPTO)
        async with running(service):
            total = events + len(PAIRS)
            await wait_for(lambda: service.upstream.events == total, 60, "every crypto event read, after the bad frame")
            await wait_for(lambda: service.durable.stats.acked == total + 1, 60, "Kafka acknowledged events and letter")
        assert service.fanout.dead_letters == 1
        assert service.upstream.reconnects.total() == 0, "expected the same connection to go on"
    letters = await read_topics(kafka_bootstrap, [f"{topic_prefix}dlq"], expected=1)
    assert len(letters) == 1
    letter = decode_dead_letter(letters[0].value)
    assert letter.stage == "producer" and letter.field == "$"
    assert letter.source_topic == sim.url_for(FEED) and "/v1beta3/crypto/us" in letter.source_topic
    assert letter.original == b"\x91\x8b\xa1T\xa1q\xa1S"
    records = await read_topics(kafka_bootstrap, crypto_topics(topic_prefix), expected=total)
    assert len(records) == total == sim.sent_total


async def test_stock_and_crypto_producers_side_by_side_do_not_collide(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path, unique_symbol: Callable[[], str]
) -> None:
    symbols = sorted({unique_symbol() for _ in range(3)})
    pairs = ["BTC/USD", "ETH/USD"]
    async with (
        Simulator(crypto_config(symbols=tuple(symbols))) as sim,
        RedisCollector(redis_url, symbols) as stock_channels,
        RedisCollector(redis_url, pairs) as crypto_channels,
    ):
        settings = crypto_settings(
            kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim, crypto_symbols=",".join(pairs)
        )
        stocks, crypto = ProducerService(settings), ProducerService(settings, feed=CRYPTO)
        assert stocks.spool.directory == tmp_path / "spool" and crypto.spool.directory == tmp_path / "spool" / "crypto"
        assert stocks.symbols.key != crypto.symbols.key
        async with running(stocks), running(crypto):
            await wait_for(lambda: stocks.upstream.events >= 2_000, 60, "stock events")
            await wait_for(lambda: crypto.upstream.events >= 2_000, 60, "crypto events")
        read_stocks, read_crypto = stocks.upstream.events, crypto.upstream.events
    stock_topics = [f"{topic_prefix}{family.name}" for family in STOCK.families]
    stock_records = await read_topics(kafka_bootstrap, stock_topics, expected=read_stocks)
    crypto_records = await read_topics(kafka_bootstrap, crypto_topics(topic_prefix), expected=read_crypto)
    assert len(stock_records) == read_stocks and len(crypto_records) == read_crypto, "each event once, where it goes"
    assert {decode_kafka(r.value).symbol for r in stock_records} <= set(symbols)
    assert {_crypto.decode(r.value).symbol for r in crypto_records} == set(pairs)
    assert {r.topic for r in crypto_records} <= set(crypto_topics(topic_prefix))
    assert all(channel.split(":")[0] in {f.name for f in STOCK.families} for channel in stock_channels.messages)
    crypto_words = {channel.split(":")[0] for channel in crypto_channels.messages}
    assert {"crypto.quotes", "crypto.orderbooks"} <= crypto_words <= {f"crypto.{f}" for f in FAMILIES}
    assert {channel.split(":", 1)[1] for channel in crypto_channels.messages} == set(pairs)


# --- settings and the command line ----------------------------------------------------------------


def test_alpaca_feeds_names_the_feeds_to_run() -> None:
    assert load_settings().alpaca_feeds == ["stocks"] and load_settings().feeds == (STOCK,)
    assert load_settings(alpaca_feeds="stock, Crypto,stocks").feeds == (STOCK, CRYPTO)
    assert load_settings(alpaca_feeds="crypto").alpaca_feeds == ["crypto"]
    for bad in ("stocks,forex", "", "forex"):  # a feed tickpipe does not carry
        with pytest.raises(SettingsError) as refused:
            load_settings(alpaca_feeds=bad or ",")
        message = str(refused.value)
        assert "ALPACA_FEEDS" in message and "stocks" in message and "crypto" in message and "\n" not in message


def test_crypto_settings_derive_the_url_symbols_spool_and_port() -> None:
    simulator = load_settings(simulator_port=9000, spool_dir=Path("/tmp/sp"))
    assert simulator.upstream_url_for(CRYPTO) == "ws://127.0.0.1:9000/v1beta3/crypto/us"
    assert simulator.upstream_url_for(STOCK) == simulator.upstream_url == "ws://127.0.0.1:9000/v2/iex"
    assert simulator.spool_path_for(STOCK) == Path("/tmp/sp") and simulator.spool_path_for(CRYPTO) == Path(
        "/tmp/sp/crypto"
    )
    assert simulator.symbols_for(CRYPTO) == ["*"] and simulator.admin_port_for(CRYPTO) == 8083
    alpaca = load_settings(alpaca_api_key="k", alpaca_api_secret="s", alpaca_feed="sip")
    assert alpaca.upstream_url_for(CRYPTO) == "wss://stream.data.alpaca.markets/v1beta3/crypto/us"
    proxied = load_settings(alpaca_stream_url="wss://proxy.example:9443/v2/sip")
    assert proxied.upstream_url_for(CRYPTO) == "wss://proxy.example:9443/v1beta3/crypto/us"
    explicit = load_settings(alpaca_crypto_stream_url="ws://elsewhere/v1beta3/crypto/us")
    assert explicit.upstream_url_for(CRYPTO) == "ws://elsewhere/v1beta3/crypto/us"
    assert load_settings(crypto_symbols="btc/usd, ETH/USDT").crypto_symbols == ["BTC/USD", "ETH/USDT"]
    with pytest.raises(SettingsError, match="CRYPTO_SYMBOLS"):
        load_settings(crypto_symbols="BTC-USD")


def test_the_crypto_feeds_names_are_qualified_and_the_stock_ones_unchanged() -> None:
    assert CRYPTO.word_of == {
        "t": "crypto.trades",
        "q": "crypto.quotes",
        "b": "crypto.bars",
        "u": "crypto.bars",
        "d": "crypto.bars",
        "o": "crypto.orderbooks",
    }
    assert STOCK.word_of == STOCK.family_of
    assert feed_of("stocks") is feed_of("stock") is STOCK and feed_of("crypto") is CRYPTO and feed_of("nope") is None


def test_an_unknown_feed_is_a_one_line_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickpipe.cli", "producer", "--feed", "nope"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "tickpipe producer: --feed: expected stocks, crypto or options, got 'nope'"
