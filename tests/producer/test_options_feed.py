"""The producer carrying the options feed: ``tickpipe producer --feed options`` against the simulator's
``/v1beta1/opra`` (msgpack only), into real Kafka and Redis.

Counts are exact: the simulator's record of what it sent on the producer's connection (``record=True``)
is what the ``tickpipe.options.*`` topics hold, each event once, and what the ``options.*`` Redis
channels carried, in order per channel.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from producer.cli import build_parser, feed_of, settings_from
from producer.service import ProducerService
from simulator import Faults, Simulator
from tests.helpers.options import CONTRACTS, FAMILIES, FEED, option_config, option_settings, option_topics, sent_on
from tests.helpers.producer import RedisCollector, read_topics, running
from tests.helpers.waiting import wait_for
from tickpipe.codecs import format_rfc3339_ns
from tickpipe.dlq import decode_dead_letter
from tickpipe.errors import SettingsError
from tickpipe.feeds import CRYPTO, OPTIONS, STOCK
from tickpipe.option_events import AnyOptionEvent
from tickpipe.settings import load_settings

_option = msgspec.msgpack.Decoder(AnyOptionEvent)


def topic_of(prefix: str, message: dict[str, Any]) -> str:
    return f"{prefix}{OPTIONS.word(OPTIONS.family_of[message['T']])}"


def as_event(message: dict[str, Any]) -> bytes:
    """A sent message as its option struct's msgpack (receive time 0): comparable with a Kafka record's."""
    return msgspec.msgpack.encode(msgspec.convert(message, AnyOptionEvent))


def from_kafka(value: bytes) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(_option.decode(value), received_at=0))


async def test_every_option_event_is_in_its_topic_once_and_on_its_channel(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    events = 6_000
    async with (
        Simulator(option_config(max_events=events)) as sim,
        RedisCollector(redis_url, list(CONTRACTS)) as subscriber,
    ):
        settings = option_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim)
        service = ProducerService(settings, feed=OPTIONS)
        assert service.upstream.options.url == sim.url_for(FEED)
        assert service.upstream.options.channels == ("trades", "quotes")
        assert service.spool.directory == tmp_path / "spool" / "options"
        assert service.symbols.key == f"{topic_prefix}symbols:options"
        assert service.symbols.validate(" spy240607c00530000") == "SPY240607C00530000"
        with pytest.raises(ValueError, match="OCC option contract"):
            service.symbols.validate("AAPL")
        async with running(service):
            await wait_for(lambda: service.upstream.events == events, 60, "every option event read")
            await wait_for(lambda: service.durable.stats.acked == events, 60, "Kafka acknowledged every event")
            await wait_for(lambda: subscriber.total == events, 30, "every event on its Redis channel")
            health = await service.health()
            hashes = {family: await service.redis.hgetall(f"latest:options.{family}") for family in FAMILIES}
        assert sim.sent_total == events
    assert health["feed"] == "options" and health["backfill"]["enabled"] is False
    assert health["upstream"]["subscription"]["quotes"] == list(CONTRACTS)
    assert sim.sessions[0].encoding == "msgpack" and 412 not in sim.sessions[0].errors

    sent = sent_on(sim)
    assert len(sent) == events
    kinds = Counter(m["T"] for m in sent)
    assert kinds["q"] > kinds["t"] > 0, f"expected quotes and trades, got {kinds}"
    records = await read_topics(kafka_bootstrap, option_topics(topic_prefix), expected=events)
    assert len(records) == events, "exactly once"
    assert Counter((r.topic, r.key, from_kafka(r.value)) for r in records) == Counter(
        (topic_of(topic_prefix, m), m["S"].encode(), as_event(m)) for m in sent
    ), "expected each sent event, with its values, in its family's topic, keyed by its contract"

    # Redis: each channel got its contract's messages of its family, in the order sent, in Alpaca's shape.
    expected: dict[str, list[dict[str, Any]]] = {}
    for m in sent:
        expected.setdefault(f"options.{OPTIONS.family_of[m['T']]}:{m['S']}", []).append(
            {**m, "t": format_rfc3339_ns(m["t"])}
        )
    got = {channel: [orjson.loads(p) for p in payloads] for channel, payloads in subscriber.messages.items()}
    assert got == expected
    quote = next(iter(got[next(c for c in got if c.startswith("options.quotes:"))]))
    assert set(quote) == {"T", "S", "t", "bx", "bp", "bs", "ax", "ap", "as", "c"} and quote["t"].endswith("Z")

    # The snapshot hashes: the last message per contract and family.
    last = {(OPTIONS.family_of[m["T"]], m["S"]): {**m, "t": format_rfc3339_ns(m["t"])} for m in sent}
    for (family, contract), message in last.items():
        assert orjson.loads(hashes[family][contract.encode()]) == message


async def test_a_malformed_option_frame_is_a_dead_letter_and_the_stream_goes_on(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    events = 2_000
    async with Simulator(option_config(max_events=events, faults=Faults(malformed_after=500))) as sim:
        settings = option_settings(kafka_bootstrap, redis_url, topic_prefix, tmp_path / "spool", sim)
        service = ProducerService(settings, feed=OPTIONS)
        async with running(service):
            await wait_for(lambda: service.upstream.events == events, 60, "every option event read, after the bad one")
            await wait_for(
                lambda: service.durable.stats.acked == events + 1, 60, "Kafka acknowledged events and letter"
            )
        assert service.fanout.dead_letters == 1
        assert service.upstream.reconnects.total() == 0, "expected the same connection to go on"
    letters = await read_topics(kafka_bootstrap, [f"{topic_prefix}dlq"], expected=1)
    assert len(letters) == 1
    letter = decode_dead_letter(letters[0].value)
    assert letter.stage == "producer" and letter.field == "$"
    assert letter.source_topic == sim.url_for(FEED) and letter.source_topic.endswith("/v1beta1/opra")
    assert letter.original == b"\x91\x8b\xa1T\xa1q\xa1S"
    records = await read_topics(kafka_bootstrap, option_topics(topic_prefix), expected=events)
    assert len(records) == events == sim.sent_total


# --- settings and the command line ----------------------------------------------------------------


def test_alpaca_feeds_accepts_options() -> None:
    assert load_settings(alpaca_feeds="stocks,options,crypto").feeds == (STOCK, OPTIONS, CRYPTO)
    assert feed_of("options") is feed_of(" Options") is OPTIONS


def test_option_settings_derive_the_url_symbols_spool_and_port() -> None:
    simulator = load_settings(simulator_port=9000, spool_dir=Path("/tmp/sp"))
    assert simulator.upstream_url_for(OPTIONS) == "ws://127.0.0.1:9000/v1beta1/indicative"  # alpaca-py's default
    assert load_settings(alpaca_options_feed="opra").upstream_url_for(OPTIONS).endswith("/v1beta1/opra")
    assert simulator.spool_path_for(OPTIONS) == Path("/tmp/sp/options")
    assert simulator.symbols_for(OPTIONS) == [] and simulator.admin_port_for(OPTIONS) == 8084
    alpaca = load_settings(alpaca_api_key="k", alpaca_api_secret="s", alpaca_options_feed="opra")
    assert alpaca.upstream_url_for(OPTIONS) == "wss://stream.data.alpaca.markets/v1beta1/opra"
    proxied = load_settings(alpaca_stream_url="wss://proxy.example:9443/v2/sip")
    assert proxied.upstream_url_for(OPTIONS) == "wss://proxy.example:9443/v1beta1/indicative"
    explicit = load_settings(alpaca_options_stream_url="ws://elsewhere/v1beta1/opra")
    assert explicit.upstream_url_for(OPTIONS) == "ws://elsewhere/v1beta1/opra"
    assert explicit.upstream_url_for(CRYPTO).endswith("/v1beta3/crypto/us"), "expected crypto's URL unchanged"
    contracts = load_settings(option_symbols="aapl240621c00190000, SPY240621P00530000").option_symbols
    assert contracts == ["AAPL240621C00190000", "SPY240621P00530000"]


@pytest.mark.parametrize("bad", ["AAPL", "AAPL240621X00190000", "AAPL240621C0019000"])
def test_a_bad_option_contract_is_named(bad: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(option_symbols=f"SPY240621P00530000,{bad}")
    message = str(refused.value)
    assert "OPTION_SYMBOLS" in message and repr(bad) in message and "OCC" in message and "\n" not in message


def test_star_is_refused_for_option_symbols() -> None:
    with pytest.raises(SettingsError, match=r"OPTION_SYMBOLS: .*not '\*'"):
        load_settings(option_symbols="*")


def test_the_command_line_overrides_the_options_url_and_port() -> None:
    args = build_parser().parse_args(
        ["--feed", "options", "--upstream-url", "ws://x/v1beta1/opra", "--admin-port", "0"]
    )
    settings = settings_from(args, OPTIONS)
    assert settings.upstream_url_for(OPTIONS) == "ws://x/v1beta1/opra" and settings.admin_port_for(OPTIONS) == 0
    assert settings.admin_port_for(STOCK) == load_settings().producer_admin_port


def test_an_unknown_feed_names_options_among_the_feeds() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickpipe.cli", "producer", "--feed", "nope"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "tickpipe producer: --feed: expected stocks, crypto or options, got 'nope'"


def test_tickpipe_up_runs_one_producer_per_feed_with_options_among_them() -> None:
    from tickpipe.dev.stack import feed_topics, plan

    settings = load_settings(alpaca_feeds="stocks,crypto,options", option_symbols=CONTRACTS[0])
    producers = [(p.name, p.args, p.port, p.port_variable) for p in plan(settings, False) if p.name.startswith("pro")]
    assert producers == [
        ("producer", ["producer"], 8081, "PRODUCER_ADMIN_PORT"),
        ("producer-crypto", ["producer", "--feed", "crypto"], 8083, "CRYPTO_PRODUCER_ADMIN_PORT"),
        ("producer-options", ["producer", "--feed", "options"], 8084, "OPTIONS_PRODUCER_ADMIN_PORT"),
    ]
    assert {"tickpipe.options.trades", "tickpipe.options.quotes"} <= set(feed_topics(settings))
