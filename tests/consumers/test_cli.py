"""The consumer commands' arguments and settings: clear errors naming what was expected and what came."""

from __future__ import annotations

import pytest
from aiokafka.structs import TopicPartition

from consumers import cli, dlq_cli
from consumers.dlq import StoredLetter
from consumers.drain import describe_behind
from consumers.service import ConsumerService, tables_for
from consumers.worker import group_id
from tickpipe.dlq import DeadLetter
from tickpipe.errors import SettingsError
from tickpipe.feeds import CRYPTO, STOCK, TRADE_UPDATES_FEED
from tickpipe.settings import load_settings


def test_tables_for_all_and_one() -> None:
    stock = ["quotes", "trades", "bars", "statuses", "corrections", "cancels"]
    crypto = ["crypto_trades", "crypto_quotes", "crypto_bars", "crypto_orderbooks"]
    assert tables_for("all", (STOCK,)) == stock
    assert tables_for("all", (STOCK, CRYPTO)) == stock + crypto
    assert tables_for("all") == stock + crypto + ["options_trades", "options_quotes", "news", "trade_updates"]
    assert tables_for("all", (STOCK, TRADE_UPDATES_FEED)) == [*stock, "trade_updates"]
    assert tables_for("all", (CRYPTO,)) == crypto
    assert tables_for("bars") == ["bars"]
    assert tables_for("crypto_bars", (STOCK,)) == ["crypto_bars"]  # one table by name: asked for, so written
    with pytest.raises(
        SettingsError,
        match=r"expected quotes, trades, .*, crypto_orderbooks, .*news, trade_updates or all, got 'lulds'",
    ):
        tables_for("lulds")


def test_consume_arguments() -> None:
    args = cli.build_parser().parse_args(["all", "--burst", "--group", "g", "--admin-port", "0"])
    assert (args.table, args.burst, args.group, args.admin_port, args.no_admin) == ("all", True, "g", 0, False)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["everything"])
    assert cli.build_parser().parse_args(["quotes", "--burst"]).burst_wait == 120.0
    assert cli.build_parser().parse_args(["quotes", "--burst", "--burst-wait", "2.5"]).burst_wait == 2.5


def test_partitions_behind_are_named_with_committed_and_end_offsets() -> None:
    behind = {TopicPartition("t.quotes", 4): (0, 1980), TopicPartition("t.quotes", 0): (120, 1724)}
    assert describe_behind(behind) == "t.quotes[0] 120/1724, t.quotes[4] 0/1980"


def test_dlq_arguments() -> None:
    args = dlq_cli.build_parser().parse_args(["replay", "--topic", "tickpipe.quotes", "--dry-run"])
    assert (args.command, args.topic, args.dry_run, args.from_start) == ("replay", "tickpipe.quotes", True, False)
    with pytest.raises(SystemExit):
        dlq_cli.build_parser().parse_args([])


def test_group_ids_follow_the_topic_prefix() -> None:
    assert group_id(load_settings(kafka_topic_prefix="tickpipe."), "quotes") == "tickpipe.writer.quotes"
    assert group_id(load_settings(kafka_topic_prefix="t1."), "bars") == "t1.writer.bars"


def test_heartbeat_must_be_below_the_session_timeout() -> None:
    with pytest.raises(SettingsError, match="CONSUMER_HEARTBEAT_INTERVAL_MS must be below"):
        load_settings(consumer_heartbeat_interval_ms=5_000, consumer_session_timeout_ms=4_000)


async def test_the_service_names_a_missing_url() -> None:
    settings = load_settings(kafka_bootstrap_servers=None, database_url="postgresql://x@127.0.0.1/x")
    with pytest.raises(SettingsError, match="KAFKA_BOOTSTRAP_SERVERS is not set"):
        ConsumerService(settings, ["quotes"], admin=False)
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9092", database_url=None)
    with pytest.raises(SettingsError, match="DATABASE_URL is not set"):
        ConsumerService(settings, ["quotes"], admin=False)


def test_a_dead_letter_as_one_line_and_as_json() -> None:
    letter = DeadLetter(
        reason="bs: value out of range", field="bs", stage="consumer", source_topic="tickpipe.quotes",
        source_partition=2, source_offset=41, key=b"AAPL", original=b"\x81\xa1T\xa1q", at=0,
    )  # fmt: skip
    item = StoredLetter(partition=0, offset=7, letter=letter)
    line = dlq_cli.as_line(item)
    assert line.startswith("0:7  1970-01-01T00:00:00.000000000Z  consumer  tickpipe.quotes[2]@41  key=AAPL")
    assert line.endswith("field=bs  5 bytes  bs: value out of range")
    doc = dlq_cli.as_dict(item)
    assert doc["original"] == "81a154a171" and doc["key"] == "AAPL" and doc["source_offset"] == 41
    broken = dlq_cli.as_dict(StoredLetter(partition=1, offset=2, letter=None, raw=b"\x00", error="not a dead letter"))
    assert broken == {"partition": 1, "offset": 2, "error": "not a dead letter", "raw": "00"}
