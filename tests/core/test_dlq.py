"""Poison records: the good ones are stored, the bad ones are dead letters with reasons; replay after a fix."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgpack
import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from consumers.dlq import read_dead_letters, replay_dead_letters
from consumers.progress import WorkerStats
from consumers.service import ConsumerService
from tests.helpers.consumers import consumer_settings, count_rows, make_quotes, make_trades, produce, records_of
from tickpipe.codecs import encode_kafka
from tickpipe.dlq import DeadLetter, encode_dead_letter
from tickpipe.kafka import dlq_topic, make_producer
from tickpipe.names import topic
from tickpipe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(kafka_bootstrap: str, clean_db: str, topic_prefix: str) -> Settings:
    return consumer_settings(kafka_bootstrap, clean_db, topic_prefix)


@pytest.fixture
async def capped_bids(clean_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A CHECK constraint that refuses bids of 10000 or more, until the test drops it (the "fix")."""
    conn = await asyncpg.connect(clean_db)
    await conn.execute("ALTER TABLE quotes ADD CONSTRAINT test_bid_cap CHECK (bid_price < 10000)")
    yield conn
    await conn.execute("ALTER TABLE quotes DROP CONSTRAINT IF EXISTS test_bid_cap")
    await conn.close()


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    assert settings.kafka_bootstrap_servers is not None
    client = make_producer(settings, settings.kafka_bootstrap_servers)
    await client.start()
    yield client
    await client.stop()


async def burst(settings: Settings) -> WorkerStats:
    return (await ConsumerService(settings, ["quotes"], burst=True, admin=False).run())["quotes"]


def poison() -> dict[str, tuple[bytes, str, str]]:
    """name -> (record value, field the letter names, words its reason holds)."""
    quote = msgspec.to_builtins(make_quotes(1, seed=99)[0])
    no_bid = {k: v for k, v in quote.items() if k != "bp"}
    return {
        "garbage": (b"\xc1\x00 not msgpack", "$", "not a msgpack event"),
        "missing": (msgpack.packb(no_bid), "bp", "missing required field `bp`"),
        "negative": (msgpack.packb({**quote, "bs": -1}), "bs", "value out of range"),
        "nul": (msgpack.packb({**quote, "S": "BAD\x00"}), "$", "refused by PostgreSQL (22021)"),
        "capped": (msgpack.packb({**quote, "bp": 20_000.0}), "$", "test_bid_cap"),
        "misrouted": (encode_kafka(make_trades(1)[0]), "T", "expected a quote on"),
    }


async def test_poison_goes_to_the_dlq_with_reasons_and_replay_after_a_fix_stores_it(
    settings: Settings, capped_bids: asyncpg.Connection, producer: AIOKafkaProducer
) -> None:
    assert settings.kafka_bootstrap_servers is not None and settings.database_url is not None
    bootstrap, db_url = settings.kafka_bootstrap_servers, settings.database_url
    name = topic("quotes", settings.kafka_topic_prefix)
    good = make_quotes(300, seed=7)
    bad = poison()
    # (a status here was once counted as skipped; statuses now have a table of their own, so a status
    # on the quotes topic is misrouted, a dead letter: tests/consumers/test_batch.py covers that)
    records = records_of(good[:150])
    records += [(b"SYM001", value) for value, _, _ in bad.values()]
    records += records_of(good[150:])
    sent = await produce(bootstrap, settings, name, records)
    where = {value: (meta.partition, meta.offset) for (_, value), meta in zip(records, sent, strict=True)}

    stats = await burst(settings)
    assert (stats.records, stats.rows_written, stats.dead_letters, stats.skipped) == (len(records), 300, 6, 0)
    assert await count_rows(db_url, "quotes") == 300

    letters = await read_dead_letters(bootstrap, dlq_topic(settings))
    assert len(letters) == 6
    by_original = {item.letter.original: item.letter for item in letters if item.letter is not None}
    for label, (value, field, words) in bad.items():
        letter = by_original[value]
        assert letter.stage == "consumer" and letter.source_topic == name and letter.key == b"SYM001", label
        assert (letter.source_partition, letter.source_offset) == where[value], label
        assert letter.field == field and words in letter.reason, (label, letter.reason)

    # The fix: the constraint goes. Replay sends all six back; only the capped quote can now be stored.
    await capped_bids.execute("ALTER TABLE quotes DROP CONSTRAINT test_bid_cap")
    replay_group = f"{settings.kafka_topic_prefix}dlq-replay"
    result = await replay_dead_letters(bootstrap, dlq_topic(settings), producer, group_id=replay_group)
    assert result.sent == 6 and result.by_topic == {name: 6} and not result.skipped
    again = await burst(settings)
    assert (again.records, again.rows_written, again.dead_letters) == (6, 1, 5)
    assert await count_rows(db_url, "quotes") == 301
    assert await capped_bids.fetchval("SELECT count(*) FROM quotes WHERE bid_price = 20000") == 1

    # A second replay sends only the letters written since the first (the five still-bad ones).
    result = await replay_dead_letters(bootstrap, dlq_topic(settings), producer, group_id=replay_group)
    assert result.sent == 5
    result = await replay_dead_letters(bootstrap, dlq_topic(settings), producer, group_id=replay_group,
                                       dry_run=True)  # fmt: skip
    assert result.sent == 0


async def test_producer_letters_are_listed_but_not_replayed(settings: Settings, producer: AIOKafkaProducer) -> None:
    assert settings.kafka_bootstrap_servers is not None
    bootstrap = settings.kafka_bootstrap_servers
    letter = DeadLetter(reason="bp: Expected `float`", field="bp", stage="producer",
                        source_topic="ws://127.0.0.1:1/v2/iex", original=b'{"T":"q"}')  # fmt: skip
    await produce(bootstrap, settings, dlq_topic(settings), [(None, encode_dead_letter(letter)), (None, b"junk")])
    listed = await read_dead_letters(bootstrap, dlq_topic(settings))
    assert [item.letter for item in listed] == [letter, None] or [item.letter for item in listed] == [None, letter]
    unreadable = next(item for item in listed if item.letter is None)
    assert unreadable.raw == b"junk" and "not a dead letter" in unreadable.error
    result = await replay_dead_letters(
        bootstrap, dlq_topic(settings), producer, group_id="g-" + settings.kafka_topic_prefix
    )
    assert result.sent == 0 and result.skipped == {"producer": 1, "unreadable": 1}


async def test_the_dlq_commands(settings: Settings, tmp_path: Path) -> None:
    assert settings.kafka_bootstrap_servers is not None
    name = topic("quotes", settings.kafka_topic_prefix)
    await produce(settings.kafka_bootstrap_servers, settings, name, [(b"K", b"\xc1bad"), *records_of(make_quotes(5))])
    assert (await burst(settings)).dead_letters == 1
    env = dict(os.environ)
    env.update(KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, KAFKA_TOPIC_PREFIX=settings.kafka_topic_prefix,
               KAFKA_ENABLE_IDEMPOTENCE="false", LOG_LEVEL="WARNING")  # fmt: skip

    async def tickpipe(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tickpipe.cli", "dlq", *args, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = await tickpipe("list", "--json")
    assert code == 0, err
    (entry,) = [orjson.loads(line) for line in out.splitlines()]
    assert entry["source_topic"] == name and entry["key"] == "K" and entry["original"] == b"\xc1bad".hex()
    assert entry["stage"] == "consumer" and "not a msgpack event" in entry["reason"]
    code, out, err = await tickpipe("list")
    assert code == 0 and f"{name}[" in out and "not a msgpack event" in out and "1 dead letters" in err
    code, out, err = await tickpipe("replay", "--dry-run")
    assert code == 0 and out.strip() == f"would replay 1 dead letters ({name}: 1); skipped none", err
    code, out, err = await tickpipe("replay")
    assert code == 0 and out.startswith("replayed 1 dead letters"), err
    code, out, err = await tickpipe("replay")
    assert code == 0 and out.startswith("replayed 0 dead letters"), err
